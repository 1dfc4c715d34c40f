/**
 * Upstream errors named right, never hammered — through the REAL daemon process, its socket and
 * the simulator over HTTP:
 * - an unknown serial (connect 404) is a configuration error naming LOXONE_SERIAL, retried no
 *   faster than connect's rate budget allows, and a later 429 never hides it;
 * - a failing LOXONE_PASSWORD_COMMAND is named with its exit status and first stderr line, and is
 *   not run again until `loxmcp/relogin`;
 * - `initialize` during a short relay outage waits for the relay instead of failing at once;
 * - a timed-out write is "timed out; outcome unknown" (-32002), a timed-out read "timed out" (-32001);
 * - a forced relogin with a fresh relay entry costs connect nothing.
 */
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { ControlCallError, controlCall, SocketClientTransport } from "../../../test-support/socket-client.js";
import { withDeadline } from "../../../test-support/wait.js";

const OutcomeUnknown = -32002;
const UpstreamUnavailable = -32001;

let h: TempHome | undefined;
let s: SimHandle | undefined;
let d: DaemonProcess | undefined;
const clients: Client[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => {});
  await d?.stop().catch(() => d?.kill9());
  await s?.stop();
  h?.cleanup();
  d = undefined;
  s = undefined;
  h = undefined;
});

async function connectClient(name: string): Promise<Client> {
  const c = new Client({ name, version: "1" });
  clients.push(c);
  await c.connect(new SocketClientTransport(d!.socketPath));
  return c;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

describe("unknown serial (connect 404)", () => {
  it("is a config error naming LOXONE_SERIAL, retried at most twice a minute, never hidden by a 429", async () => {
    h = makeHome();
    s = await withSimulator({ relays: 1 });
    const wrong = "504F94A0FFFF";
    d = spawnDaemon(s.env(h.home, { LOXONE_SERIAL: wrong }));
    const first = await d.waitStatus((x) => /LOXONE_SERIAL/.test(x.reason ?? ""), 15_000, "the 404 reason");
    const t0 = Date.now();
    expect(first.state).not.toBe("ready");
    expect(first.reason).toMatch(new RegExp(`does not know Miniserver serial ${wrong}`));
    expect(first.reason).toMatch(/404/);
    // The reason announces the next check, and it is at least 30 s away (≤ 2 requests/min).
    const next = /next check .*in (\d+) s/.exec(first.reason ?? "");
    expect(next, first.reason).not.toBeNull();
    expect(Number(next![1])).toBeGreaterThanOrEqual(30);
    expect(s.sim.stats().connectRequests).toBe(1);

    // An MCP client meanwhile gets a clear error at once (no 30 s wait), naming the serial.
    const c = new Client({ name: "wrong-serial", version: "1" });
    clients.push(c);
    const initErr = await withDeadline(
      c.connect(new SocketClientTransport(d.socketPath)).catch((e: unknown) => e),
      10_000,
      "initialize to fail fast",
    );
    expect(initErr).toBeInstanceOf(McpError);
    expect((initErr as McpError).code).toBe(UpstreamUnavailable);
    expect((initErr as McpError).message).toMatch(/LOXONE_SERIAL/);

    // A forced relogin does not make the daemon ask connect before the scheduled check.
    const relogin = await controlCall(
      d.socketPath,
      "loxmcp/relogin",
      { force: true },
      { timeoutMs: 10_000 },
    ).catch((e: unknown) => e);
    expect(relogin).toBeInstanceOf(ControlCallError);
    expect((relogin as ControlCallError).message).toMatch(/LOXONE_SERIAL/);

    // Watch for ~8 s: still exactly one connect request, the status still names the serial.
    while (Date.now() - t0 < 8_000) {
      const st = await d.status();
      expect(st.reason).toMatch(/LOXONE_SERIAL/);
      await sleep(250);
    }
    expect(s.sim.stats().connectRequests).toBe(1);
    expect(d.stderr()).not.toMatch(/429/);
  }, 40_000);
});

describe("a failing LOXONE_PASSWORD_COMMAND", () => {
  it("is auth_failed naming the command, its exit status and first stderr line; runs again only on relogin", async () => {
    h = makeHome();
    s = await withSimulator({ relays: 1 });
    const counter = join(h.home, "runs.txt");
    const script = join(h.home, "password.sh");
    const failing = `#!/bin/sh
echo run >> "${counter}"
echo "STDOUT-MIGHT-BE-A-SECRET"
echo "vault is locked: unlock it first" >&2
echo "second stderr line" >&2
exit 3
`;
    writeFileSync(script, failing);
    chmodSync(script, 0o700);
    d = spawnDaemon(s.env(h.home, { LOXONE_PASSWORD: "", LOXONE_PASSWORD_COMMAND: script }));
    const st = await d.waitStatus((x) => x.state === "auth_failed", 15_000, "auth_failed");
    expect(st.reason).toMatch(/LOXONE_PASSWORD_COMMAND/);
    expect(st.reason).toMatch(/status 3/);
    expect(st.reason).toMatch(/vault is locked: unlock it first/);
    expect(st.reason).not.toMatch(/second stderr line/);
    expect(st.reason).not.toMatch(/STDOUT-MIGHT-BE-A-SECRET/);
    expect(st.reason).not.toMatch(/authorization server is unavailable/);
    const runs = () => readFileSync(counter, "utf8").split("\n").filter(Boolean).length;
    expect(runs()).toBe(1);

    // A client's request fails at once with the reason, and does not run the command again.
    const c = new Client({ name: "pw-cmd", version: "1" });
    clients.push(c);
    const err = await c.connect(new SocketClientTransport(d.socketPath)).catch((e: unknown) => e);
    expect((err as McpError).message).toMatch(/LOXONE_PASSWORD_COMMAND/);
    await sleep(3_000);
    expect(runs()).toBe(1);
    expect(s.sim.stats().failedLogins + s.sim.stats().logins).toBe(0);
    const log = readFileSync(d.paths.logFile, "utf8");
    expect(log).not.toMatch(/STDOUT-MIGHT-BE-A-SECRET/);
    expect(log).not.toMatch(/authorization server is unavailable/);

    // relogin runs it again (still failing: exactly one more run).
    const again = await controlCall(d.socketPath, "loxmcp/relogin", {}, { timeoutMs: 20_000 }).catch(
      (e: unknown) => e,
    );
    expect(again).toBeInstanceOf(ControlCallError);
    expect((again as ControlCallError).message).toMatch(/LOXONE_PASSWORD_COMMAND.*status 3/);
    expect(runs()).toBe(2);
    await sleep(2_000);
    expect(runs()).toBe(2);

    // Fixed command + relogin: logged in.
    writeFileSync(script, `#!/bin/sh\necho run >> "${counter}"\necho "${s.sim.password}"\n`);
    const ok = (await controlCall(
      d.socketPath,
      "loxmcp/relogin",
      { force: true },
      { timeoutMs: 20_000 },
    )) as {
      state: string;
    };
    expect(ok.state).toBe("ready");
    expect(runs()).toBe(3);
    expect(s.sim.stats().logins).toBe(1);
  }, 60_000);
});

describe("initialize during a short relay outage", () => {
  it("waits for the relay to come back and then answers", async () => {
    h = makeHome();
    s = await withSimulator({ relays: 2, connectRateLimit: 1_000 });
    d = spawnDaemon(s.env(h.home, { LOXMCP_PING_INTERVAL: "1" }));
    await d.waitReady();
    for (let i = 0; i < s.sim.relayUrls.length; i++) s.sim.killRelay(i);
    await d.waitStatus((x) => x.state !== "ready", 15_000, "the daemon to notice the dead relays");
    // connect keeps pointing at the relay it named last (dead); that one comes back.
    const revived = sleep(2_000).then(() => s!.sim.reviveRelay(s!.sim.currentRelay()));
    const t0 = Date.now();
    const c = await withDeadline(connectClient("during-outage"), 30_000, "initialize during the outage");
    const initMs = Date.now() - t0;
    await revived;
    // Answered once the relay was back (not at once from the last session's result, not at the deadline).
    expect(initMs).toBeGreaterThanOrEqual(1_900);
    expect(initMs).toBeLessThan(20_000);
    expect((await d.status()).state).toBe("ready");
    const res = (await c.callTool({ name: "system_status", arguments: {} })) as {
      content: Array<{ text?: string }>;
    };
    expect(res.content.map((x) => x.text ?? "").join("")).toContain(s.sim.serial);
  }, 60_000);
});

describe("request timeouts", () => {
  it("a timed-out write is 'timed out; outcome unknown' (-32002); a timed-out read is -32001 'timed out'", async () => {
    h = makeHome();
    s = await withSimulator({ relays: 1 });
    d = spawnDaemon(s.env(h.home, { LOXMCP_REQUEST_TIMEOUT: "1" }));
    await d.waitReady();
    await d.waitStatus(
      (x) => Boolean((x.policy as { structure?: unknown } | undefined)?.structure),
      20_000,
      "the structure snapshot",
    );
    const c = await connectClient("timeouts");
    const light = s.sim
      .house()
      .controls.find((x) => x.type === "LightControllerV2" && x.commands.includes("on"));
    s.sim.setFaults({ latencyMs: 2_500 });
    const w = await c
      .callTool({ name: "control_command", arguments: { uuid: light!.uuid, command: "on" } })
      .catch((e: unknown) => e);
    expect(w, JSON.stringify(w)).toBeInstanceOf(McpError);
    expect((w as McpError).code).toBe(OutcomeUnknown);
    expect((w as McpError).message).toMatch(/timed out; outcome unknown/i);
    expect((w as McpError).message).not.toMatch(/connection broke/i);
    const r = await c.callTool({ name: "system_status", arguments: {} }).catch((e: unknown) => e);
    expect(r, JSON.stringify(r)).toBeInstanceOf(McpError);
    expect((r as McpError).code).toBe(UpstreamUnavailable);
    expect((r as McpError).message).toMatch(/timed out/i);
    expect((r as McpError).message).not.toMatch(/outcome unknown|connection broke/i);
    s.sim.setFaults({ latencyMs: 0 });
  }, 60_000);
});

describe("relogin and connect's rate budget", () => {
  it("forced relogins with a fresh relay entry send nothing to connect", async () => {
    h = makeHome();
    s = await withSimulator({ relays: 1 });
    d = spawnDaemon(s.env(h.home));
    await d.waitReady();
    const before = s.sim.stats();
    for (let i = 0; i < 3; i++) {
      const st = (await controlCall(
        d.socketPath,
        "loxmcp/relogin",
        { force: true },
        { timeoutMs: 20_000 },
      )) as {
        state: string;
      };
      expect(st.state).toBe("ready");
    }
    const after = s.sim.stats();
    expect(after.logins - before.logins).toBe(3);
    expect(after.connectRequests).toBe(before.connectRequests);
  }, 60_000);
});
