/**
 * Upgrading: `loxmcp status` says when the running daemon is another version than the CLI (a
 * newer tarball installed while the old daemon runs) and points at `loxmcp restart`, which stops
 * the daemon, waits until it is gone, and starts it again (a real daemon and the simulator).
 */
import { mkdirSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { type DaemonStatus, versionHint } from "../src/commands/status.js";
import { VERSION } from "../src/version.js";
import { CliSandbox } from "./helpers.js";

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("status: a daemon of another version", () => {
  const ready: DaemonStatus = { pid: 7, state: "ready", version: VERSION, clients: [] };

  it("versionHint says nothing when the versions agree, the daemon is down or says no version", () => {
    expect(versionHint(ready)).toBeUndefined();
    expect(versionHint({ pid: 7, state: "ready", clients: [] })).toBeUndefined();
    expect(versionHint({ state: "down", pid: null, clients: [] })).toBeUndefined();
  });

  it("versionHint names both versions and `loxmcp restart`", () => {
    expect(versionHint({ ...ready, version: "0.0.9" }, "0.1.0")).toBe(
      "the running daemon is v0.0.9, this loxmcp is v0.1.0: run `loxmcp restart` to switch the daemon to v0.1.0",
    );
  });

  let sb: CliSandbox;
  let server: Server | undefined;
  beforeEach(() => {
    sb = new CliSandbox();
  });
  afterEach(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server = undefined;
    sb.cleanup();
  });

  it("`loxmcp status` against an older daemon prints the hint and still exits 0 when ready", async () => {
    const run = join(sb.loxmcpHome, "run");
    mkdirSync(run, { recursive: true, mode: 0o700 });
    // a stand-in daemon answering loxmcp/status as an older version would
    server = createServer((s) => {
      let buf = "";
      s.setEncoding("utf8").on("data", (d: string) => {
        buf += d;
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const m = JSON.parse(buf.slice(0, nl)) as { id?: unknown; method?: string };
          buf = buf.slice(nl + 1);
          if (m.method === "loxmcp/status") {
            const result = { pid: 4242, version: "0.0.9", state: "ready", clients: [] };
            s.write(`${JSON.stringify({ jsonrpc: "2.0", id: m.id, result })}\n`);
          }
        }
      });
    });
    const srv = server;
    await new Promise<void>((resolve) => srv.listen(join(run, "daemon.sock"), resolve));

    const r = await sb.run(["status"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("loxmcpd: ready  (pid 4242, v0.0.9)");
    expect(r.stdout).toContain(
      `hint: the running daemon is v0.0.9, this loxmcp is v${VERSION}: run \`loxmcp restart\``,
    );
    // --json stays the daemon's object as it is
    const j = await sb.run(["status", "--json"]);
    expect(JSON.parse(j.stdout)).toEqual({ pid: 4242, version: "0.0.9", state: "ready", clients: [] });
  });
});

describe("loxmcp restart", () => {
  let sb: CliSandbox;
  let s: SimHandle;
  const pids: number[] = [];

  beforeEach(async () => {
    s = await withSimulator();
    sb = new CliSandbox();
    sb.env = { ...sb.env, ...s.env(sb.loxmcpHome) };
  });

  afterEach(async () => {
    await sb.run(["stop"]).catch(() => undefined);
    for (const pid of pids.splice(0)) if (alive(pid)) process.kill(pid, "SIGKILL");
    await s.stop();
    sb.cleanup();
  });

  const statusPid = async (): Promise<number> => {
    const st = JSON.parse((await sb.run(["status", "--json"])).stdout) as { pid: number; state: string };
    expect(st.state).toBe("ready");
    pids.push(st.pid);
    return st.pid;
  };

  it("stops the running daemon, waits until it is gone, starts a new one and waits for it", async () => {
    const started = await sb.run(["start"]);
    expect(started.code, started.stderr).toBe(0);
    const first = await statusPid();

    const r = await sb.run(["restart"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toBe(`loxmcpd stopped (pid ${first}, v${VERSION})`);
    expect(lines[1]).toMatch(/^loxmcpd started: pid \d+, state ready, socket /);
    expect(r.stderr).not.toContain("loxmcp:");
    expect(alive(first)).toBe(false);
    const second = await statusPid();
    expect(second).not.toBe(first);
    expect(r.stdout).toContain(`pid ${second}`);
  });

  it("starts a daemon that was not running", async () => {
    const r = await sb.run(["restart"]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `loxmcpd was not running (socket ${join(sb.loxmcpHome, "run", "daemon.sock")}); starting it`,
    );
    expect(r.stdout).toMatch(/loxmcpd started: pid \d+, state ready/);
    await statusPid();
  });

  it("--timeout is checked like start's", async () => {
    const r = await sb.run(["restart", "--timeout", "soon"]);
    expect(r.code).toBe(2);
  });
});
