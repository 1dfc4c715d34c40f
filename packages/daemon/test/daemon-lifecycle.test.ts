/**
 * The real loxmcpd process against the real simulator: login, restart without a new login,
 * single instance, stale socket/lock, file modes, SIGTERM, wrong password, secrets never shown.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { controlCall, RawConnection, SocketClientTransport } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";

let cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c();
  cleanups = [];
});

async function setup(
  simOpts: Parameters<typeof withSimulator>[0] = {},
): Promise<{ h: TempHome; s: SimHandle }> {
  const h = makeHome();
  cleanups.push(() => h.cleanup());
  const s = await withSimulator(simOpts);
  cleanups.push(() => s.stop());
  return { h, s };
}

function start(env: Record<string, string>, args: string[] = []): DaemonProcess {
  const d = spawnDaemon(env, { args });
  cleanups.push(async () => {
    await d.stop().catch(() => d.kill9());
  });
  return d;
}

/** Tries to connect to the socket as another uid (needs root); returns "connected" or the error code. */
function connectAs(uid: number, socketPath: string): string {
  const script = `const s=require("node:net").connect(process.argv[1]);s.on("connect",()=>{console.log("connected");s.destroy()});s.on("error",e=>console.log(e.code))`;
  const r = spawnSync(process.execPath, ["-e", script, socketPath], {
    uid,
    gid: uid === 0 ? 0 : 65534,
    encoding: "utf8",
    timeout: 10_000,
  });
  return `${r.stdout}${r.stderr}`.trim();
}

async function connectClient(socketPath: string, name = "test-client"): Promise<Client> {
  const client = new Client({ name, version: "1.2.3" });
  await client.connect(new SocketClientTransport(socketPath, { name: null }));
  cleanups.push(() => client.close());
  return client;
}

describe("loxmcpd lifecycle", () => {
  it("logs in from nothing, serves tools/list to an SDK client, keeps private modes, stops cleanly on SIGTERM", async () => {
    const { h, s } = await setup();
    const d = start(s.env(h.home));
    const status = await d.waitReady();
    expect(status.pid).toBe(d.pid);
    expect(status.entry).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/.*mcp/);
    expect(s.sim.stats().logins).toBe(1);

    const client = await connectClient(d.socketPath, "lifecycle-client");
    expect(client.getServerVersion()?.name).toBe("loxone-miniserver-mcp");
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(["control_find", "control_command", "system_status"]));
    const res = await client.callTool({ name: "system_status", arguments: {} });
    expect(JSON.stringify(res.content)).toContain(s.sim.serial);

    const st = await d.status();
    expect(st.clients).toEqual([
      expect.objectContaining({
        name: "lifecycle-client",
        version: "1.2.3",
        pid: process.pid,
        ppid: process.ppid,
      }),
    ]);

    expect(statSync(d.paths.runtime).mode & 0o777).toBe(0o700);
    expect(statSync(d.socketPath).mode & 0o777).toBe(0o600);
    expect(statSync(d.paths.db).mode & 0o777).toBe(0o600);
    expect(statSync(d.paths.logFile).mode & 0o777).toBe(0o600);
    expect(statSync(d.paths.log).mode & 0o777).toBe(0o700);
    expect(statSync(d.paths.state).mode & 0o777).toBe(0o700);

    if (process.getuid?.() === 0) {
      // Node cannot read SO_PEERCRED: the modes are what keeps other users out. Prove it with
      // a real connect as uid "nobody", first through the 0700 dir, then at the 0600 socket.
      chmodSync(h.home, 0o755);
      expect(connectAs(65534, d.socketPath)).toMatch(/EACCES/);
      chmodSync(d.paths.runtime, 0o755);
      try {
        expect(connectAs(65534, d.socketPath)).toMatch(/EACCES/);
      } finally {
        chmodSync(d.paths.runtime, 0o700);
      }
      expect(connectAs(process.getuid(), d.socketPath)).toBe("connected");
    }

    const exit = await d.stop();
    expect(exit.code).toBe(0);
    expect(existsSync(d.socketPath)).toBe(false);
    expect(existsSync(join(d.paths.state, "daemon.lock"))).toBe(false);
  });

  it("on SIGTERM a request still in flight after the grace period gets exactly one error answer", async () => {
    const { h, s } = await setup();
    const d = start(s.env(h.home, { LOXMCP_SHUTDOWN_GRACE: "1" }));
    await d.waitReady();
    const r = await RawConnection.open(d.socketPath);
    cleanups.push(() => r.close());
    await r.initialize("slow", 0);
    const toolCalls = async () => Number(((await d.status()).counters as Record<string, number>).toolCalls);
    const before = await toolCalls();
    s.sim.setFaults({ latencyMs: 8_000 });
    await r.send({
      jsonrpc: "2.0",
      id: 1,
      method: "tools/call",
      params: { name: "system_status", arguments: {} },
    });
    await waitFor(async () => (await toolCalls()) > before, {
      what: "the call to be in flight in the daemon",
    });
    d.child.kill("SIGTERM");
    const answer = await r.waitMessage((m) => m.id === 1, 10_000);
    expect((answer.error as { code: number; message: string }).code).toBe(-32006);
    expect((answer.error as { message: string }).message).toMatch(/shutting down/);
    expect((answer.error as { message: string }).message).toMatch(/may or may not have run/);
    expect((await d.waitExit()).code).toBe(0);
    await r.closedPromise;
    expect(r.messages.filter((m) => m.id === 1)).toHaveLength(1);
    expect(existsSync(d.socketPath)).toBe(false);
  });

  it("reuses the stored tokens after a restart (no new login), also after SIGKILL left a stale socket and lock", async () => {
    const { h, s } = await setup();
    const d1 = start(s.env(h.home));
    await d1.waitReady();
    expect((await d1.stop()).code).toBe(0);

    const d2 = start(s.env(h.home));
    await d2.waitReady();
    const client = await connectClient(d2.socketPath);
    await client.callTool({ name: "system_status", arguments: {} });
    expect(s.sim.stats().logins).toBe(1);
    await client.close();
    await d2.kill9();
    expect(existsSync(d2.socketPath)).toBe(true); // stale socket file left behind
    expect(existsSync(join(d2.paths.state, "daemon.lock"))).toBe(true); // lock of a dead pid

    const d3 = start(s.env(h.home));
    const st = await d3.waitReady();
    expect(st.pid).toBe(d3.pid);
    expect(s.sim.stats().logins).toBe(1);
    expect(statSync(d3.socketPath).mode & 0o777).toBe(0o600);
  });

  it("a second daemon finds the live one and exits 0 with 'already running (pid N)'", async () => {
    const { h, s } = await setup();
    const d1 = start(s.env(h.home));
    await d1.waitReady();
    const d2 = start(s.env(h.home));
    const exit = await d2.waitExit(15_000);
    expect(exit.code).toBe(0);
    expect(d2.stderr()).toContain(`loxmcpd already running (pid ${d1.pid})`);
    // the first one is unharmed
    expect((await d1.status()).state).toBe("ready");
    expect(existsSync(d1.socketPath)).toBe(true);
  });

  it("a wrong password ends in auth_failed with a clear reason, and loxmcp/shutdown stops it", async () => {
    const { h, s } = await setup();
    const d = start(s.env(h.home, { LOXONE_PASSWORD: "definitely-wrong-pw" }));
    const st = await d.waitStatus((x) => x.state === "auth_failed", 30_000, "auth_failed");
    expect(st.reason).toMatch(/rejected|LOXONE_PASSWORD|password/i);
    expect(JSON.stringify(st)).not.toContain("definitely-wrong-pw");
    expect(s.sim.stats().logins).toBe(0);
    // An MCP client connecting now gets a clear initialize error, not a hang.
    const client = new Client({ name: "too-early", version: "1" });
    const err = await client
      .connect(new SocketClientTransport(d.socketPath))
      .catch((e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/login|rejected|LOXONE_PASSWORD/i);
    await client.close();
    const r = (await controlCall(d.socketPath, "loxmcp/shutdown")) as { ok: boolean };
    expect(r.ok).toBe(true);
    expect((await d.waitExit()).code).toBe(0);
    expect(existsSync(d.socketPath)).toBe(false);
    expect(readFileSync(d.paths.logFile, "utf8")).not.toContain("definitely-wrong-pw");
  });

  it("never shows the password or the issued tokens in the log, stderr or status", async () => {
    const sentinel = "SENTINEL-pw-7c1f9e2a";
    const { h, s } = await setup({ password: sentinel });
    const d = start(s.env(h.home, { LOXMCP_DEBUG: "1", LOXMCP_LOG_LEVEL: "trace" }));
    await d.waitReady();
    const client = await connectClient(d.socketPath);
    await client.callTool({ name: "system_status", arguments: {} });
    // Force a refresh and a full re-login so that more secrets pass through the daemon.
    s.sim.expireAccessTokens();
    await client.callTool({ name: "system_status", arguments: {} });
    const relogin = await controlCall(d.socketPath, "loxmcp/relogin");
    await d.waitReady();
    const status = JSON.stringify(await d.status());
    await client.close();

    // Tokens as the daemon stored them (read before stop: the daemon keeps them in SQLite).
    const db = new Database(d.paths.db, { readonly: true, fileMustExist: true });
    const secrets = new Set<string>([sentinel]);
    try {
      const tables = db.prepare("SELECT name FROM sqlite_master WHERE type='table'").all() as Array<{
        name: string;
      }>;
      for (const { name } of tables) {
        for (const row of db.prepare(`SELECT * FROM "${name}"`).all() as Array<Record<string, unknown>>) {
          for (const v of Object.values(row)) {
            if (typeof v !== "string" || !v.startsWith("{")) continue;
            const o = JSON.parse(v) as Record<string, unknown>;
            for (const k of ["access_token", "refresh_token", "client_secret"]) {
              if (typeof o[k] === "string") secrets.add(o[k] as string);
            }
          }
        }
      }
    } finally {
      db.close();
    }
    expect(secrets.size).toBeGreaterThan(2); // the sentinel + at least an access and a refresh token
    expect(await d.stop()).toMatchObject({ code: 0 });

    const log = readFileSync(d.paths.logFile, "utf8");
    expect(log.length).toBeGreaterThan(0);
    expect(d.stderr().length).toBeGreaterThan(0); // LOXMCP_DEBUG=1: human lines on stderr
    for (const secret of secrets) {
      expect(log).not.toContain(secret);
      expect(d.stderr()).not.toContain(secret);
      expect(status).not.toContain(secret);
      expect(JSON.stringify(relogin)).not.toContain(secret);
    }
  });

  it("reads the password from the .env in the config dir; --insecure-tls on loopback is logged loudly", async () => {
    const { h, s } = await setup();
    const env = s.env(h.home);
    const { LOXONE_PASSWORD, ...rest } = env;
    const configDir = join(h.home, "config");
    mkdirSync(configDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(configDir, ".env"), `# from .env\nLOXONE_PASSWORD="${LOXONE_PASSWORD}"\n`, {
      mode: 0o600,
    });
    const d = start(rest, ["--insecure-tls"]);
    await d.waitReady();
    expect(s.sim.stats().logins).toBe(1);
    const warn = readFileSync(d.paths.logFile, "utf8")
      .split("\n")
      .filter((l) => l.includes("--insecure-tls"))
      .map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(warn).toEqual([
      expect.objectContaining({ level: 40, msg: expect.stringMatching(/verification is OFF/) }),
    ]);
  });
});
