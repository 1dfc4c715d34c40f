/**
 * Sleep and wake, through the REAL daemon process: the daemon is frozen (SIGSTOP) past the
 * simulator's access-token lifetime (5 s), MCP session lifetime (8 s) and HTTP keep-alive (5 s),
 * then continued (SIGCONT) and called at once — a laptop lid closed and opened again. While it was
 * frozen the relay closed every pooled keep-alive connection and forgot the session, and the token
 * expired. Proves: every first call after a wake succeeds (reads and writes, each write run exactly
 * once), the login is refreshed and never redone (the simulator counts 1 login), and no stale socket
 * leads to a request to connect. Then: the relay is unreachable for a few seconds right after a
 * wake, and the call waiting meanwhile succeeds once it is back.
 */
import { readFileSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterEach, describe, expect, it } from "vitest";
import { writeChaosConfig } from "../../../test-support/chaos.js";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { SocketClientTransport } from "../../../test-support/socket-client.js";
import { withDeadline } from "../../../test-support/wait.js";

let h: TempHome | undefined;
let s: SimHandle | undefined;
let d: DaemonProcess | undefined;
const clients: Client[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => {});
  if (d && !d.exitInfo()) d.child.kill("SIGCONT");
  await d?.stop().catch(() => d?.kill9());
  await s?.stop();
  h?.cleanup();
  d = undefined;
  s = undefined;
  h = undefined;
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

type ToolResult = { content?: Array<{ text?: string }>; isError?: boolean };

async function start(
  simOptions: Parameters<typeof withSimulator>[0],
  env: Record<string, string> = {},
): Promise<Client> {
  h = makeHome();
  s = await withSimulator({ accessTtl: 5, sessionTtl: 8, connectRateLimit: 1_000, ...simOptions });
  writeChaosConfig(h.home);
  d = spawnDaemon(s.env(h.home, { LOXMCP_LOG_LEVEL: "debug", ...env }));
  await d.waitReady(30_000);
  await d.waitStatus(
    (x) => Boolean((x.policy as { structure?: unknown } | undefined)?.structure),
    20_000,
    "the structure snapshot",
  );
  const c = new Client({ name: "sleepy", version: "1" });
  clients.push(c);
  await c.connect(new SocketClientTransport(d.socketPath));
  return c;
}

function text(r: ToolResult): string {
  return (r.content ?? []).map((x) => x.text ?? "").join("");
}

/** Freezes the daemon for `ms`; `during` runs while it is frozen (e.g. sends the call). */
async function freeze(ms: number, during?: () => void): Promise<void> {
  d!.child.kill("SIGSTOP");
  during?.();
  await sleep(ms);
  d!.child.kill("SIGCONT");
}

describe("sleep and wake (SIGSTOP/SIGCONT past token, session and keep-alive lifetimes)", () => {
  it("8 wakes: every first call succeeds, refreshes only (1 login), no connect request for a stale socket", async () => {
    // Pings every 2 s: after each wake the overdue ping timer competes with the wake check.
    const c = await start({ relays: 2 }, { LOXMCP_PING_INTERVAL: "2" });
    const sim = s!.sim;
    const lights = sim
      .house()
      .controls.filter((x) => x.type === "LightControllerV2")
      .map((x) => x.uuid);
    const before = sim.stats();
    expect(before.logins).toBe(1);
    const outcomes: string[] = [];
    const writes: Array<{ uuid: string; command: string }> = [];
    for (let i = 0; i < 8; i++) {
      // A call just before the lid closes leaves a fresh keep-alive connection in the pool, which
      // the relay closes (5 s) while the daemon sleeps.
      await c.callTool({ name: "system_status", arguments: {} }, undefined, { timeout: 60_000 });
      const write = i % 2 === 1;
      const args = write ? { uuid: lights[i % lights.length] as string, command: `changeTo/${10 + i}` } : {};
      if (write) writes.push(args as { uuid: string; command: string });
      const call = () =>
        c.callTool({ name: write ? "control_command" : "system_status", arguments: args }, undefined, {
          timeout: 60_000,
        }) as Promise<ToolResult>;
      let pending: Promise<ToolResult> | undefined;
      // Half of the wakes find the call already waiting on the socket (it is read before any timer
      // runs), the other half get it right after SIGCONT.
      const early = () => {
        pending = call();
      };
      await freeze(10_000, i % 4 < 2 ? early : undefined);
      pending ??= call();
      const t0 = Date.now();
      const res = await withDeadline(
        pending.catch((e: unknown) => ({
          isError: true,
          content: [{ text: `rpc error: ${(e as Error).message}` }],
        })),
        60_000,
        `the first call after wake ${i + 1}`,
      );
      outcomes.push(
        `${i + 1}:${write ? "write" : "read"}:${res.isError ? `ERROR ${text(res)}` : "ok"} ${Date.now() - t0}ms`,
      );
    }
    const after = sim.stats();
    const st = await d!.status();
    const log = readFileSync(d!.paths.logFile, "utf8")
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { msg?: string; kind?: string });
    const woke = log.filter((l) => /^woke up/.test(l.msg ?? ""));
    const resent = log.filter((l) => /sending (the request|it) again on a new connection/.test(l.msg ?? ""));
    console.info(
      `wakes: ${outcomes.join(" | ")}; sim ${JSON.stringify({ ...after, executions: undefined })}; daemon ${JSON.stringify(st.counters)}; wakes seen ${woke.length}; requests resent after a broken connection ${resent.length}`,
    );
    // Every freeze is noticed as what it is (late timers, "frozen"). The wall clock of a VM may also
    // be stepped by its host meanwhile (seen on CI: one extra "suspended" wake, every call fine);
    // that is a real wall-clock jump and is allowed, as long as each freeze was seen as a freeze.
    const frozen = woke.filter((l) => l.kind === "frozen");
    expect(frozen.length, "every freeze was noticed as a frozen-process wake").toBeGreaterThanOrEqual(8);
    expect(woke.filter((l) => l.kind !== "frozen" && l.kind !== "suspended")).toEqual([]);
    expect(
      outcomes.filter((o) => /ERROR/.test(o)),
      d!.stderr().slice(-4000),
    ).toEqual([]);
    expect(after.logins, "refreshes only: no new login").toBe(1);
    expect(after.refreshes - before.refreshes).toBeGreaterThanOrEqual(8);
    expect(after.connectRequests, "no request to connect for a stale socket").toBe(before.connectRequests);
    for (const w of writes) {
      const runs = after.executions.filter((e) => {
        const a = e.arguments as { uuid?: string; command?: string };
        return e.tool === "control_command" && a.uuid === w.uuid && a.command === w.command;
      });
      expect(
        runs.reduce((n, e) => n + e.count, 0),
        `write ${w.command} ran exactly once`,
      ).toBe(1);
    }
  }, 240_000);

  it("the relay is unreachable for a few seconds right after a wake: the waiting call succeeds once it is back", async () => {
    // One relay, which also serves the authorization server: while it is down neither the token
    // nor the session can be checked.
    const c = await start({ relays: 1 });
    const sim = s!.sim;
    await c.callTool({ name: "system_status", arguments: {} }, undefined, { timeout: 60_000 });
    let pending: Promise<ToolResult> | undefined;
    await freeze(10_000, () => {
      sim.killRelay(0);
      pending = c.callTool({ name: "system_status", arguments: {} }, undefined, {
        timeout: 60_000,
      }) as Promise<ToolResult>;
    });
    const t0 = Date.now();
    const revived = sleep(3_000).then(() => sim.reviveRelay(0));
    const res = await withDeadline(pending!, 60_000, "the call made during the outage after the wake");
    const waitedMs = Date.now() - t0;
    await revived;
    expect(res.isError, text(res)).toBeFalsy();
    expect(text(res)).toContain(sim.serial);
    // Answered once the relay was back, not failed at once and not at the deadline.
    expect(waitedMs).toBeGreaterThanOrEqual(2_900);
    expect(waitedMs).toBeLessThan(20_000);
    expect(sim.stats().logins, "refreshed, not logged in again").toBe(1);
    expect((await d!.status()).state).toBe("ready");
    console.info(`outage after wake: the waiting call was answered after ${waitedMs} ms`);
  }, 120_000);
});
