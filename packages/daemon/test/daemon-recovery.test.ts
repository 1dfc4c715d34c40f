/**
 * Upstream trouble seen through the real daemon: expired sessions, a killed relay, expired
 * access tokens, a write whose connection drops after it ran, a cancelled request.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpError, ToolListChangedNotificationSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { RawConnection, SocketClientTransport } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";

const OutcomeUnknown = -32002;

let h: TempHome;
let s: SimHandle;
let d: DaemonProcess;
let client: Client;
let watcher: Client;
const listChanged = { client: 0, watcher: 0 };

beforeAll(async () => {
  h = makeHome();
  s = await withSimulator({ relays: 3 });
  d = spawnDaemon(s.env(h.home));
  await d.waitReady();
  // The policy reads the house structure at start (tools/call reads): let it finish so that
  // the fault knobs below hit the calls of the tests, not that background read.
  await d.waitStatus(
    (x) => Boolean((x.policy as { structure?: unknown } | undefined)?.structure),
    20_000,
    "the structure snapshot",
  );
  client = new Client({ name: "recovery-test", version: "1" });
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    listChanged.client++;
  });
  await client.connect(new SocketClientTransport(d.socketPath));
  watcher = new Client({ name: "watcher", version: "1" });
  watcher.setNotificationHandler(ToolListChangedNotificationSchema, () => {
    listChanged.watcher++;
  });
  await watcher.connect(new SocketClientTransport(d.socketPath));
});

afterEach(() => {
  s.sim.setFaults({ latencyMs: 0, dropAfterExecute: 0, httpErrors: 0 });
});

afterAll(async () => {
  await client?.close().catch(() => {});
  await watcher?.close().catch(() => {});
  await d?.stop().catch(() => d.kill9());
  await s?.stop();
  h?.cleanup();
});

function sameArgs(a: unknown, b: { uuid: string; command: string }): boolean {
  const x = a as { uuid?: unknown; command?: unknown };
  return x.uuid === b.uuid && x.command === b.command;
}

function textOf(result: unknown): string {
  const content = (result as { content?: Array<{ type: string; text?: string }> }).content ?? [];
  return content.map((c) => c.text ?? "").join("");
}

async function read(): Promise<string> {
  return textOf(await client.callTool({ name: "system_status", arguments: {} }));
}

describe("recovery through the daemon", () => {
  // First: later tests reconnect, and the policy then re-reads the structure in the background,
  // whose reads could take the one-shot drop fault meant for this write.
  it("a write whose connection drops after it ran: OutcomeUnknown, executed exactly once", async () => {
    const light = s.sim
      .house()
      .controls.find((c) => c.type === "LightControllerV2" && c.commands.includes("on"));
    expect(light).toBeDefined();
    const args = { uuid: light!.uuid, command: "on" };
    s.sim.setFaults({ dropAfterExecute: 1 });
    const err = await client.callTool({ name: "control_command", arguments: args }).catch((e: unknown) => e);
    expect(err, JSON.stringify(err)).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(OutcomeUnknown);
    expect((err as McpError).message).toMatch(/outcome unknown/i);
    expect((err as McpError).message).toMatch(/check the device/i);
    const execs = s.sim
      .stats()
      .executions.filter((e) => e.tool === "control_command" && sameArgs(e.arguments, args));
    expect(execs.reduce((n, e) => n + e.count, 0)).toBe(1);
    // and the daemon carries on
    expect(await read()).toContain(s.sim.serial);
    const after = s.sim
      .stats()
      .executions.filter((e) => e.tool === "control_command" && sameArgs(e.arguments, args));
    expect(after.reduce((n, e) => n + e.count, 0)).toBe(1);
  });

  it("an expired MCP session is re-initialized transparently and every client hears tools/list_changed", async () => {
    expect(await read()).toContain(s.sim.serial);
    const before = s.sim.stats().sessions;
    const heard = { ...listChanged };
    s.sim.expireSessions();
    expect(await read()).toContain(s.sim.serial);
    expect(s.sim.stats().sessions).toBe(before + 1);
    expect(s.sim.stats().logins).toBe(1);
    await waitFor(() => listChanged.client > heard.client && listChanged.watcher > heard.watcher, {
      what: "notifications/tools/list_changed at both clients",
    });
  });

  it("expired access tokens: one refresh for many concurrent calls", async () => {
    const before = s.sim.stats();
    s.sim.expireAccessTokens();
    const results = await Promise.all(Array.from({ length: 8 }, () => read()));
    for (const r of results) expect(r).toContain(s.sim.serial);
    const after = s.sim.stats();
    expect(after.refreshes - before.refreshes).toBe(1);
    expect(after.logins).toBe(before.logins);
  });

  it("a killed relay: reads still succeed (re-resolve + reconnect), the status shows the new entry", async () => {
    const oldEntry = (await d.status()).entry;
    s.sim.killRelay();
    expect(await read()).toContain(s.sim.serial);
    const st = await d.waitStatus((x) => x.state === "ready" && x.entry !== oldEntry, 15_000, "a new entry");
    expect(st.entry).toBe(s.sim.relayUrls[s.sim.currentRelay()]);
  });

  it("a cancelled request is aborted upstream and gets no response", async () => {
    const r = await RawConnection.open(d.socketPath);
    try {
      await r.initialize("canceller", 0);
      s.sim.setFaults({ latencyMs: 3_000 });
      const cancelledBefore = Number(((await d.status()).counters as Record<string, number>).cancelled ?? 0);
      await r.send({
        jsonrpc: "2.0",
        id: 5,
        method: "tools/call",
        params: { name: "system_status", arguments: {} },
      });
      await r.send({
        jsonrpc: "2.0",
        method: "notifications/cancelled",
        params: { requestId: 5, reason: "user" },
      });
      await waitFor(
        async () =>
          Number(((await d.status()).counters as Record<string, number>).cancelled) === cancelledBefore + 1,
        { what: "the cancel to be counted" },
      );
      s.sim.setFaults({ latencyMs: 0 });
      await r.send({ jsonrpc: "2.0", id: 6, method: "ping" });
      await r.waitMessage((m) => m.id === 6);
      expect(r.messages.some((m) => m.id === 5)).toBe(false);
    } finally {
      r.close();
    }
  });
});
