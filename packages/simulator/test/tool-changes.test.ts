import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { type Tool, ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { type Simulator, type SimulatorOptions, startSimulator } from "../src/index.js";
import { login, waitFor } from "./helpers.js";

const ORIGINAL = [
  "control_find",
  "control_describe",
  "control_command",
  "system_status",
  "statistics",
  "weather_forecast",
];

let sim: Simulator | undefined;
let clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  clients = [];
  await sim?.stop();
  sim = undefined;
});

interface Conn {
  client: Client;
  /** How many notifications/tools/list_changed this client has received. */
  listChanged(): number;
}

async function start(options: SimulatorOptions = {}): Promise<{ s: Simulator; token: string }> {
  const s = await startSimulator(options);
  sim = s;
  const token = (await login(s, new URL(s.relayUrls[0] ?? "").origin)).access_token;
  return { s, token };
}

/**
 * A real SDK client. Resolves only once its standalone GET SSE stream is open: server-initiated
 * notifications such as tools/list_changed travel on that stream and are lost before it exists.
 */
async function connect(url: string, token: string): Promise<Conn> {
  let opened!: () => void;
  const streamOpen = new Promise<void>((resolve) => {
    opened = resolve;
  });
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { authorization: `Bearer ${token}` } },
    fetch: async (input, init) => {
      const res = await fetch(input, init);
      if ((init?.method ?? "GET") === "GET" && res.ok) opened();
      return res;
    },
  });
  const client = new Client({ name: "tool-changes-test", version: "1.0.0" });
  clients.push(client);
  let count = 0;
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    count += 1;
  });
  await client.connect(transport);
  await Promise.race([
    streamOpen,
    new Promise((_, reject) => setTimeout(() => reject(new Error("GET SSE stream did not open")), 5000)),
  ]);
  return { client, listChanged: () => count };
}

async function list(c: Conn): Promise<Tool[]> {
  return (await c.client.listTools()).tools;
}

function byName(tools: Tool[], name: string): Tool {
  const t = tools.find((x) => x.name === name);
  if (!t) throw new Error(`tool ${name} not listed (listed: ${tools.map((x) => x.name).join(", ")})`);
  return t;
}

/** Waits for exactly one more list_changed (more than one within 200 ms fails). */
async function expectOneListChanged(c: Conn, before: number): Promise<void> {
  await waitFor(() => c.listChanged() > before, 5000, "notifications/tools/list_changed");
  await new Promise((r) => setTimeout(r, 200));
  expect(c.listChanged()).toBe(before + 1);
}

function textOf(result: unknown): string {
  return (result as { content: { text: string }[] }).content.map((c) => c.text).join("");
}

describe("tool catalogue changes (firmware update)", () => {
  it("adds a read tool and a write tool; a connected client is notified and sees them; the write tool executes through the house", async () => {
    const { s, token } = await start();
    const c = await connect(s.relayUrls[0] ?? "", token);
    const before = await list(c);
    expect(before.map((t) => t.name)).toEqual(ORIGINAL);
    expect(s.listedTools()).toEqual(ORIGINAL);

    s.changeTools({
      add: [
        { name: "energy_report", title: "Energy report", description: "Monthly energy", text: "42 kWh" },
        { name: "control_command_v2", description: "Sends a command (v2)", write: true },
      ],
    });
    await expectOneListChanged(c, 0);

    const after = await list(c);
    expect(after.map((t) => t.name)).toEqual([...ORIGINAL, "energy_report", "control_command_v2"]);
    expect(after.slice(0, ORIGINAL.length)).toEqual(before); // the built-ins are untouched
    const report = byName(after, "energy_report");
    expect(report).toMatchObject({ title: "Energy report", description: "Monthly energy" });
    expect(report.annotations).toEqual({ readOnlyHint: true });
    expect(report.inputSchema.properties ?? {}).toEqual({});
    const v2 = byName(after, "control_command_v2");
    expect(v2.annotations).toEqual({ readOnlyHint: false, destructiveHint: true });
    expect(v2.inputSchema).toEqual(byName(before, "control_command").inputSchema);
    expect(s.listedTools()).toEqual(after.map((t) => t.name));

    expect(textOf(await c.client.callTool({ name: "energy_report", arguments: {} }))).toBe("42 kWh");

    const light = s.house().controls.find((x) => x.type === "LightControllerV2")!;
    expect(light.states.on).toBe(false);
    const done = await c.client.callTool({
      name: "control_command_v2",
      arguments: { uuid: light.uuid, command: "on" },
    });
    expect(done.isError).toBeFalsy();
    expect(textOf(done)).toContain(`jdev/sps/io/${light.uuid}/on`);
    expect(s.house().controls.find((x) => x.uuid === light.uuid)?.states.on).toBe(true);
    const refused = await c.client.callTool({
      name: "control_command_v2",
      arguments: { uuid: light.uuid, command: "explode" },
    });
    expect(refused.isError).toBe(true);

    const executions = s.stats().executions;
    expect(executions).toContainEqual({
      tool: "control_command_v2",
      arguments: { command: "on", uuid: light.uuid },
      count: 1,
    });
    expect(executions).toContainEqual({ tool: "energy_report", arguments: {}, count: 1 });
    expect(executions.filter((e) => e.tool === "control_command")).toEqual([]);
    expect(executions.filter((e) => e.tool === "control_command_v2")).toHaveLength(1);
  });

  it("changes control_command's annotations to read-only; only that tool changes", async () => {
    const { s, token } = await start();
    const c = await connect(s.relayUrls[0] ?? "", token);
    const before = await list(c);
    expect(byName(before, "control_command").annotations).toEqual({
      readOnlyHint: false,
      destructiveHint: true,
    });

    s.changeTools({ annotations: { control_command: { readOnlyHint: true } } });
    await expectOneListChanged(c, 0);

    const after = await list(c);
    expect(after.map((t) => t.name)).toEqual(ORIGINAL);
    expect(byName(after, "control_command").annotations).toEqual({ readOnlyHint: true });
    const { annotations: _a, ...restAfter } = byName(after, "control_command");
    const { annotations: _b, ...restBefore } = byName(before, "control_command");
    expect(restAfter).toEqual(restBefore);
    expect(after.filter((t) => t.name !== "control_command")).toEqual(
      before.filter((t) => t.name !== "control_command"),
    );

    // null takes the annotations away entirely
    s.changeTools({ annotations: { control_command: null } });
    await expectOneListChanged(c, 1);
    expect(byName(await list(c), "control_command")).not.toHaveProperty("annotations");
  });

  it("adds an optional property to control_find's input schema; calls with and without it work", async () => {
    const { s, token } = await start();
    const c = await connect(s.relayUrls[0] ?? "", token);
    const before = byName(await list(c), "control_find");

    s.changeTools({
      inputProperties: { control_find: { limit: { type: "integer", description: "Max results" } } },
    });
    await expectOneListChanged(c, 0);

    const after = byName(await list(c), "control_find");
    expect(after.inputSchema.properties).toEqual({
      ...before.inputSchema.properties,
      limit: {
        type: "integer",
        description: "Max results",
        minimum: expect.any(Number),
        maximum: expect.any(Number),
      },
    });
    expect(after.inputSchema.required ?? []).toEqual(before.inputSchema.required ?? []);
    expect(after.inputSchema).not.toEqual(before.inputSchema);
    expect(after.annotations).toEqual(before.annotations);
    expect(after.description).toBe(before.description);

    const withLimit = await c.client.callTool({
      name: "control_find",
      arguments: { room: "Kitchen", limit: 2 },
    });
    expect(withLimit.isError).toBeFalsy();
    const withBadLimit = await c.client.callTool({ name: "control_find", arguments: { limit: "two" } });
    expect(withBadLimit.isError).toBe(true);
    const without = await c.client.callTool({ name: "control_find", arguments: { room: "Kitchen" } });
    expect(without.isError).toBeFalsy();
  });

  it("changes only a description: name, input schema and annotations stay identical", async () => {
    const { s, token } = await start();
    const c = await connect(s.relayUrls[0] ?? "", token);
    const before = await list(c);

    s.changeTools({ descriptions: { control_command: "Sends a command to a Loxone control." } });
    await expectOneListChanged(c, 0);

    const after = await list(c);
    const cmd = byName(after, "control_command");
    expect(cmd.description).toBe("Sends a command to a Loxone control.");
    expect(cmd.description).not.toBe(byName(before, "control_command").description);
    expect({ ...cmd, description: undefined }).toEqual({
      ...byName(before, "control_command"),
      description: undefined,
    });
    expect(after.filter((t) => t.name !== "control_command")).toEqual(
      before.filter((t) => t.name !== "control_command"),
    );
  });

  it("reset restores the original list exactly, for live and for new sessions", async () => {
    const { s, token } = await start();
    const c = await connect(s.relayUrls[0] ?? "", token);
    const original = await list(c);

    s.changeTools({ add: [{ name: "scene_activate", write: true, annotations: null }] });
    s.changeTools({
      annotations: { control_command: { readOnlyHint: true }, control_find: null },
      inputProperties: { control_describe: { verbose: { type: "boolean" } } },
      descriptions: { weather_forecast: "Forecast." },
      remove: ["statistics"],
    });
    await waitFor(() => c.listChanged() >= 1, 5000, "list_changed");
    const changed = await list(c);
    expect(changed.map((t) => t.name)).toEqual([
      "control_find",
      "control_describe",
      "control_command",
      "system_status",
      "weather_forecast",
      "scene_activate",
    ]);
    expect(byName(changed, "scene_activate")).not.toHaveProperty("annotations");
    expect(byName(changed, "control_find")).not.toHaveProperty("annotations");
    const removed = await c.client.callTool({ name: "statistics", arguments: {} });
    expect(removed.isError).toBe(true);

    // a session opened after the change starts with the changed catalogue
    const late = await connect(s.relayUrls[1] ?? "", token);
    expect(await list(late)).toEqual(changed);

    const seen = c.listChanged();
    const seenLate = late.listChanged();
    s.resetTools();
    await expectOneListChanged(c, seen);
    await expectOneListChanged(late, seenLate);

    const restored = await list(c);
    expect(JSON.stringify(restored)).toBe(JSON.stringify(original));
    expect(JSON.stringify(await list(late))).toBe(JSON.stringify(original));
    expect(s.listedTools()).toEqual(ORIGINAL);
    const fresh = await connect(s.relayUrls[0] ?? "", token);
    expect(JSON.stringify(await list(fresh))).toBe(JSON.stringify(original));

    const gone = await c.client.callTool({ name: "scene_activate", arguments: { uuid: "x", command: "on" } });
    expect(gone.isError).toBe(true);
    expect(textOf(gone)).toMatch(/scene_activate not found/);
    expect(textOf(await c.client.callTool({ name: "statistics", arguments: {} }))).toContain(
      "energyTodayKwh",
    );
  });

  it("changes accumulate; re-adding a name replaces that tool in place", async () => {
    const { s, token } = await start();
    const c = await connect(s.relayUrls[0] ?? "", token);
    s.changeTools({ add: [{ name: "a_tool", text: "one" }, { name: "b_tool" }] });
    s.changeTools({ add: [{ name: "a_tool", text: "two", write: true }] });
    s.changeTools({ descriptions: { statistics: "Stats." } });
    const tools = await list(c);
    expect(tools.map((t) => t.name)).toEqual([...ORIGINAL, "a_tool", "b_tool"]);
    expect(byName(tools, "a_tool").inputSchema.required).toEqual(["uuid", "command"]);
    expect(byName(tools, "a_tool").annotations).toEqual({ readOnlyHint: false, destructiveHint: true });
    expect(byName(tools, "statistics").description).toBe("Stats.");
    const light = s.house().controls.find((x) => x.type === "LightControllerV2")!;
    const r = await c.client.callTool({ name: "a_tool", arguments: { uuid: light.uuid, command: "on" } });
    expect(r.isError).toBeFalsy();
    expect(s.stats().executions).toContainEqual({
      tool: "a_tool",
      arguments: { command: "on", uuid: light.uuid },
      count: 1,
    });
  });

  it("addresses renamed built-ins by ToolKey and follows the annotations option", async () => {
    const { s, token } = await start({ toolNames: { control_command: "control_cmd" }, annotations: false });
    const c = await connect(s.relayUrls[0] ?? "", token);
    const before = await list(c);
    expect(byName(before, "control_cmd")).not.toHaveProperty("annotations");
    s.changeTools({
      annotations: { control_command: { destructiveHint: false } },
      add: [{ name: "extra_read" }],
    });
    await expectOneListChanged(c, 0);
    const after = await list(c);
    expect(byName(after, "control_cmd").annotations).toEqual({ destructiveHint: false });
    expect(byName(after, "extra_read")).not.toHaveProperty("annotations");
    expect(() => s.changeTools({ add: [{ name: "control_cmd" }] })).toThrow(/built-in/);
  });

  it("rejects an invalid change as a whole and changes nothing", async () => {
    const { s } = await start();
    const bad: unknown[] = [
      { add: [{ name: "ok_tool" }], annotations: { no_such_tool: {} } },
      { add: [{ name: "control_find" }] },
      { add: [{ name: "has space" }] },
      { add: [{ name: "x" }, { name: "x" }] },
      { annotations: { control_command: { readOnlyHint: "yes" } } },
      { annotation: { control_command: {} } },
      { inputProperties: { control_find: { query: { type: "string" } } } },
      { inputProperties: { control_find: { n: { type: "date" } } } },
      { descriptions: { control_find: 5 } },
      { remove: ["nope"] },
      [],
    ];
    for (const change of bad) {
      expect(() => s.changeTools(change as never), JSON.stringify(change)).toThrow();
    }
    expect(s.listedTools()).toEqual(ORIGINAL);
  });
});

describe("admin routes", () => {
  it("POST /change-tools and /reset-tools change what a connected client lists; bad bodies get 400", async () => {
    const { s, token } = await start();
    const c = await connect(s.relayUrls[0] ?? "", token);
    const original = await list(c);
    const post = (path: string, body?: unknown) =>
      fetch(`${s.adminUrl}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });

    const res = await post("/change-tools", {
      add: [{ name: "door_unlock", write: true, annotations: { readOnlyHint: true } }],
      annotations: { control_command: { readOnlyHint: true } },
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, currentRelay: 0, tools: [...ORIGINAL, "door_unlock"] });
    await expectOneListChanged(c, 0);
    const changed = await list(c);
    expect(byName(changed, "door_unlock").annotations).toEqual({ readOnlyHint: true });
    expect(byName(changed, "control_command").annotations).toEqual({ readOnlyHint: true });

    const rejected = await post("/change-tools", { add: [{ name: "control_find" }] });
    expect(rejected.status).toBe(400);
    expect(((await rejected.json()) as { error_description: string }).error_description).toMatch(/built-in/);
    expect(s.listedTools()).toEqual([...ORIGINAL, "door_unlock"]);

    const listed = await fetch(`${s.adminUrl}/tools`);
    expect(await listed.json()).toEqual({ tools: [...ORIGINAL, "door_unlock"] });

    const reset = await post("/reset-tools");
    expect(reset.status).toBe(200);
    expect(await reset.json()).toEqual({ ok: true, currentRelay: 0, tools: ORIGINAL });
    await expectOneListChanged(c, 1);
    expect(JSON.stringify(await list(c))).toBe(JSON.stringify(original));
  });
});
