/**
 * The shim as a process over stdio, against a real Unix socket that speaks the daemon framing:
 * hello first, verbatim forwarding, garbage/oversized input, stdout hygiene, exit behaviour,
 * connection loss with a request in flight, replay of initialize, daemon→client request routing.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ErrorCodes, MAX_FRAME_BYTES, resolvePaths } from "@loxmcp/common";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { waitFor } from "../../../test-support/wait.js";
import { ABORTED_MESSAGE, UNREACHABLE_MESSAGE } from "../src/bridge.js";
import { VERSION } from "../src/version.js";
import {
  FrameListener,
  isJsonRpcLine,
  type Msg,
  REPO_ROOT,
  SHIM_BIN,
  type ShimProcess,
  spawnShim,
} from "./helpers.js";

const INIT = {
  jsonrpc: "2.0",
  id: 0,
  method: "initialize",
  params: {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "test-client", version: "1" },
  },
};

describe("flags", () => {
  it("--version prints the package version", () => {
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "packages/shim/package.json"), "utf8")) as {
      version: string;
    };
    expect(VERSION).toBe(pkg.version);
    const r = spawnSync(process.execPath, [SHIM_BIN, "--version"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${pkg.version}\n`);
  });

  it("--help prints usage and exits 0; an unknown flag exits 2 with usage on stderr", () => {
    const help = spawnSync(process.execPath, [SHIM_BIN, "--help"], { encoding: "utf8" });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain("Usage: loxmcp-shim");
    const bad = spawnSync(process.execPath, [SHIM_BIN, "--bogus"], { encoding: "utf8" });
    expect(bad.status).toBe(2);
    expect(bad.stdout).toBe("");
    expect(bad.stderr).toContain('unknown argument "--bogus"');
  });
});

describe("bridge over a real socket", () => {
  let home: TempHome;
  let listener: FrameListener | undefined;
  let shims: ShimProcess[] = [];
  let socketPath: string;
  let env: Record<string, string>;

  beforeEach(() => {
    home = makeHome();
    socketPath = resolvePaths({ LOXMCP_HOME: home.home }).socket;
    // A daemon bin that must never be needed while the listener is up (would fail loudly).
    const never = join(home.home, "no-daemon.js");
    writeFileSync(never, "process.exit(3)\n");
    env = { LOXMCP_HOME: home.home, LOXMCP_DAEMON_BIN: never };
  });

  afterEach(async () => {
    for (const s of shims) await s.kill();
    shims = [];
    await listener?.close();
    listener = undefined;
    home.cleanup();
  });

  async function listen(): Promise<FrameListener> {
    const { ensurePrivateDir } = await import("@loxmcp/common");
    ensurePrivateDir(resolvePaths({ LOXMCP_HOME: home.home }).runtime);
    listener = await FrameListener.listen(socketPath);
    return listener;
  }

  function shim(args: string[] = [], extra: Record<string, string> = {}): ShimProcess {
    const s = spawnShim({ ...env, ...extra }, args);
    shims.push(s);
    return s;
  }

  /** Answers initialize and tools/list like a daemon would (including replayed initializes). */
  function answerBasics(l: FrameListener) {
    l.onFrame = (peer, msg) => {
      if (msg.method === "initialize") {
        peer.send({
          jsonrpc: "2.0",
          id: msg.id,
          result: {
            protocolVersion: "2025-06-18",
            capabilities: { tools: { listChanged: true } },
            serverInfo: { name: "fake", version: "0" },
          },
        });
      } else if (msg.method === "tools/list") {
        peer.send({ jsonrpc: "2.0", id: msg.id, result: { tools: [] } });
      }
    };
  }

  it("sends loxmcp/hello first, then forwards client lines verbatim", async () => {
    const l = await listen();
    answerBasics(l);
    const s = shim(["--name", "my-client"]);
    await waitFor(() => l.peers[0]?.frames[0], { what: "hello frame" });
    const hello = l.peers[0]!.frames[0]!;
    expect(hello).toEqual({
      jsonrpc: "2.0",
      method: "loxmcp/hello",
      params: { kind: "shim", name: "my-client", pid: s.child.pid, ppid: process.pid, version: VERSION },
    });
    // Odd but valid formatting must arrive byte-for-byte.
    const raw =
      '{ "jsonrpc":"2.0", "id":"a-1", "method":"initialize", "params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"x","version":"1"}} }';
    s.sendRaw(`${raw}\n`);
    await s.waitMessage((m) => m.id === "a-1", "initialize response");
    // hello, the shim's readiness ping (answered by the daemon), then the client's line.
    expect(l.peers[0]!.frames[1]).toEqual({ jsonrpc: "2.0", id: "loxmcp-shim-ready-1", method: "ping" });
    expect(l.peers[0]!.rawLines[2]).toBe(raw);
    expect(s.stderr()).toBe(""); // quiet by default
  });

  it("--socket overrides the socket path", async () => {
    const custom = join(home.home, "custom.sock");
    listener = await FrameListener.listen(custom);
    answerBasics(listener);
    const s = shim(["--socket", custom]);
    s.send(INIT);
    await s.waitMessage((m) => m.id === 0 && "result" in m, "initialize via the custom socket");
    expect(listener.allFrames().map((f) => f.method)).toEqual(["loxmcp/hello", "ping", "initialize"]);
    expect((listener.allFrames()[0]!.params as { name: unknown }).name).toBeNull(); // no --name
  });

  it("answers garbage and oversized lines with errors and keeps running; stdout has only JSON-RPC", async () => {
    const l = await listen();
    answerBasics(l);
    const s = shim();
    s.sendRaw("this is not json\n");
    await s.waitMessage((m) => (m.error as { code?: number })?.code === ErrorCodes.ParseError, "parse error");
    s.sendRaw(`{"jsonrpc":"2.0","id":5,"method":"x","params":"${"a".repeat(MAX_FRAME_BYTES + 10)}"}\n`);
    await s.waitMessage(
      (m) => (m.error as { code?: number })?.code === ErrorCodes.InvalidRequest,
      "oversize error",
    );
    s.sendRaw("[1,2,3]\n");
    s.sendRaw('{"jsonrpc":"1.0","id":9,"method":"x"}\n');
    await s.waitMessage((m) => m.id === 9, "error for a bad jsonrpc version");
    s.send(INIT);
    s.send({ jsonrpc: "2.0", id: 1, method: "tools/list" });
    await s.waitMessage((m) => m.id === 1 && "result" in m, "tools/list after garbage");

    const errors = s.messages.filter((m) => "error" in m);
    expect(errors.map((m) => [m.id, (m.error as { code: number }).code])).toEqual([
      [null, ErrorCodes.ParseError],
      [null, ErrorCodes.InvalidRequest],
      [null, ErrorCodes.InvalidRequest],
      [9, ErrorCodes.InvalidRequest],
    ]);
    expect((errors[1]!.error as { message: string }).message).toContain("larger than");
    for (const m of s.messages) expect(isJsonRpcLine(m)).toBe(true);
    // Nothing invalid reached the daemon: hello, readiness ping, initialize, tools/list.
    expect(l.allFrames().map((f) => f.method)).toEqual(["loxmcp/hello", "ping", "initialize", "tools/list"]);
    expect(s.child.exitCode).toBeNull();
  });

  it("exits 0 when stdin closes, and on SIGTERM", async () => {
    const l = await listen();
    answerBasics(l);
    const a = shim();
    a.send(INIT);
    await a.waitMessage((m) => m.id === 0, "initialize response");
    a.child.stdin?.end();
    expect(await a.exited).toEqual({ code: 0, signal: null });
    await waitFor(() => l.peers[0]?.socket.destroyed || l.peers[0]?.socket.readableEnded, {
      what: "the shim closed its socket",
    });

    const b = shim();
    await waitFor(() => l.peers.length === 2, { what: "second shim connected" });
    b.child.kill("SIGTERM");
    expect(await b.exited).toEqual({ code: 0, signal: null });
  });

  it("on connection loss fails the in-flight request, never resends it, reconnects and replays initialize", async () => {
    const l = await listen();
    answerBasics(l);
    const s = shim();
    s.send(INIT);
    await s.waitMessage((m) => m.id === 0, "initialize response");
    s.send({ jsonrpc: "2.0", method: "notifications/initialized" });
    await waitFor(() => l.peers[0]!.frames.length === 4, { what: "initialized forwarded" });

    // The "daemon" dies while a tools/call is in flight.
    s.send({
      jsonrpc: "2.0",
      id: 7,
      method: "tools/call",
      params: { name: "control_command", arguments: {} },
    });
    await waitFor(() => l.peers[0]!.frames.some((f) => f.id === 7), { what: "tools/call at the daemon" });
    l.peers[0]!.socket.destroy();

    const aborted = await s.waitMessage((m) => m.id === 7, "in-flight error");
    expect(aborted.error).toEqual({ code: ErrorCodes.RequestAborted, message: ABORTED_MESSAGE });

    // It reconnects by itself (the socket is still listening): hello, readiness ping, replayed
    // initialize, initialized.
    await s.waitMessage((m) => m.method === "notifications/tools/list_changed", "tools/list_changed");
    const second = l.peers[1]!;
    expect(second.frames.map((f) => f.method)).toEqual([
      "loxmcp/hello",
      "ping",
      "initialize",
      "notifications/initialized",
    ]);
    expect(second.frames[2]!.id).toEqual(expect.stringMatching(/^loxmcp-shim-replay-/));
    expect(second.frames[2]!.params).toEqual(INIT.params);
    // The replayed initialize's answer is swallowed: the client saw exactly one initialize response.
    expect(s.messages.filter((m) => m.id === 0 || String(m.id).startsWith("loxmcp-shim"))).toHaveLength(1);

    s.send({ jsonrpc: "2.0", id: 8, method: "tools/list" });
    await s.waitMessage((m) => m.id === 8 && "result" in m, "tools/list after reconnect");
    // The tools/call went to the daemon exactly once.
    expect(l.allFrames().filter((f) => f.method === "tools/call")).toHaveLength(1);
    expect(s.child.exitCode).toBeNull();
  });

  it("sends nothing on a connection the daemon never read (a dying daemon's listener still accepts): the call waits and goes to the next daemon once", async () => {
    const l = await listen();
    answerBasics(l);
    const basics = l.onFrame;
    l.onFrame = (peer, msg) => {
      basics?.(peer, msg);
      if (msg.method === "tools/call") peer.send({ jsonrpc: "2.0", id: msg.id, result: { content: [] } });
    };
    const s = shim();
    s.send(INIT);
    await s.waitMessage((m) => m.id === 0, "initialize response");
    s.send({ jsonrpc: "2.0", method: "notifications/initialized" });
    await waitFor(() => l.peers[0]!.frames.length === 4, { what: "initialized forwarded" });

    // The next connection is accepted but never read (kill -9 closes a daemon's accepted
    // connections before its listening socket): the shim must not hand it the client's call.
    l.answerReadyPing = false;
    l.peers[0]!.socket.destroy();
    await waitFor(() => l.peers[1]?.frames.some((f) => f.method === "ping"), { what: "the unanswered ping" });
    s.send({
      jsonrpc: "2.0",
      id: 9,
      method: "tools/call",
      params: { name: "control_command", arguments: {} },
    });
    await new Promise((r) => setTimeout(r, 200));
    expect(l.peers[1]!.frames.map((f) => f.method)).toEqual(["loxmcp/hello", "ping"]);
    expect(s.messages.some((m) => m.id === 9)).toBe(false);

    // That connection dies unread; the next daemon answers: the call goes there, once, and works.
    l.answerReadyPing = true;
    l.peers[1]!.socket.destroy();
    const answer = await s.waitMessage((m) => m.id === 9, "the tools/call answer");
    expect(answer.error).toBeUndefined();
    expect(l.allFrames().filter((f) => f.method === "tools/call")).toHaveLength(1);
    expect(l.peers[2]!.frames.map((f) => f.method)).toEqual([
      "loxmcp/hello",
      "ping",
      "initialize",
      "notifications/initialized",
      "tools/call",
    ]);
  });

  it("routes daemon→client requests with their own ids and back", async () => {
    const l = await listen();
    answerBasics(l);
    const s = shim();
    s.send(INIT);
    await s.waitMessage((m) => m.id === 0, "initialize response");
    const peer = l.peers[0]!;
    peer.send({ jsonrpc: "2.0", id: 0, method: "elicitation/create", params: { message: "sure?" } });
    const req = await s.waitMessage((m) => m.method === "elicitation/create", "elicitation at the client");
    s.send({ jsonrpc: "2.0", id: req.id, result: { action: "accept", content: {} } });
    const answer = await waitFor(() => peer.frames.find((f) => "result" in f), {
      what: "answer at the daemon",
    });
    expect(answer).toEqual({ jsonrpc: "2.0", id: 0, result: { action: "accept", content: {} } });

    // A second one is cancelled towards the client when the daemon connection drops.
    peer.send({ jsonrpc: "2.0", id: 1, method: "elicitation/create", params: { message: "again?" } });
    const req2 = await s.waitMessage(
      (m) => m.method === "elicitation/create" && m.id !== req.id,
      "second elicitation at the client",
    );
    peer.socket.destroy();
    const cancelled = await s.waitMessage(
      (m) => m.method === "notifications/cancelled",
      "cancel to the client",
    );
    expect((cancelled.params as { requestId: unknown }).requestId).toBe(req2.id);
  });

  it("answers DaemonUnreachable when no daemon comes up, with the reason", async () => {
    const bad = join(home.home, "bad-daemon.js");
    writeFileSync(bad, "process.exit(78)\n");
    const s = shim([], { LOXMCP_DAEMON_BIN: bad });
    s.send(INIT);
    const r = await s.waitMessage((m) => m.id === 0, "unreachable error");
    const error = r.error as { code: number; message: string; data: { reason: string; socket: string } };
    expect(error.code).toBe(ErrorCodes.DaemonUnreachable);
    expect(error.message).toBe(UNREACHABLE_MESSAGE);
    expect(error.data.reason).toContain("exited with code 78");
    expect(error.data.socket).toBe(socketPath);
    expect(s.child.exitCode).toBeNull();
    // It keeps running and answers again (a new start attempt, on demand).
    s.send({ jsonrpc: "2.0", id: 1, method: "tools/list" });
    await s.waitMessage((m) => m.id === 1, "second unreachable error");
  });

  it("queues requests while the daemon is away and fails them after the reconnect deadline", async () => {
    // A "daemon" that exits 0 at once (as a second instance does): the shim keeps waiting.
    const quiet = join(home.home, "quiet-daemon.js");
    writeFileSync(quiet, "process.exit(0)\n");
    const s = shim([], {
      LOXMCP_DAEMON_BIN: quiet,
      LOXMCP_RECONNECT_TIMEOUT_MS: "600",
      LOXMCP_START_TIMEOUT_MS: "5000",
    });
    const t0 = Date.now();
    s.send(INIT);
    const r = await s.waitMessage((m) => m.id === 0, "deadline error");
    expect((r.error as { code: number }).code).toBe(ErrorCodes.DaemonUnreachable);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(550);

    // The daemon shows up later: the next request goes through.
    const l = await listen();
    answerBasics(l);
    s.send({ jsonrpc: "2.0", id: 2, method: "tools/list" });
    await s.waitMessage((m) => m.id === 2 && "result" in m, "tools/list once the daemon is up");
  });

  it("several shims racing with no daemon spawn it exactly once (start lock)", async () => {
    // A stand-in daemon that records each start, then listens on the socket.
    const spawns = join(home.home, "spawns.log");
    const fake = join(home.home, "fake-daemon.mjs");
    writeFileSync(
      fake,
      `import { appendFileSync, mkdirSync } from "node:fs";
import { createServer } from "node:net";
appendFileSync(${JSON.stringify(spawns)}, process.pid + "\\n");
mkdirSync(${JSON.stringify(join(home.home, "run"))}, { recursive: true, mode: 0o700 });
setTimeout(() => {
  createServer((s) => { s.on("error", () => {}); s.on("data", () => {}); }).listen(${JSON.stringify(socketPath)});
}, 300);
`,
    );
    const racers = Array.from({ length: 5 }, () => shim([], { LOXMCP_DAEMON_BIN: fake, LOXMCP_DEBUG: "1" }));
    try {
      await waitFor(() => racers.every((r) => r.stderr().includes("connected to")), {
        what: "every racer connected",
        timeoutMs: 15_000,
      });
      for (const r of racers) r.child.stdin?.end();
      for (const r of racers) expect((await r.exited).code).toBe(0);
      const pids = readFileSync(spawns, "utf8").trim().split("\n");
      expect(pids).toHaveLength(1);
    } finally {
      for (const pid of existsSync(spawns) ? readFileSync(spawns, "utf8").trim().split("\n") : []) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {}
      }
    }
  });

  it("answers ping locally while no daemon is reachable", async () => {
    const quiet = join(home.home, "quiet-daemon.js");
    writeFileSync(quiet, "process.exit(0)\n");
    const s = shim([], { LOXMCP_DAEMON_BIN: quiet, LOXMCP_START_TIMEOUT_MS: "300" });
    await waitFor(() => existsSync(resolvePaths({ LOXMCP_HOME: home.home }).logFile), {
      what: "start attempt",
    });
    s.send({ jsonrpc: "2.0", id: "p", method: "ping" });
    const pong = await s.waitMessage((m: Msg) => m.id === "p", "pong");
    expect(pong.result).toEqual({});
  });
});
