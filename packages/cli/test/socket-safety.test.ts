/**
 * Shim and CLI refuse a daemon socket another user could have planted: a socket directory
 * writable by group/others, a LOXMCP_HOME writable by others. A fake daemon (a plain `net`
 * server) listening there receives NOTHING — not even a connection — and no daemon is started;
 * the refusal is one line naming the path and the fix. A private directory keeps working, and
 * there every CLI connection opens with the CLI's `loxmcp/hello`.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { ErrorCodes } from "@loxmcp/common";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitFor } from "../../../test-support/wait.js";
import { VERSION } from "../src/version.js";
import { runCli, SHIM_BIN } from "./helpers.js";

/** A fake daemon: counts connections, keeps every line, answers loxmcp/status and initialize. */
class FakeDaemon {
  connections = 0;
  readonly lines: string[] = [];
  private readonly sockets: Socket[] = [];
  private readonly server: Server;

  constructor(readonly path: string) {
    this.server = createServer((s) => {
      this.connections++;
      this.sockets.push(s);
      let buf = "";
      s.setEncoding("utf8");
      s.on("error", () => {});
      s.on("data", (d: string) => {
        buf += d;
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          this.lines.push(line);
          const m = JSON.parse(line) as { id?: unknown; method?: string };
          const answer = (result: unknown) =>
            s.write(`${JSON.stringify({ jsonrpc: "2.0", id: m.id, result })}\n`);
          if (m.id === undefined) continue;
          if (m.method === "loxmcp/status") answer({ pid: 4242, state: "ready", clients: [] });
          if (m.method === "ping") answer({}); // the shim's readiness ping, as the daemon answers it
          if (m.method === "initialize") {
            answer({
              protocolVersion: "2025-06-18",
              capabilities: {},
              serverInfo: { name: "fake", version: "0" },
            });
          }
        }
      });
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(this.path, () => resolve());
    });
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe("a socket another user could have planted is refused by CLI and shim", () => {
  let root: string;
  let fake: FakeDaemon | undefined;
  let children: ChildProcess[] = [];
  /** CLI/shim environment without any daemon: LOXMCP_DAEMON_BIN would leave a mark if started. */
  let base: Record<string, string>;
  let startedMark: string;

  beforeEach(() => {
    root = mkdtempSync("/tmp/lxs-");
    startedMark = join(root, "STARTED");
    const bin = join(root, "daemon.js");
    writeFileSync(bin, `require("node:fs").writeFileSync(${JSON.stringify(startedMark)}, "")\n`);
    base = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: join(root, "h"),
      LOXMCP_DAEMON_BIN: bin,
      LOXMCP_NO_SERVICE: "1",
      LOXONE_CONNECT_URL: "http://127.0.0.1:9",
    };
  });

  afterEach(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    children = [];
    await fake?.close();
    fake = undefined;
    expect(existsSync(startedMark), "a daemon was started").toBe(false);
    rmSync(root, { recursive: true, force: true });
  });

  /** Spawns the shim, sends initialize, resolves with its answer and the shim's stderr. */
  async function shimInitialize(
    env: Record<string, string>,
  ): Promise<{ answer: Record<string, unknown>; stderr: string }> {
    const child = spawn(process.execPath, [SHIM_BIN, "--name", "t"], { env, stdio: "pipe" });
    children.push(child);
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      err += d;
    });
    child.stdin.write(
      `${JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } } })}\n`,
    );
    const line = await waitFor(() => out.split("\n").find((l) => l.includes('"id":1')), {
      what: `the shim's answer; stderr: ${err}`,
      timeoutMs: 15_000,
    });
    for (const l of out.split("\n").filter(Boolean)) expect(() => JSON.parse(l)).not.toThrow();
    return { answer: JSON.parse(line) as Record<string, unknown>, stderr: err };
  }

  it("a socket in a world-writable directory (LOXMCP_SOCKET): nothing is sent, one line says why", async () => {
    const dir = join(root, "shared");
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    const socket = join(dir, "daemon.sock");
    fake = new FakeDaemon(socket);
    await fake.listen();
    const env = { ...base, LOXMCP_HOME: join(root, "home"), LOXMCP_SOCKET: socket };
    const line = `refusing the daemon socket ${socket}: its directory ${dir} is writable by other users (mode 0777), so another user could put a fake daemon there; use a private directory (chmod 700 ${dir}) or unset LOXMCP_SOCKET`;

    const status = await runCli(["status"], env);
    expect(status.code).toBe(1);
    expect(status.stderr).toBe(`loxmcp: ${line}\n`);
    const approve = await runCli(["approve", "ABCDEF"], env);
    expect(approve.code).not.toBe(0);
    expect(approve.stderr).toContain(line);
    expect(approve.stdout).toBe("");

    const { answer, stderr } = await shimInitialize(env);
    const error = answer.error as { code: number; data?: Record<string, unknown> };
    expect(error.code).toBe(ErrorCodes.DaemonUnreachable);
    expect(error.data?.reason).toBe(line);
    expect(error.data?.refused).toBe("UNSAFE_SOCKET_DIR");
    expect(stderr).toContain(line);

    expect(fake.connections).toBe(0);
    expect(fake.lines).toEqual([]);
  });

  it("a group-writable socket directory is refused too; sticky /tmp-like 1777 as well", async () => {
    const dir = join(root, "grp");
    mkdirSync(dir);
    const socket = join(dir, "daemon.sock");
    fake = new FakeDaemon(socket);
    await fake.listen();
    const env = { ...base, LOXMCP_SOCKET: socket };
    for (const mode of [0o770, 0o1777]) {
      chmodSync(dir, mode);
      const r = await runCli(["status", "--json"], env);
      expect(r.code).toBe(1);
      // --json keeps its contract (one object on stdout), the refusal is its reason.
      expect((JSON.parse(r.stdout) as { reason: string }).reason).toContain(
        `its directory ${dir} is writable by other users (mode ${mode.toString(8).padStart(4, "0")})`,
      );
    }
    expect(fake.connections).toBe(0);
  });

  it("a LOXMCP_HOME writable by others: CLI and shim refuse it in one line and create nothing in it", async () => {
    const home = join(root, "home");
    mkdirSync(home);
    chmodSync(home, 0o777);
    const env = { ...base, LOXMCP_HOME: home };
    const line = `refusing LOXMCP_HOME ${home}: it is writable by other users (mode 0777), so another user could replace its config, state or socket; chmod 700 ${home} or use another LOXMCP_HOME`;

    const status = await runCli(["status"], env);
    expect(status.code).toBe(1);
    expect(status.stderr).toBe(`loxmcp: ${line}\n`);
    const approve = await runCli(["approve", "ABCDEF"], env);
    expect(approve.code).not.toBe(0);
    expect(approve.stderr).toContain(line);

    const { answer, stderr } = await shimInitialize(env);
    const error = answer.error as { data?: Record<string, unknown> };
    expect(error.data?.reason).toBe(line);
    expect(error.data?.refused).toBe("UNSAFE_HOME");
    expect(stderr).toContain(line);
    expect(existsSync(join(home, "state")), "the shim prepared a daemon start").toBe(false);
  });

  it("a private directory keeps working, and the CLI says hello first on every connection", async () => {
    const dir = join(root, "private");
    mkdirSync(dir, { mode: 0o700 });
    const socket = join(dir, "daemon.sock");
    fake = new FakeDaemon(socket);
    await fake.listen();
    const r = await runCli(["status", "--json"], { ...base, LOXMCP_SOCKET: socket });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ pid: 4242, state: "ready" });
    expect(fake.connections).toBe(1);
    const [hello, request] = fake.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(hello).toEqual({
      jsonrpc: "2.0",
      method: "loxmcp/hello",
      params: { kind: "cli", name: "loxmcp-cli", pid: expect.any(Number), version: VERSION },
    });
    expect(request).toMatchObject({ jsonrpc: "2.0", id: 1, method: "loxmcp/status" });

    // The shim too: a 0755 directory (not writable by others) is fine.
    chmodSync(dir, 0o755);
    const { answer } = await shimInitialize({
      ...base,
      LOXMCP_SOCKET: socket,
      LOXMCP_START_TIMEOUT_MS: "2000",
    });
    expect(answer.id).toBe(1);
    await waitFor(() => fake && fake.connections === 2, { what: "the shim's connection" });
    await waitFor(() => fake?.lines.some((l) => l.includes('"kind":"shim"')), { what: "the shim's hello" });
  });
});
