/**
 * "The shim carries only MCP": whoever writes to the shim's stdin (an MCP client, i.e. an AI)
 * reaches MCP methods only. Real shim process, real daemon, simulator:
 * - `loxmcp/*` requests are answered -32601 by the shim and notifications dropped; the shim's own
 *   hello (from its argv) stays the connection's only one;
 * - a line that is not UTF-8 is refused instead of being re-encoded 3× larger, and a client's
 *   answer that grows past 4 MiB when re-encoded is not forwarded: the daemon never drops the
 *   connection as oversized and the shim never reconnects.
 * Plus a bare socket listener to see exactly which frames leave the shim.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ErrorCodes, ensurePrivateDir, MAX_FRAME_BYTES, resolvePaths } from "@loxmcp/common";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { waitFor } from "../../../test-support/wait.js";
import { FrameListener, isJsonRpcLine, type Msg, type ShimProcess, spawnShim } from "./helpers.js";

const initialize = (id: number, capabilities: Record<string, unknown> = {}) => ({
  jsonrpc: "2.0",
  id,
  method: "initialize",
  params: {
    protocolVersion: "2025-06-18",
    capabilities,
    clientInfo: { name: "client-chosen-name", version: "1" },
  },
});

const errorOf = (m: Msg) => m.error as { code: number; message: string; data?: Record<string, unknown> };

describe("the shim forwards only MCP from its client", () => {
  let home: TempHome;
  let shims: ShimProcess[] = [];
  let listener: FrameListener | undefined;
  let sim: SimHandle | undefined;
  let daemon: DaemonProcess | undefined;
  /** A daemon bin that must never run: the tests bring their own daemon (or listener). */
  let env: Record<string, string>;

  beforeEach(() => {
    home = makeHome();
    const never = join(home.home, "no-daemon.js");
    writeFileSync(
      never,
      `require("node:fs").writeFileSync(${JSON.stringify(join(home.home, "STARTED"))}, "")\n`,
    );
    env = { LOXMCP_HOME: home.home, LOXMCP_DAEMON_BIN: never };
  });

  afterEach(async () => {
    for (const s of shims) await s.kill();
    shims = [];
    await listener?.close();
    listener = undefined;
    await daemon?.stop();
    daemon = undefined;
    await sim?.stop();
    sim = undefined;
    expect(existsSync(join(home.home, "STARTED")), "the shim started a daemon").toBe(false);
    home.cleanup();
  });

  function shim(args: string[]): ShimProcess {
    const s = spawnShim(env, args);
    shims.push(s);
    return s;
  }

  async function realDaemon(extra: Record<string, string> = {}): Promise<DaemonProcess> {
    sim = await withSimulator();
    daemon = spawnDaemon(sim.env(home.home, extra));
    await daemon.waitReady();
    return daemon;
  }

  async function counters(d: DaemonProcess): Promise<Record<string, number>> {
    return (await d.status()).counters as Record<string, number>;
  }

  /** The shim's line in the daemon's client list (found by the shim's pid from its hello). */
  async function clientEntry(d: DaemonProcess, s: ShimProcess): Promise<Record<string, unknown>> {
    const st = await d.status();
    const entry = st.clients.find((c) => c.pid === s.child.pid);
    if (!entry) throw new Error(`shim ${s.child.pid} not in status clients: ${JSON.stringify(st.clients)}`);
    return entry;
  }

  it("refuses loxmcp/* requests itself, drops loxmcp/* notifications, and only its own hello reaches the daemon", async () => {
    const d = await realDaemon({ LOXMCP_POLICY: "full" });
    const s = shim(["--name", "guarded"]);
    s.send(initialize(1));
    await s.waitMessage((m) => m.id === 1 && "result" in m, "initialize");
    s.send({ jsonrpc: "2.0", method: "notifications/initialized" });
    expect(await clientEntry(d, s)).toMatchObject({ name: "guarded", pid: s.child.pid });

    // A second hello from stdin would rename the connection (and, as kind "cli", make it a control one).
    s.send({
      jsonrpc: "2.0",
      method: "loxmcp/hello",
      params: { kind: "cli", name: "evil", pid: 1, ppid: 1, version: "9" },
    });
    s.send({ jsonrpc: "2.0", id: 2, method: "loxmcp/approve", params: { code: "ABCDEF" } });
    s.send({ jsonrpc: "2.0", id: 3, method: "loxmcp/status", params: {} });
    s.send({ jsonrpc: "2.0", id: 4, method: "LOXMCP/shutdown" });
    s.send({ jsonrpc: "2.0", id: 5, method: "tools/list", params: {} });

    const list = await s.waitMessage((m) => m.id === 5, "tools/list after the refusals");
    expect((list.result as { tools: unknown[] }).tools.length).toBeGreaterThan(0);
    for (const [id, method] of [
      [2, "loxmcp/approve"],
      [3, "loxmcp/status"],
      [4, "LOXMCP/shutdown"],
    ] as const) {
      const m = await s.waitMessage((x) => x.id === id, `the refusal of ${method}`);
      expect(m.result, `${method} reached the daemon`).toBeUndefined();
      expect(errorOf(m).code).toBe(ErrorCodes.MethodNotFound);
      expect(errorOf(m).message).toBe(
        `${method} is not available to MCP clients: loxmcp control methods are for the person's \`loxmcp\` CLI`,
      );
    }
    // Identity unchanged, daemon alive, and the dropped notification said so on stderr only.
    expect(await clientEntry(d, s)).toMatchObject({ name: "guarded", pid: s.child.pid });
    expect(d.exitInfo()).toBeUndefined();
    expect(s.stderr()).toContain("dropped the client's loxmcp/hello notification");
    expect(s.messages.every(isJsonRpcLine)).toBe(true);
  });

  it("sends exactly one hello per connection and nothing of a loxmcp/* line (bare socket)", async () => {
    const socketPath = resolvePaths({ LOXMCP_HOME: home.home }).socket;
    ensurePrivateDir(resolvePaths({ LOXMCP_HOME: home.home }).runtime);
    listener = await FrameListener.listen(socketPath);
    listener.onFrame = (peer, msg) => {
      if (msg.method === "tools/list") peer.send({ jsonrpc: "2.0", id: msg.id, result: { tools: [] } });
    };
    const s = shim(["--name", "bare"]);
    s.send({ jsonrpc: "2.0", method: "loxmcp/hello", params: { kind: "shim", name: "evil" } });
    s.send({ jsonrpc: "2.0", id: 1, method: "loxmcp/hello", params: { kind: "shim", name: "evil" } });
    s.send({ jsonrpc: "2.0", id: 2, method: "loxmcp/relogin" });
    s.send({ jsonrpc: "2.0", id: 3, method: "tools/list" });
    await s.waitMessage((m) => m.id === 3 && "result" in m, "tools/list");
    await s.waitMessage((m) => m.id === 2 && "error" in m, "relogin refused");
    expect(errorOf(await s.waitMessage((m) => m.id === 1, "hello request refused")).code).toBe(
      ErrorCodes.MethodNotFound,
    );
    const frames = listener.allFrames();
    expect(frames.map((f) => f.method)).toEqual(["loxmcp/hello", "ping", "tools/list"]);
    expect(frames[0]?.params).toMatchObject({ kind: "shim", name: "bare", pid: s.child.pid });
  });

  it("answers a line that is not UTF-8 with a parse error and never hands the daemon a 3× larger line", async () => {
    const d = await realDaemon({ LOXMCP_POLICY: "full" });
    const s = shim(["--name", "bytes"]);
    s.send(initialize(1));
    await s.waitMessage((m) => m.id === 1 && "result" in m, "initialize");
    s.send({ jsonrpc: "2.0", method: "notifications/initialized" });
    const before = await counters(d);

    // 1.6 MB of 0xFF inside a JSON string: under the 4 MiB limit, 4.8 MB once decoded as U+FFFD.
    const bad = Buffer.concat([
      Buffer.from(
        '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"control_find","arguments":{"query":"',
      ),
      Buffer.alloc(1_600_000, 0xff),
      Buffer.from('"}}}\n'),
    ]);
    expect(bad.length).toBeLessThan(MAX_FRAME_BYTES);
    s.child.stdin?.write(bad);
    const err = await s.waitMessage((m) => m.id === null && "error" in m, "the parse error");
    expect(errorOf(err).code).toBe(ErrorCodes.ParseError);
    expect(errorOf(err).message).toContain("not valid UTF-8");

    s.send({ jsonrpc: "2.0", id: 8, method: "tools/list" });
    const list = await s.waitMessage((m) => m.id === 8, "tools/list afterwards");
    expect((list.result as { tools: unknown[] }).tools.length).toBeGreaterThan(0);
    expect(
      s.messages.some((m) => m.id === 7),
      "the bad line got an answer from the daemon",
    ).toBe(false);

    const after = await counters(d);
    expect(after.oversizeFrames).toBe(0);
    // The only new connection is our own second status call: the shim never reconnected.
    expect(after.connections).toBe((before.connections ?? 0) + 1);
    expect(s.stderr()).not.toContain("reconnect");
  });

  it("does not forward a client answer that re-encodes past 4 MiB: the daemon gets an error for its request", async () => {
    const d = await realDaemon({ LOXMCP_POLICY: "confirm" });
    const s = shim(["--name", "asker"]);
    s.send(initialize(1, { elicitation: {} }));
    await s.waitMessage((m) => m.id === 1 && "result" in m, "initialize");
    s.send({ jsonrpc: "2.0", method: "notifications/initialized" });
    const door = sim?.sim.house().controls.find((c) => c.type === "Intercom" || /door/i.test(c.name));
    if (!door) throw new Error("simulator has no door control");
    sim?.sim.resetStats();
    const before = await counters(d);

    s.send({
      jsonrpc: "2.0",
      id: 2,
      method: "tools/call",
      params: { name: "control_command", arguments: { uuid: door.uuid, command: "open" } },
    });
    const ask = await s.waitMessage((m) => m.method === "elicitation/create", "the daemon's elicitation");
    // 300 000 × "1e20," = 1.5 MB in; JSON.stringify writes each as 100000000000000000000 (6.6 MB out).
    const big = `{"jsonrpc":"2.0","id":${JSON.stringify(ask.id)},"result":{"action":"accept","content":{"n":[${Array(300_000).fill("1e20").join(",")}]}}}\n`;
    expect(Buffer.byteLength(big)).toBeLessThan(MAX_FRAME_BYTES);
    s.sendRaw(big);

    const res = await s.waitMessage((m) => m.id === 2, "the tool call's outcome", 20_000);
    const refused = "error" in res || (res.result as { isError?: boolean } | undefined)?.isError === true;
    expect(refused, `the held action ran: ${JSON.stringify(res)}`).toBe(true);
    expect(sim?.sim.stats().executions.filter((e) => e.tool === "control_command")).toHaveLength(0);
    expect(s.stderr()).toContain("the client's answer to a daemon request was");

    s.send({ jsonrpc: "2.0", id: 3, method: "tools/list" });
    const list = await s.waitMessage((m) => m.id === 3, "tools/list afterwards");
    expect((list.result as { tools: unknown[] }).tools.length).toBeGreaterThan(0);
    const after = await counters(d);
    expect(after.oversizeFrames).toBe(0);
    expect(after.connections).toBe((before.connections ?? 0) + 1);
    expect(s.messages.every(isJsonRpcLine)).toBe(true);
  });

  it("sends a normal client answer on, with only its own fields", async () => {
    const socketPath = resolvePaths({ LOXMCP_HOME: home.home }).socket;
    ensurePrivateDir(resolvePaths({ LOXMCP_HOME: home.home }).runtime);
    listener = await FrameListener.listen(socketPath);
    const s = shim(["--name", "answers"]);
    await waitFor(() => listener?.peers[0]?.frames[0], { what: "the hello" });
    listener.peers[0]?.send({ jsonrpc: "2.0", id: "d-1", method: "roots/list" });
    const ask = await s.waitMessage((m) => m.method === "roots/list", "the daemon's request");
    s.send({ jsonrpc: "2.0", id: ask.id, result: { roots: [] }, method: 5, extra: "x" });
    const answer = await waitFor(() => listener?.allFrames().find((f) => f.id === "d-1"), {
      what: "the answer at the daemon",
    });
    expect(answer).toEqual({ jsonrpc: "2.0", id: "d-1", result: { roots: [] } });
  });
});
