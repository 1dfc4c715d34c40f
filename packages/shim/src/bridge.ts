/**
 * The stdio ⇄ daemon-socket bridge. One per MCP client process.
 *
 * - Client lines (stdin) are checked (size, UTF-8, JSON, JSON-RPC shape) and forwarded verbatim,
 *   so a forwarded line is never larger than what came in. The shim carries only MCP: a
 *   `loxmcp/*` request from the client is answered -32601 here and a `loxmcp/*` notification
 *   dropped (control methods are the person's CLI's; the one `loxmcp/hello` per connection is
 *   the shim's own, built from its argv).
 * - What the shim re-encodes itself (the client's answers to daemon→client requests, the
 *   replayed initialize) is measured after encoding and never sent over MAX_FRAME_BYTES: the
 *   daemon would drop the whole connection for it.
 * - Right after each connect: `loxmcp/hello` and a readiness `ping` under a shim-internal id.
 *   Only once the daemon answers it (so it reads this connection; a dying daemon's listener can
 *   still accept) come, on a reconnect, the client's original `initialize` under a shim-internal
 *   id (response swallowed) and `notifications/initialized`, then anything queued; after the
 *   replayed initialize answers, `notifications/tools/list_changed` goes to the client.
 * - Connection lost: every request in flight gets an explicit error (never resent), daemon→client
 *   requests are cancelled towards the client, and the bridge reconnects with jittered backoff.
 *   A daemon is (re)started on demand: at start-up, and when a client message needs to go out.
 */
import type { Socket } from "node:net";
import {
  type ConnectOrStartOptions,
  connectOrStartDaemon,
  DaemonUnreachableError,
  type Env,
  ErrorCodes,
  encodeFrame,
  errorResponse,
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcId,
  type JsonRpcResponse,
  LineDecoder,
  type LoxmcpPaths,
  MAX_FRAME_BYTES,
} from "@loxmcp/common";
import { VERSION } from "./version.js";

/** Frames from our own daemon may be larger than client frames (big tool results): cap for memory only. */
const MAX_DAEMON_FRAME_BYTES = 16 * MAX_FRAME_BYTES;

export const ABORTED_MESSAGE =
  "loxmcp daemon connection lost while this request was in flight; it was not resent (a write may or may not have run)";
export const UNREACHABLE_MESSAGE = "loxmcp daemon not reachable: run `loxmcp status`";
export const CONTROL_REFUSED_SUFFIX =
  "is not available to MCP clients: loxmcp control methods are for the person's `loxmcp` CLI";
export const INVALID_UTF8_MESSAGE =
  "Parse error: the line is not valid UTF-8; it was not forwarded. Send JSON encoded as UTF-8.";
export const ANSWER_TOO_LARGE_MESSAGE = "the client's answer was too large";

/** Methods the shim never forwards from its client: the daemon's control surface. */
const CONTROL_METHOD = /^loxmcp\//i;
/** Longest id the shim gives a replayed initialize (`loxmcp-shim-replay-<gen>`). */
const REPLAY_ID_PLACEHOLDER = `loxmcp-shim-replay-${Number.MAX_SAFE_INTEGER}`;

export interface Logger {
  debug(msg: string): void;
  warn(msg: string): void;
}

export interface BridgeOptions {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  env: Env;
  paths: LoxmcpPaths;
  /** `--name` (null: the daemon uses clientInfo.name). */
  name: string | null;
  startTimeoutMs: number;
  /** How long a request waits for the daemon while (re)connecting. */
  reconnectTimeoutMs: number;
  /** After stdin ends: how long to wait for answers to requests still open. */
  drainMs: number;
  log: Logger;
  /** Called once when the bridge is done (stdin ended, or stop()). */
  onDone: () => void;
  /** For tests: override how the daemon is reached. */
  connect?: (opts: ConnectOrStartOptions) => Promise<{ socket: Socket }>;
  /** A tools/call answer says the call is held for the person (the desktop notification, notify.ts). */
  onHeld?: (call: { code: string; what: string }) => void;
}

interface Queued {
  line: string;
  msg: Record<string, unknown>;
  timer: NodeJS.Timeout;
}

interface ServerRequest {
  gen: number;
  id: JsonRpcId;
}

const idKey = (id: unknown): string => `${typeof id}:${String(id)}`;
const validId = (id: unknown): id is JsonRpcId => typeof id === "string" || typeof id === "number";

export class Bridge {
  private readonly input = new LineDecoder(MAX_FRAME_BYTES, { strictUtf8: true });
  private sock: Socket | undefined;
  private gen = 0;
  private connecting = false;
  private everConnected = false;
  private stopping = false;
  private inputEnded = false;
  private readonly queue: Queued[] = [];
  /** Client requests written to the current connection, by idKey. */
  private readonly inflight = new Map<string, JsonRpcId>();
  /** Daemon→client requests, by the id the client sees. */
  private readonly serverReqs = new Map<number, ServerRequest>();
  private serverReqSeq = 0;
  private initLine: Record<string, unknown> | undefined;
  private initSent = false;
  private initializedSent = false;
  private replayId: string | undefined;
  /**
   * The current connection is only used once the daemon has answered our readiness ping on it:
   * a connect can succeed on the listener of a daemon that is dying (kill -9 closes its accepted
   * connections before its listening socket), and a request written there would be lost without
   * an answer. Until then client messages wait in the queue, so nothing is sent to a daemon that
   * never read it, and on a reconnect they go to the next one (they were never sent: no resend).
   */
  private ready = false;
  private readyId: string | undefined;
  private reconnected = false;
  private wake: (() => void) | undefined;
  private lastStartError: DaemonUnreachableError | undefined;
  private drainTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: BridgeOptions) {}

  start(): void {
    const { input, output } = this.opts;
    input.on("data", (chunk: Buffer) => this.onInput(chunk));
    input.on("end", () => this.onInputEnd());
    input.on("error", () => this.onInputEnd());
    output.on("error", (err: Error) => {
      this.opts.log.debug(`stdout failed (${err.message}); stopping`);
      void this.stop();
    });
    void this.connectLoop();
  }

  /** Closes the socket and finishes (SIGTERM/SIGINT, or after stdin ended and drained). */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.drainTimer) clearTimeout(this.drainTimer);
    for (const q of this.queue.splice(0)) clearTimeout(q.timer);
    this.wake?.();
    const sock = this.sock;
    this.sock = undefined;
    if (sock) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          sock.destroy();
          resolve();
        }, 500);
        sock.once("close", () => {
          clearTimeout(t);
          resolve();
        });
        sock.end();
      });
    }
    // Flush stdout (bounded: a client that stopped reading must not keep us alive).
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 1_000);
      this.opts.output.write("", () => {
        clearTimeout(t);
        resolve();
      });
    });
    this.opts.onDone();
  }

  // ------------------------------------------------------------------ client side

  private onInput(chunk: Buffer): void {
    const { lines, oversized, invalidUtf8 } = this.input.push(chunk);
    for (let i = 0; i < invalidUtf8; i++) {
      // Decoded leniently, each bad byte would become U+FFFD (3 bytes) on the way to the daemon.
      this.reply(errorResponse(null, ErrorCodes.ParseError, INVALID_UTF8_MESSAGE));
    }
    for (let i = 0; i < oversized; i++) {
      this.reply(
        errorResponse(
          null,
          ErrorCodes.InvalidRequest,
          `message larger than ${MAX_FRAME_BYTES} bytes (4 MiB) refused; it was not forwarded. Send less data per request.`,
        ),
      );
    }
    for (const line of lines) this.onClientLine(line);
  }

  private onClientLine(line: string): void {
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      this.reply(errorResponse(null, ErrorCodes.ParseError, "Parse error: the line is not valid JSON"));
      return;
    }
    if (typeof msg !== "object" || msg === null || Array.isArray(msg)) {
      const what = Array.isArray(msg) ? "JSON-RPC batches are not supported" : "expected a JSON-RPC object";
      this.reply(errorResponse(null, ErrorCodes.InvalidRequest, `Invalid request: ${what}`));
      return;
    }
    const m = msg as Record<string, unknown>;
    const hasId = "id" in m && m.id !== null && m.id !== undefined;
    if (m.jsonrpc !== "2.0" || (hasId && !validId(m.id))) {
      const id = validId(m.id) ? m.id : null;
      this.reply(
        errorResponse(
          id,
          ErrorCodes.InvalidRequest,
          'Invalid request: needs "jsonrpc":"2.0" and a string or number id',
        ),
      );
      return;
    }
    if (typeof m.method === "string" && CONTROL_METHOD.test(m.method)) {
      this.refuseControl(m);
      return;
    }
    if (isRequest(m)) {
      if (m.method === "initialize") {
        if (!this.fitsAsReplay(m)) {
          this.reply(
            errorResponse(
              m.id,
              ErrorCodes.InvalidRequest,
              `initialize refused: re-encoded it would be larger than ${MAX_FRAME_BYTES} bytes (4 MiB), more than the daemon accepts; it was not forwarded. Send less data.`,
            ),
          );
          return;
        }
        this.initLine = m;
      }
      if (m.method === "ping" && !this.sock) {
        // The shim itself is alive; don't start a daemon just for a ping.
        this.reply({ jsonrpc: "2.0", id: m.id, result: {} });
        return;
      }
      this.opts.log.debug(`→ ${m.method} #${String(m.id)}`);
      this.send(line, m);
    } else if (isNotification(m)) {
      if (m.method === "notifications/cancelled") this.onClientCancel(m.params);
      this.opts.log.debug(`→ ${m.method}`);
      this.send(line, m);
    } else if (isResponse(m)) {
      this.onClientResponse(m);
    } else {
      this.reply(errorResponse(validId(m.id) ? m.id : null, ErrorCodes.InvalidRequest, "Invalid request"));
    }
  }

  /**
   * A `loxmcp/*` message from the client (an AI, or whoever writes to our stdin): never reaches
   * the daemon, so it can neither approve, resume, shut down nor send a second hello.
   */
  private refuseControl(m: Record<string, unknown>): void {
    const raw = String(m.method);
    const method = raw.length > 100 ? `${raw.slice(0, 100)}…` : raw;
    if (isRequest(m)) {
      this.opts.log.warn(`refused the client's ${method} request: loxmcp control methods are for the CLI`);
      this.reply(errorResponse(m.id, ErrorCodes.MethodNotFound, `${method} ${CONTROL_REFUSED_SUFFIX}`));
    } else {
      this.opts.log.warn(
        `dropped the client's ${method} notification: loxmcp control methods are for the CLI`,
      );
    }
  }

  /** The client's initialize, replayed after a reconnect with a longer id, still fits a frame. */
  private fitsAsReplay(m: Record<string, unknown>): boolean {
    return Buffer.byteLength(JSON.stringify({ ...m, id: REPLAY_ID_PLACEHOLDER })) <= MAX_FRAME_BYTES;
  }

  private onClientCancel(params: unknown): void {
    const requestId = (params as { requestId?: unknown } | undefined)?.requestId;
    if (!validId(requestId)) return;
    this.inflight.delete(idKey(requestId));
    const i = this.queue.findIndex(
      (q) => q.msg.method !== undefined && "id" in q.msg && q.msg.id === requestId,
    );
    if (i >= 0) {
      const [q] = this.queue.splice(i, 1);
      if (q) clearTimeout(q.timer);
    }
  }

  /** The client answers a daemon→client request (elicitation, sampling, roots, ping). */
  private onClientResponse(m: Record<string, unknown>): void {
    const shimId = m.id;
    const entry = typeof shimId === "number" ? this.serverReqs.get(shimId) : undefined;
    if (typeof shimId === "number") this.serverReqs.delete(shimId);
    if (!entry || entry.gen !== this.gen || !this.sock) {
      this.opts.log.debug(
        `dropping the client's answer to #${String(shimId)}: its daemon connection is gone`,
      );
      return;
    }
    // Only the answer's own fields, under the daemon's id. Re-encoding can grow a line
    // (1e20 → 100000000000000000000): measure what would go out, not what came in.
    const answer = "error" in m ? { error: m.error } : { result: m.result };
    const line = JSON.stringify({ jsonrpc: "2.0", id: entry.id, ...answer });
    const bytes = Buffer.byteLength(line);
    if (bytes > MAX_FRAME_BYTES) {
      this.opts.log.warn(
        `the client's answer to a daemon request was ${bytes} bytes once re-encoded, more than ${MAX_FRAME_BYTES} (4 MiB): not forwarded; the daemon gets an error instead`,
      );
      this.writeSock(
        JSON.stringify(
          errorResponse(
            entry.id,
            ErrorCodes.InvalidRequest,
            `${ANSWER_TOO_LARGE_MESSAGE} (${bytes} bytes, more than ${MAX_FRAME_BYTES}); it was not forwarded`,
          ),
        ),
      );
      return;
    }
    this.writeSock(line);
  }

  /** Forwards a client message now, or queues it until the daemon is reachable. */
  private send(line: string, m: Record<string, unknown>): void {
    if (this.sock && this.ready) {
      this.forward(line, m);
      return;
    }
    const timer = setTimeout(() => this.expireQueued(q), this.opts.reconnectTimeoutMs);
    const q: Queued = { line, msg: m, timer };
    this.queue.push(q);
    if (this.sock) return; // waiting for the readiness answer on this connection
    this.wake?.();
    void this.connectLoop();
  }

  private forward(line: string, m: Record<string, unknown>): void {
    if (isRequest(m)) {
      this.inflight.set(idKey(m.id), m.id);
      if (m.method === "initialize") this.initSent = true;
    } else if (m.method === "notifications/initialized") {
      this.initializedSent = true;
    }
    this.writeSock(line);
  }

  private expireQueued(q: Queued): void {
    const i = this.queue.indexOf(q);
    if (i < 0) return;
    this.queue.splice(i, 1);
    if (isRequest(q.msg)) this.failUnreachable(q.msg.id);
    else this.opts.log.debug(`dropped ${String(q.msg.method)}: the daemon was not reachable in time`);
    this.checkDrained();
  }

  /**
   * The daemon cannot be reached. When it could not start for a reason the person must fix (a
   * configuration error, an unusable directory), the client — and so the AI and the person
   * reading its error — gets the daemon's own line naming the key and the fix, not a bare
   * "not reachable".
   */
  private failUnreachable(id: JsonRpcId): void {
    const e = this.lastStartError;
    const data: Record<string, unknown> = {
      socket: this.opts.paths.socket,
      logFile: this.opts.paths.logFile,
    };
    if (e) data.reason = e.message;
    if (e?.detail.refused !== undefined) data.refused = e.detail.refused;
    const startError = e?.detail.startError;
    if (startError) {
      if (startError.exitCode !== undefined) data.exitCode = startError.exitCode;
      if (startError.problems) data.problems = startError.problems;
      data.fix =
        "fix it, then use this server again (the daemon is started on the next request); `loxmcp doctor` lists every problem";
    }
    // Hardened mode with the system daemon stopped: "system daemon not running: sudo systemctl
    // start loxmcpd" (nothing was started in its place) is what the person needs to read.
    if (e?.detail.system) data.system = true;
    const message = startError
      ? `loxmcpd cannot start: ${startError.message}`
      : e?.detail.system
        ? e.message
        : UNREACHABLE_MESSAGE;
    this.reply(errorResponse(id, ErrorCodes.DaemonUnreachable, message, data));
  }

  private reply(message: unknown): void {
    this.writeOut(encodeFrame(message).slice(0, -1));
  }

  private writeOut(line: string): void {
    const ok = this.opts.output.write(`${line}\n`);
    if (!ok && this.sock) {
      const sock = this.sock;
      sock.pause();
      this.opts.output.once("drain", () => sock.resume());
    }
  }

  private writeSock(line: string): void {
    const sock = this.sock;
    if (!sock) return;
    const ok = sock.write(`${line}\n`);
    if (!ok) {
      this.opts.input.pause();
      sock.once("drain", () => this.opts.input.resume());
    }
  }

  private onInputEnd(): void {
    if (this.inputEnded) return;
    this.inputEnded = true;
    this.opts.log.debug("stdin closed");
    // Give requests still open a short while to be answered (e.g. `printf … | loxmcp-shim`).
    this.drainTimer = setTimeout(() => void this.stop(), this.opts.drainMs);
    this.checkDrained();
  }

  private checkDrained(): void {
    if (this.inputEnded && this.inflight.size === 0 && !this.queue.some((q) => isRequest(q.msg))) {
      void this.stop();
    }
  }

  // ------------------------------------------------------------------ daemon side

  private async connectLoop(): Promise<void> {
    if (this.connecting || this.sock || this.stopping) return;
    this.connecting = true;
    let attempt = 0;
    try {
      while (!this.stopping && !this.sock) {
        // Start a daemon when someone needs it: once at start-up, then when client messages wait.
        const allowStart = (!this.everConnected && attempt === 0) || this.queue.length > 0;
        try {
          const connect = this.opts.connect ?? connectOrStartDaemon;
          const { socket } = await connect({
            env: this.opts.env,
            paths: this.opts.paths,
            timeoutMs: this.opts.startTimeoutMs,
            allowStart,
            log: (msg) => this.opts.log.debug(msg),
          });
          if (this.stopping) {
            socket.destroy();
            return;
          }
          this.lastStartError = undefined;
          this.attach(socket);
          return;
        } catch (e) {
          if (allowStart) {
            const err =
              e instanceof DaemonUnreachableError
                ? e
                : new DaemonUnreachableError((e as Error).message, {
                    socket: this.opts.paths.socket,
                    logFile: this.opts.paths.logFile,
                  });
            this.lastStartError = err;
            this.opts.log.warn(err.message);
            // Those waiting now would only wait for the same failure: answer them.
            for (const q of this.queue.splice(0)) {
              clearTimeout(q.timer);
              if (isRequest(q.msg)) this.failUnreachable(q.msg.id);
            }
            this.checkDrained();
          }
        }
        // Demand arrived while we only probed: start the daemon now, without a backoff sleep.
        if (!allowStart && this.queue.length > 0) continue;
        attempt++;
        await this.backoff(attempt);
      }
    } finally {
      this.connecting = false;
    }
  }

  /** Jittered exponential backoff (100 ms … 5 s); a new client message cuts it short. */
  private backoff(attempt: number): Promise<void> {
    const base = Math.min(5_000, 100 * 2 ** Math.min(attempt - 1, 10));
    const ms = base / 2 + Math.random() * (base / 2);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.wake = done;
    });
  }

  private attach(socket: Socket): void {
    const reconnect = this.everConnected;
    this.reconnected = reconnect;
    this.gen++;
    this.sock = socket;
    this.ready = false;
    this.everConnected = true;
    const decoder = new LineDecoder(MAX_DAEMON_FRAME_BYTES);
    socket.on("data", (chunk: Buffer) => {
      const { lines, oversized } = decoder.push(chunk);
      if (oversized > 0) this.opts.log.warn(`dropped ${oversized} oversized frame(s) from the daemon`);
      for (const line of lines) this.onDaemonLine(line);
    });
    socket.on("error", (err) => this.opts.log.debug(`daemon socket error: ${err.message}`));
    socket.on("close", () => this.onDisconnect(socket));
    this.opts.log.debug(`connected to ${this.opts.paths.socket}${reconnect ? " (reconnected)" : ""}`);

    this.writeSock(
      JSON.stringify({
        jsonrpc: "2.0",
        method: "loxmcp/hello",
        params: {
          kind: "shim",
          name: this.opts.name,
          pid: process.pid,
          ppid: process.ppid,
          version: VERSION,
        },
      }),
    );
    // A ping answered without the upstream, even before initialize: proof the daemon reads us.
    this.readyId = `loxmcp-shim-ready-${this.gen}`;
    this.writeSock(JSON.stringify({ jsonrpc: "2.0", id: this.readyId, method: "ping" }));
  }

  /** The daemon answered the readiness ping: replay the session, then send what waited. */
  private onReady(): void {
    this.readyId = undefined;
    this.ready = true;
    if (this.initLine && this.initSent) {
      // Its size was checked with the longest replay id when the client sent it (fitsAsReplay).
      this.replayId = `loxmcp-shim-replay-${this.gen}`;
      this.writeSock(JSON.stringify({ ...this.initLine, id: this.replayId }));
      if (this.initializedSent)
        this.writeSock(JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }));
    }
    for (const q of this.queue.splice(0)) {
      clearTimeout(q.timer);
      this.forward(q.line, q.msg);
    }
    if (this.reconnected) this.opts.log.warn("reconnected to the loxmcp daemon");
  }

  /**
   * Before it read our readiness ping the daemon refused this connection (too many connections,
   * an error with a null id): nothing waiting was sent, so each waiting request gets that refusal.
   */
  private onRefusedBeforeReady(m: JsonRpcResponse): void {
    const err = "error" in m ? (m.error as { code?: unknown; message?: unknown }) : undefined;
    const code = typeof err?.code === "number" ? err.code : ErrorCodes.TooBusy;
    const message =
      typeof err?.message === "string" ? err.message : "the loxmcp daemon refused the connection";
    this.opts.log.warn(`the loxmcp daemon refused the connection: ${message}`);
    for (const q of this.queue.splice(0)) {
      clearTimeout(q.timer);
      if (isRequest(q.msg)) this.reply(errorResponse(q.msg.id, code, `${message} (nothing was sent)`));
    }
    this.checkDrained();
  }

  private onDisconnect(socket: Socket): void {
    if (this.sock !== socket) return;
    this.sock = undefined;
    this.ready = false;
    this.readyId = undefined;
    this.replayId = undefined;
    for (const id of this.inflight.values()) {
      this.reply(errorResponse(id, ErrorCodes.RequestAborted, ABORTED_MESSAGE));
    }
    this.inflight.clear();
    for (const [shimId, req] of this.serverReqs) {
      if (req.gen !== this.gen) continue;
      this.serverReqs.delete(shimId);
      this.writeOut(
        JSON.stringify({
          jsonrpc: "2.0",
          method: "notifications/cancelled",
          params: { requestId: shimId, reason: "loxmcp daemon connection lost" },
        }),
      );
    }
    this.opts.input.resume();
    if (this.stopping) return;
    this.checkDrained();
    if (this.stopping || this.inputEnded) return;
    this.opts.log.warn("lost the connection to the loxmcp daemon; reconnecting");
    void this.connectLoop();
  }

  private onDaemonLine(line: string): void {
    let m: unknown;
    try {
      m = JSON.parse(line);
    } catch {
      this.opts.log.warn("dropped a line from the daemon that is not JSON");
      return;
    }
    if (isResponse(m)) {
      if (!this.ready) {
        if (this.readyId !== undefined && m.id === this.readyId) this.onReady();
        else if (m.id === null) this.onRefusedBeforeReady(m);
        return;
      }
      if (this.replayId !== undefined && m.id === this.replayId) {
        this.replayId = undefined;
        if (this.initializedSent) {
          this.writeOut('{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}');
        }
        return;
      }
      this.inflight.delete(idKey(m.id));
      this.opts.log.debug(`← response #${String(m.id)}`);
      this.writeOut(line);
      this.checkDrained();
      if (this.opts.onHeld && line.includes('"APPROVAL_REQUIRED"')) this.noticeHeld(m);
    } else if (isRequest(m)) {
      const shimId = ++this.serverReqSeq;
      this.serverReqs.set(shimId, { gen: this.gen, id: m.id });
      this.opts.log.debug(`← ${m.method} (daemon request #${String(m.id)} → #${shimId})`);
      this.writeOut(JSON.stringify({ ...m, id: shimId }));
    } else if (isNotification(m)) {
      if (m.method === "notifications/cancelled") {
        const p = (m.params ?? {}) as Record<string, unknown>;
        const shimId = this.findServerReq(p.requestId);
        if (shimId !== undefined) {
          this.serverReqs.delete(shimId);
          this.writeOut(JSON.stringify({ ...m, params: { ...p, requestId: shimId } }));
        }
        return;
      }
      this.writeOut(line);
    } else {
      this.opts.log.warn("dropped a daemon message that is not JSON-RPC");
    }
  }

  /** The policy held this call for the person: tell them (never the AI: nothing goes to stdout). */
  private noticeHeld(m: JsonRpcResponse): void {
    const result = ("result" in m ? m.result : undefined) as { _meta?: Record<string, unknown> } | undefined;
    const policy = result?._meta?.["loxmcp/policy"] as Record<string, unknown> | undefined;
    if (policy?.code !== "APPROVAL_REQUIRED" || typeof policy.approvalCode !== "string") return;
    this.opts.onHeld?.({
      code: policy.approvalCode,
      what: typeof policy.what === "string" ? policy.what : "run an action that needs your approval",
    });
  }

  private findServerReq(id: unknown): number | undefined {
    for (const [shimId, req] of this.serverReqs) {
      if (req.gen === this.gen && req.id === id) return shimId;
    }
    return undefined;
  }
}
