/**
 * What MCP clients see of the Miniserver's tools, through the REAL shim and daemon against the
 * simulator, with the SDK Client as Claude or Cursor would use it:
 * - a read-only client (by its shim's --name rule, or the global mode) gets a tools/list without
 *   write tools, but with the emergency stop;
 * - a tool the Miniserver does not offer is refused as unknown, never held for the person.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { controlCall } from "../../../test-support/socket-client.js";
import { SHIM_BIN } from "../../cli/test/helpers.js";

// biome-ignore lint/suspicious/noExplicitAny: loose JSON from control methods
type J = any;

const READS = ["control_find", "control_describe", "system_status", "statistics", "weather_forecast"];

let s: SimHandle;
const homes: TempHome[] = [];
const daemons: DaemonProcess[] = [];
const clients: Client[] = [];

/** A daemon whose config.json holds this policy section, ready with its structure. */
async function daemonWith(policy: Record<string, unknown>): Promise<{ d: DaemonProcess; h: TempHome }> {
  const h = makeHome();
  homes.push(h);
  mkdirSync(join(h.home, "config"), { recursive: true, mode: 0o700 });
  writeFileSync(join(h.home, "config", "config.json"), JSON.stringify({ policy }));
  const d = spawnDaemon(s.env(h.home));
  daemons.push(d);
  await d.waitReady(30_000);
  await d.waitStatus((st) => (st.policy as J)?.structure?.controls > 0, 30_000, "structure snapshot");
  return { d, h };
}

/** An SDK client through the real shim started with `--name <shimName>`. */
async function connect(
  h: TempHome,
  shimName: string,
  opts: { clientInfoName?: string; onElicit?: () => void } = {},
): Promise<Client> {
  const client = new Client(
    { name: opts.clientInfoName ?? shimName, version: "1" },
    opts.onElicit ? { capabilities: { elicitation: {} } } : {},
  );
  if (opts.onElicit) {
    const onElicit = opts.onElicit;
    client.setRequestHandler(ElicitRequestSchema, async () => {
      onElicit();
      return { action: "accept", content: { confirm: true } };
    });
  }
  await client.connect(
    new StdioClientTransport({
      command: process.execPath,
      args: [SHIM_BIN, "--name", shimName],
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: h.home, LOXMCP_HOME: h.home },
    }),
  );
  clients.push(client);
  return client;
}

async function toolNames(c: Client): Promise<string[]> {
  return (await c.listTools()).tools.map((t) => t.name);
}

function text(r: J): string {
  return (r?.content ?? []).map((c: J) => c.text ?? "").join("\n");
}

beforeAll(async () => {
  s = await withSimulator();
});

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => {});
  for (const d of daemons) await d.stop().catch(() => d.kill9());
  await s?.stop();
  for (const h of homes) h.cleanup();
});

describe("tools/list per client mode (real shim + daemon)", () => {
  it("a client whose --name rule is read-only sees no write tools; the rule follows --name, not clientInfo", async () => {
    const { h } = await daemonWith({ mode: "confirm", clients: { cursor: "read-only" } });
    const cursor = await connect(h, "cursor");
    expect(await toolNames(cursor)).toEqual([...READS, "loxmcp_emergency_stop"]);
    // Anyone may stop: the emergency stop works for the read-only client.
    const stop = await cursor.callTool({ name: "loxmcp_emergency_stop", arguments: { reason: "test" } });
    expect(text(stop)).toMatch(/Emergency stop is ACTIVE/);

    // A client that calls itself "cursor" in clientInfo, through a shim named claude-desktop.
    const desk = await connect(h, "claude-desktop", { clientInfoName: "cursor" });
    const all = await toolNames(desk);
    expect(all).toContain("control_command");
    expect(all).toEqual([
      ...READS.slice(0, 2),
      "control_command",
      ...READS.slice(2),
      "loxmcp_emergency_stop",
    ]);
  });

  it("in global read-only mode only a client whose rule says otherwise sees the writes", async () => {
    const { h } = await daemonWith({ mode: "read-only", clients: { "claude-code": "full" } });
    expect(await toolNames(await connect(h, "zed"))).toEqual([...READS, "loxmcp_emergency_stop"]);
    expect(await toolNames(await connect(h, "claude-code"))).toContain("control_command");
  });
});

describe("unknown tools (real shim + daemon)", () => {
  it("a tool the Miniserver does not offer is refused naming known tools: not held, not asked, not sent", async () => {
    const { d, h } = await daemonWith({ mode: "confirm" });
    let asked = 0;
    const c = await connect(h, "claude-desktop", { onElicit: () => asked++ });
    s.sim.resetStats();
    const r = await c.callTool({ name: "mystery_tool", arguments: { script: "open all doors" } });
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/^loxmcp policy: unknown tool mystery_tool: the Miniserver does not offer it/);
    expect(text(r)).toMatch(/control_find, control_describe, control_command/);
    expect(text(r)).not.toMatch(/approval|code [A-Z0-9]{6}/);
    expect(asked).toBe(0);
    expect(((await d.status()) as J).pendingApprovals).toEqual([]);
    expect(s.sim.stats().executions).toEqual([]);
    const rows = ((await controlCall(d.socketPath, "loxmcp/audit", { denied: true })) as J).events as J[];
    expect(rows.map((e) => [e.tool, e.client, e.decision, e.outcome])).toEqual([
      ["mystery_tool", "claude-desktop", "denied", "not-sent"],
    ]);
    // A real T3 write from the same client still goes to the person (elicitation, no PIN set).
    const door = s.sim.house().controls.find((x) => x.name === "Front Door Intercom")?.uuid;
    const ran = await c.callTool({ name: "control_command", arguments: { uuid: door, command: "open" } });
    expect(asked).toBe(1);
    expect(ran.isError).toBeFalsy();
    expect(s.sim.stats().executions.filter((e) => e.tool === "control_command")).toHaveLength(1);
  });
});
