/**
 * The CLI against a REAL daemon process and the simulator: status exit codes (ready / down /
 * auth_failed), --json shape, logs from the daemon's own log, relogin, stop, start — and a
 * sentinel password never printed.
 */
import { existsSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { SocketClientTransport } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";
import { CliSandbox } from "./helpers.js";

const SENTINEL = "S3NTINEL-wrong-pw-1234";

let sb: CliSandbox;
let s: SimHandle;
let d: DaemonProcess | undefined;
let extraPids: number[] = [];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

beforeEach(async () => {
  s = await withSimulator();
  sb = new CliSandbox();
  sb.env = { ...sb.env, ...s.env(sb.loxmcpHome) };
  extraPids = [];
});

afterEach(async () => {
  await d?.stop().catch(() => d?.kill9());
  d = undefined;
  for (const pid of extraPids) {
    if (alive(pid)) process.kill(pid, "SIGKILL");
  }
  await s.stop();
  sb.cleanup();
});

function startDaemon(extra: Record<string, string> = {}): DaemonProcess {
  d = spawnDaemon({ ...s.env(sb.loxmcpHome), ...extra });
  return d;
}

describe("loxmcp status / logs / relogin / stop against a real daemon", () => {
  it("status: exit 0 when ready, with entry, clients and a --json object", async () => {
    const daemon = startDaemon();
    await daemon.waitReady();
    const client = new Client({ name: "sdk-test", version: "1.0.0" });
    await client.connect(new SocketClientTransport(daemon.socketPath, { name: "cli-test-client" }));
    try {
      await waitFor(async () => (await daemon.status()).clients.length > 0, { what: "client listed" });
      const human = await sb.run(["status"]);
      expect(human.code, human.stdout + human.stderr).toBe(0);
      expect(human.stdout).toContain("loxmcpd: ready");
      expect(human.stdout).toContain(`pid ${daemon.pid}`);
      expect(human.stdout).toMatch(/relay entry\s+http:\/\/127\.0\.0\.1:\d+\/mcp/);
      expect(human.stdout).toMatch(/token expires\s+in \d/);
      expect(human.stdout).toContain("cli-test-client");
      expect(human.stdout).not.toContain("hint:");

      const json = await sb.run(["status", "--json"]);
      expect(json.code).toBe(0);
      expect(json.stdout.trim().split("\n")).toHaveLength(1);
      const st = JSON.parse(json.stdout) as Record<string, unknown>;
      expect(st).toMatchObject({ pid: daemon.pid, state: "ready", socket: daemon.socketPath });
      expect(Array.isArray(st.clients)).toBe(true);
      expect((st.clients as Array<{ name: string }>).map((c) => c.name)).toContain("cli-test-client");
      for (const out of [human, json]) expect(out.stdout + out.stderr).not.toContain(s.sim.password);
    } finally {
      await client.close();
    }
  });

  it("status: exit 1 with a hint when the daemon is down; --json says state down", async () => {
    const human = await sb.run(["status"]);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain("loxmcpd: down");
    expect(human.stdout).toContain("hint: start it with `loxmcp start`");
    const json = await sb.run(["status", "--json"]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ state: "down", pid: null, clients: [] });
  });

  it("status/doctor/logs: exit 1 on a rejected login, say what to check, never print the password", async () => {
    const daemon = startDaemon({ LOXONE_PASSWORD: SENTINEL });
    const st = await daemon.waitStatus((x) => x.state === "auth_failed" || x.state === "degraded", 30_000);
    expect(st.state).toBe("auth_failed");
    const human = await sb.run(["status"], {}, { LOXONE_PASSWORD: SENTINEL });
    expect(human.code).toBe(1);
    expect(human.stdout).toContain("loxmcpd: auth_failed");
    expect(human.stdout).toContain("hint: check LOXONE_USER/LOXONE_PASSWORD");
    expect(human.stdout).toContain("loxmcp relogin");
    const json = await sb.run(["status", "--json"], {}, { LOXONE_PASSWORD: SENTINEL });
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout).state).toBe("auth_failed");
    const doctor = await sb.run(["doctor", "--json"], {}, { LOXONE_PASSWORD: SENTINEL });
    expect(doctor.code).toBe(1);
    expect(JSON.parse(doctor.stdout).checks.find((c: { id: string }) => c.id === "daemon")).toMatchObject({
      level: "problem",
    });
    const logs = await sb.run(["logs", "-n", "500"]);
    expect(logs.code).toBe(0);
    const rawLogs = await sb.run(["logs", "-n", "500", "--json"]);
    for (const out of [human, json, doctor, logs, rawLogs]) {
      expect(out.stdout + out.stderr).not.toContain(SENTINEL);
    }
  });

  it("status: exit 1 with the degraded hint when every relay is gone", async () => {
    const daemon = startDaemon({ LOXMCP_PING_INTERVAL: "1" });
    await daemon.waitReady();
    for (let i = 0; i < s.sim.relayUrls.length; i++) s.sim.killRelay(i);
    const st = await daemon.waitStatus((x) => x.state === "degraded", 30_000, "state degraded");
    const r = await sb.run(["status", "--json"]);
    expect(r.code).toBe(1);
    const json = JSON.parse(r.stdout) as { state: string };
    expect(json.state).not.toBe("ready");
    const human = await sb.run(["status"]);
    expect(human.code).toBe(1);
    // the daemon keeps retrying, so the state may move between degraded and resolving/connecting
    expect(human.stdout).toMatch(/loxmcpd: (degraded|resolving|connecting|authenticating)/);
    expect(human.stdout).toMatch(/hint: .*loxmcp (logs|status)/);
    expect(st.state).toBe("degraded");
  });

  it("doctor: a healthy setup passes, the daemon is ready and the clock matches the connect service", async () => {
    const daemon = startDaemon();
    await daemon.waitReady();
    const r = await sb.run(["doctor", "--json"]);
    const doc = JSON.parse(r.stdout) as { ok: boolean; checks: Array<{ id: string; level: string }> };
    const level = (id: string) => doc.checks.find((c) => c.id === id)?.level;
    expect(level("daemon")).toBe("ok");
    expect(level("socket")).toBe("ok");
    expect(level("file.db")).toBe("ok");
    expect(level("dir.state")).toBe("ok");
    expect(level("clock")).toBe("ok");
    expect(r.code, r.stdout).toBe(0);
    expect(doc.ok).toBe(true);
    expect(r.stdout).not.toContain(s.sim.password);
  });

  it("logs: pretty lines from the daemon's real log, -n and --level", async () => {
    const daemon = startDaemon();
    await daemon.waitReady();
    const r = await sb.run(["logs", "-n", "5"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThanOrEqual(5);
    const pretty = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (TRACE|DEBUG|INFO |WARN |ERROR|FATAL)/;
    for (const l of lines) expect(l).toMatch(pretty);
    const all = await sb.run(["logs", "-n", "1000"]);
    expect(all.stdout).toContain("loxmcpd started");
    const warn = await sb.run(["logs", "-n", "1000", "--level", "warn"]);
    expect(warn.code).toBe(0);
    for (const l of warn.stdout.split("\n").filter(Boolean)) expect(l).toMatch(/ (WARN |ERROR|FATAL) /);
    const json = await sb.run(["logs", "-n", "3", "--json"]);
    for (const l of json.stdout.trimEnd().split("\n")) expect(() => JSON.parse(l)).not.toThrow();
    expect(all.stdout + json.stdout).not.toContain(s.sim.password);
  });

  it("relogin: logs in again and prints the result", async () => {
    const daemon = startDaemon();
    await daemon.waitReady();
    const before = s.sim.stats().logins;
    const r = await sb.run(["relogin"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain("relogin: ready");
    expect(s.sim.stats().logins).toBe(before + 1);
    expect(r.stdout + r.stderr).not.toContain(s.sim.password);
  });

  it("stop: shuts the daemon down and waits for the socket to go; a second stop says it was not running", async () => {
    const daemon = startDaemon();
    await daemon.waitReady();
    const r = await sb.run(["stop"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`loxmcpd stopped (pid ${daemon.pid})`);
    expect(existsSync(daemon.socketPath)).toBe(false);
    expect((await daemon.waitExit()).code).toBe(0);
    const again = await sb.run(["stop"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain("was not running");
  });

  it("relogin/other daemon calls fail with the clear 'not running' message when down", async () => {
    const r = await sb.run(["relogin"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`daemon not running (socket ${sb.loxmcpHome}/run/daemon.sock)`);
    expect(r.stderr).toContain("loxmcp service start");
  });

  it("start: a configuration error ends the wait at once with the daemon's own message", async () => {
    const r = await sb.run(["start"], { timeoutMs: 40_000 }, { LOXONE_SERIAL: "" });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("loxmcp: loxmcpd cannot start: LOXONE_SERIAL is missing");
    const st = await sb.run(["status", "--json"]);
    expect(JSON.parse(st.stdout)).toMatchObject({ state: "down", startError: { exitCode: 78 } });
  });

  it("start: starts a detached daemon, waits for its socket, and is idempotent", async () => {
    const r = await sb.run(["start"], { timeoutMs: 40_000 });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/loxmcpd started: pid \d+/);
    const pid = Number(/pid (\d+)/.exec(r.stdout)?.[1]);
    extraPids.push(pid);
    const ready = await sb.run(["status", "--wait", "30", "--json"], { timeoutMs: 40_000 });
    expect(ready.code, ready.stdout).toBe(0);
    expect(JSON.parse(ready.stdout).pid).toBe(pid);
    const again = await sb.run(["start"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`already running: pid ${pid}`);
    const stop = await sb.run(["stop"]);
    expect(stop.code).toBe(0);
    await waitFor(() => !alive(pid), { what: "detached daemon exit" });
  });
});
