import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Simulator, startSimulator } from "../src/index.js";
import { login } from "./helpers.js";

let sim: Simulator;
let token: string;
const clients: Client[] = [];

beforeAll(async () => {
  sim = await startSimulator();
  token = (await login(sim, new URL(sim.relayUrls[0] ?? "").origin)).access_token;
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  await sim.stop();
});

async function connect(
  url: string,
  sessionId?: string,
): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
    ...(sessionId ? { sessionId } : {}),
  });
  const client = new Client({ name: "sim-test", version: "1.0.0" });
  clients.push(client);
  await client.connect(transport);
  return { client, transport };
}

function textOf(result: unknown): string {
  const content = (result as { content: { type: string; text: string }[] }).content;
  return content.map((c) => c.text).join("");
}

describe("MCP over the SDK client", () => {
  it("lists the tools with annotations", async () => {
    const { client } = await connect(sim.relayUrls[0] ?? "");
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(
      [
        "control_command",
        "control_describe",
        "control_find",
        "statistics",
        "system_status",
        "weather_forecast",
      ].sort(),
    );
    const byName = Object.fromEntries(tools.map((t) => [t.name, t]));
    expect(byName.control_find?.annotations?.readOnlyHint).toBe(true);
    expect(byName.control_command?.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: true });
    expect(client.getServerVersion()?.name).toBe("loxone-miniserver-mcp");
  });

  it("finds, describes and commands a control; state reads back", async () => {
    const { client } = await connect(sim.relayUrls[0] ?? "");
    const found = JSON.parse(
      textOf(await client.callTool({ name: "control_find", arguments: { query: "kitchen blinds" } })),
    ) as {
      controls: { uuid: string; type: string; room: string }[];
    };
    expect(found.controls).toHaveLength(1);
    const blind = found.controls[0]!;
    expect(blind.type).toBe("Jalousie");
    expect(blind.uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{16}$/);

    const byRoom = JSON.parse(
      textOf(await client.callTool({ name: "control_find", arguments: { room: "Kitchen" } })),
    ) as {
      count: number;
    };
    expect(byRoom.count).toBeGreaterThan(1);

    const before = JSON.parse(
      textOf(await client.callTool({ name: "control_describe", arguments: { uuid: blind.uuid } })),
    ) as {
      states: { position: number };
      commands: string[];
    };
    expect(before.states.position).toBe(0);
    expect(before.commands).toContain("manualPosition/{n}");

    const cmd = await client.callTool({
      name: "control_command",
      arguments: { uuid: blind.uuid, command: "manualPosition/40" },
    });
    expect(cmd.isError).toBeFalsy();
    expect(textOf(cmd)).toContain('"position": 40');

    const after = JSON.parse(
      textOf(await client.callTool({ name: "control_describe", arguments: { uuid: blind.uuid } })),
    ) as {
      states: { position: number };
    };
    expect(after.states.position).toBe(40);
    expect(sim.house().controls.find((c) => c.uuid === blind.uuid)?.states.position).toBe(40);
    expect(sim.stats().executions).toContainEqual({
      tool: "control_command",
      arguments: { command: "manualPosition/40", uuid: blind.uuid },
      count: 1,
    });
  });

  it("returns isError for an unknown uuid or an invalid command and does not execute", async () => {
    const { client } = await connect(sim.relayUrls[0] ?? "");
    const light = sim.house().controls.find((c) => c.type === "LightControllerV2")!;
    const badUuid = await client.callTool({
      name: "control_command",
      arguments: { uuid: "00000000-0000-0000-ffff000000000000", command: "on" },
    });
    expect(badUuid.isError).toBe(true);
    expect(textOf(badUuid)).toMatch(/not found/);
    const badCmd = await client.callTool({
      name: "control_command",
      arguments: { uuid: light.uuid, command: "explode" },
    });
    expect(badCmd.isError).toBe(true);
    expect(textOf(badCmd)).toMatch(/not valid.*Allowed: changeTo\/\{n\}, on, off/);
    const outOfRange = await client.callTool({
      name: "control_command",
      arguments: { uuid: light.uuid, command: "changeTo/9999" },
    });
    expect(outOfRange.isError).toBe(true);
    const logged = sim.stats().executions.filter((e) => e.tool === "control_command");
    expect(logged.some((e) => (e.arguments as { uuid: string }).uuid === light.uuid)).toBe(false);
    expect(logged.some((e) => (e.arguments as { uuid: string }).uuid.startsWith("00000000"))).toBe(false);
    expect(sim.house().controls.find((c) => c.uuid === light.uuid)?.states.on).toBe(false);
  });

  it("answers the read-only tools with plausible data", async () => {
    const { client } = await connect(sim.relayUrls[0] ?? "");
    const status = JSON.parse(textOf(await client.callTool({ name: "system_status", arguments: {} }))) as {
      serial: string;
    };
    expect(status.serial).toBe(sim.serial);
    expect(textOf(await client.callTool({ name: "statistics", arguments: {} }))).toContain("energyTodayKwh");
    expect(textOf(await client.callTool({ name: "weather_forecast", arguments: {} }))).toContain("tempMaxC");
  });

  it("shares sessions across relays (one Miniserver behind them)", async () => {
    const { transport } = await connect(sim.relayUrls[0] ?? "");
    const sessionId = transport.sessionId;
    expect(sessionId).toBeTruthy();
    const res = await fetch(sim.relayUrls[1] ?? "", {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-session-id": sessionId ?? "",
        "mcp-protocol-version": transport.protocolVersion ?? "2025-06-18",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 7, method: "tools/list" }),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    expect(await res.text()).toContain("control_find");
  });

  it("answers 404 for an expired session", async () => {
    const { client, transport } = await connect(sim.relayUrls[0] ?? "");
    const sessions = sim.stats().sessions;
    expect(sessions).toBeGreaterThan(0);
    await fetch(`${sim.adminUrl}/expire-session`, { method: "POST" });
    const err = await client.listTools().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(String((err as Error).message)).toMatch(/404|Session not found/);
    const raw = await fetch(sim.relayUrls[0] ?? "", {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "mcp-session-id": transport.sessionId ?? "",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(raw.status).toBe(404);
    expect(((await raw.json()) as { error: { code: number } }).error.code).toBe(-32001);
  });
});
