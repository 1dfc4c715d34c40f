import { afterEach, describe, expect, it } from "vitest";
import { type Simulator, startSimulator } from "../src/index.js";
import { login } from "./helpers.js";

let sim: Simulator | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

const PROTOCOL = "2025-06-18";

/** A raw MCP session over fetch, so tests see exactly what goes over the wire. */
async function rawSession(url: string, token: string) {
  const headers = (sessionId?: string): Record<string, string> => ({
    authorization: `Bearer ${token}`,
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    "mcp-protocol-version": PROTOCOL,
    ...(sessionId ? { "mcp-session-id": sessionId } : {}),
  });
  const init = await fetch(url, {
    method: "POST",
    headers: headers(),
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 0,
      method: "initialize",
      params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: "raw", version: "1" } },
    }),
  });
  expect(init.status).toBe(200);
  await init.text();
  const sessionId = init.headers.get("mcp-session-id") ?? "";
  await fetch(url, {
    method: "POST",
    headers: headers(sessionId),
    body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }),
  });
  let nextId = 1;
  return {
    sessionId,
    post: (target: string, method: string, params: unknown) =>
      fetch(target, {
        method: "POST",
        headers: headers(sessionId),
        body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params }),
      }),
  };
}

describe("relays", () => {
  it("kill refuses connections and moves connect to a live relay; sessions survive on another relay; revive", async () => {
    sim = await startSimulator({ relays: 3 });
    const [r0, r1] = sim.relayUrls as [string, string];
    const token = (await login(sim, new URL(r0).origin)).access_token;
    const s = await rawSession(r0, token);

    await fetch(`${sim.adminUrl}/kill-relay`, { method: "POST", body: JSON.stringify({ index: 0 }) });
    await expect(fetch(r0)).rejects.toThrow();
    expect(sim.currentRelay()).toBe(1);
    const resolved = await fetch(`${sim.connectUrl}/${sim.serial}/mcp`, { redirect: "manual" });
    expect(resolved.headers.get("location")).toBe(r1);

    const viaR1 = await s.post(r1, "tools/list", {});
    expect(viaR1.status).toBe(200);
    expect(await viaR1.text()).toContain("control_describe");

    sim.killRelay(); // current = 1
    await expect(fetch(r1)).rejects.toThrow();
    expect(sim.currentRelay()).toBe(2);

    await sim.reviveRelay(0);
    const back = await fetch(r0, { method: "POST" });
    expect(back.status).toBe(401);
    expect(sim.rotateRelay()).toBe(r0); // wraps from 2 to 0
  });

  it("rotation skips dead relays", async () => {
    sim = await startSimulator({ relays: 3 });
    sim.killRelay(1);
    expect(sim.currentRelay()).toBe(0);
    expect(sim.rotateRelay()).toBe(sim.relayUrls[2]);
    expect(sim.rotateRelay()).toBe(sim.relayUrls[0]);
  });
});

describe("faults and execution log", () => {
  it("dropAfterExecute executes the call once, then drops the connection without a response", async () => {
    sim = await startSimulator();
    const relay = sim.relayUrls[0] ?? "";
    const token = (await login(sim, new URL(relay).origin)).access_token;
    const s = await rawSession(relay, token);
    const sw = sim.house().controls.find((c) => c.name === "Coffee Machine")!;
    await fetch(`${sim.adminUrl}/faults`, { method: "POST", body: JSON.stringify({ dropAfterExecute: 1 }) });

    const dropped = s
      .post(relay, "tools/call", { name: "control_command", arguments: { uuid: sw.uuid, command: "on" } })
      .then((r) => r.text());
    await expect(dropped).rejects.toThrow();
    expect(sim.house().controls.find((c) => c.uuid === sw.uuid)?.states.active).toBe(true);

    const next = await s.post(relay, "tools/call", {
      name: "control_command",
      arguments: { uuid: sw.uuid, command: "off" },
    });
    expect(next.status).toBe(200);
    expect(await next.text()).toContain('\\"active\\": false');
    const writes = sim.stats().executions.filter((e) => e.tool === "control_command");
    expect(writes).toEqual([
      { tool: "control_command", arguments: { command: "on", uuid: sw.uuid }, count: 1 },
      { tool: "control_command", arguments: { command: "off", uuid: sw.uuid }, count: 1 },
    ]);
  });

  it("httpErrors answers N MCP POSTs with the status without executing", async () => {
    sim = await startSimulator();
    const relay = sim.relayUrls[0] ?? "";
    const token = (await login(sim, new URL(relay).origin)).access_token;
    const s = await rawSession(relay, token);
    const sw = sim.house().controls.find((c) => c.name === "Office Socket")!;
    sim.setFaults({ httpErrors: 2, httpErrorStatus: 502 });
    const call = () =>
      s.post(relay, "tools/call", {
        name: "control_command",
        arguments: { uuid: sw.uuid, command: "pulse" },
      });
    expect((await call()).status).toBe(502);
    expect((await call()).status).toBe(502);
    expect(sim.stats().executions).toEqual([]);
    expect((await call()).status).toBe(200);
    expect(sim.stats().executions).toEqual([
      { tool: "control_command", arguments: { command: "pulse", uuid: sw.uuid }, count: 1 },
    ]);
  });

  it("groups identical calls in the execution log and resets with stats", async () => {
    sim = await startSimulator();
    const relay = sim.relayUrls[0] ?? "";
    const token = (await login(sim, new URL(relay).origin)).access_token;
    const s = await rawSession(relay, token);
    for (let i = 0; i < 3; i++)
      await (await s.post(relay, "tools/call", { name: "system_status", arguments: {} })).text();
    expect(sim.stats().executions).toEqual([{ tool: "system_status", arguments: {}, count: 3 }]);
    expect(sim.stats().sessions).toBe(1);
    expect(sim.stats().mcpRequests).toBeGreaterThanOrEqual(5);
    await fetch(`${sim.adminUrl}/reset-stats`, { method: "POST" });
    expect(sim.stats()).toMatchObject({ executions: [], mcpRequests: 0, logins: 0 });
  });

  it("adds latency to MCP POSTs", async () => {
    sim = await startSimulator();
    const relay = sim.relayUrls[0] ?? "";
    const token = (await login(sim, new URL(relay).origin)).access_token;
    const s = await rawSession(relay, token);
    sim.setFaults({ latencyMs: 150 });
    const t0 = performance.now();
    await (await s.post(relay, "tools/list", {})).text();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);
  });

  it("uses configured tool names and can drop annotations", async () => {
    sim = await startSimulator({ toolNames: { control_command: "control_cmd" }, annotations: false });
    const relay = sim.relayUrls[0] ?? "";
    const token = (await login(sim, new URL(relay).origin)).access_token;
    const s = await rawSession(relay, token);
    const body = await (await s.post(relay, "tools/list", {})).text();
    expect(body).toContain('"control_cmd"');
    expect(body).not.toContain('"control_command"');
    expect(body).not.toContain("readOnlyHint");
  });
});

describe("session idle expiry", () => {
  it("forgets a session idle longer than sessionTtl (404)", async () => {
    sim = await startSimulator({ sessionTtl: 0.2 });
    const relay = sim.relayUrls[0] ?? "";
    const token = (await login(sim, new URL(relay).origin)).access_token;
    const s = await rawSession(relay, token);
    expect((await s.post(relay, "tools/list", {})).status).toBe(200);
    // The idle lifetime itself is under test here, so let it pass (any request would reset it).
    await new Promise((r) => setTimeout(r, 300));
    const res = await s.post(relay, "tools/list", {});
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { message: string } }).error.message).toBe("Session not found");
  });
});

describe("house admin", () => {
  it("renames and adds controls through the admin API", async () => {
    sim = await startSimulator();
    const house = (await (await fetch(`${sim.adminUrl}/house`)).json()) as {
      controls: { uuid: string; name: string }[];
      rooms: string[];
      categories: string[];
    };
    expect(house.controls.length).toBeGreaterThanOrEqual(30);
    expect(house.rooms.length).toBeGreaterThanOrEqual(10);
    expect(house.categories.length).toBeGreaterThanOrEqual(8);
    const first = house.controls[0]!;
    await fetch(`${sim.adminUrl}/rename-control`, {
      method: "POST",
      body: JSON.stringify({ uuid: first.uuid, name: "Renamed" }),
    });
    expect(sim.house().controls[0]?.name).toBe("Renamed");
    const added = (await (
      await fetch(`${sim.adminUrl}/add-control`, {
        method: "POST",
        body: JSON.stringify({ name: "Sauna", type: "Switch", room: "Bathroom", category: "Power" }),
      })
    ).json()) as { uuid: string };
    expect(sim.house().controls.find((c) => c.uuid === added.uuid)?.commands).toEqual(["on", "off", "pulse"]);
  });
});
