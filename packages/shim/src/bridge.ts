/**
 * The stdio ⇄ daemon-socket bridge. One per MCP client process.
 *
 * - Client lines (stdin) are checked (size, UTF-8, JSON, JSON-RPC shape) and forwarded verbatim,
 *   so a forwarded line is never larger than what came in. The shim carries only MCP: a
 *   `loxmcp/*` request from the client is answered -32601 here and a `loxmcp/*` notification
 *   dropped (control methods are the person's CLI's; the one `loxmcp/hello` per connection is
 *   the shim's own, built from its argv). The checks are in client-checks.ts.
 * - What the shim re-encodes itself (the client's answers to daemon→client requests, the
 *   replayed initialize) is measured after encoding and never sent over MAX_FRAME_BYTES: the
 *   daemon would drop the whole connection for it.
 * - Right after each connect: `loxmcp/hello` and a readiness `ping` under a shim-internal id
 *   (the daemon link, daemon-link.ts). Only once the daemon answers it (so it reads this
 *   connection; a dying daemon's listener can still accept) come, on a reconnect, the client's
 *   original `initialize` under a shim-internal id (response swallowed) and
 *   `notifications/initialized`, then anything queued; after the replayed initialize answers,
 *   `notifications/tools/list_changed` goes to the client.
 * - Connection lost: every request in flight gets an explicit error (never resent), daemon→client
 *   requests are cancelled towards the client, and the bridge reconnects with jittered backoff.
 *   A daemon is (re)started on demand: at start-up, and when a client message needs to go out.
 */
import type { Socket } from "node:net";
import {
  type ConnectOrStartOptions,
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
import {
  encodeAnswer,
  fitsAsReplay,
  idKey,
  isControlMethod,
  parseClientLine,
  refuseControl,
  undecodableReplies,
  unreachableReply,
  validId,
} from "./client-checks.js";
import { DaemonLink, type Logger } from "./daemon-link.js";

export { UNREACHABLE_MESSAGE } from "./client-checks.js";
export type { Logger } from "./daemon-link.js";

export const ABORTED_MESSAGE =
  "loxmcp daemon connection lost while this request was in flight; it was not resent (a write may or may not have run)";

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

export class Bridge {
  private readonly input = new LineDecoder(MAX_FRAME_BYTES, { strictUtf8: true });
  private readonly link: DaemonLink;
  private stopping = false;
  private inputEnded = false;
  /** Client messages waiting for a ready connection (see daemon-link.ts). */
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
  private drainTimer: NodeJS.Timeout | undefined;

  constructor(private readonly opts: BridgeOptions) {
    const { input, env, paths, name, startTimeoutMs, log, connect } = opts;
    this.link = new DaemonLink(
      { input, env, paths, name, startTimeoutMs, log, ...(connect ? { connect } : {}) },
      {
        wantsStart: () => this.queue.length > 0,
        startFailed: () => this.failQueued(),
        ready: () => this.onReady(),
        refused: (code, message) => this.refuseQueued(code, message),
        message: (line, m) => this.onDaemonMessage(line, m),
        lost: () => this.onDisconnect(),
        shouldReconnect: () => {
          this.checkDrained();
          return !this.stopping && !this.inputEnded;
        },
      },
    );
  }

  start(): void {
    const { input, output } = this.opts;
    input.on("data", (chunk: Buffer) => this.onInput(chunk));
    input.on("end", () => this.onInputEnd());
    input.on("error", () => this.onInputEnd());
    output.on("error", (err: Error) => {
      this.opts.log.debug(`stdout failed (${err.message}); stopping`);
      void this.stop();
    });
    this.link.start();
  }

  /** Closes the socket and finishes (SIGTERM/SIGINT, or after stdin ended and drained). */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.drainTimer) clearTimeout(this.drainTimer);
    for (const q of this.queue.splice(0)) clearTimeout(q.timer);
    await this.link.close();
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
    for (const reply of undecodableReplies(invalidUtf8, oversized)) this.reply(reply);
    for (const line of lines) this.onClientLine(line);
  }

  private onClientLine(line: string): void {
    const parsed = parseClientLine(line);
    if (!parsed.ok) {
      this.reply(parsed.reply);
      return;
    }
    const m = parsed.m;
    if (isControlMethod(m)) {
      const { warning, reply } = refuseControl(m);
      this.opts.log.warn(warning);
      if (reply) this.reply(reply);
      return;
    }
    if (isRequest(m)) {
      if (m.method === "initialize") {
        if (!fitsAsReplay(m)) {
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
      if (m.method === "ping" && !this.link.connected) {
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
    if (!entry || entry.gen !== this.link.generation || !this.link.connected) {
      this.opts.log.debug(
        `dropping the client's answer to #${String(shimId)}: its daemon connection is gone`,
      );
      return;
    }
    const { line, tooLarge } = encodeAnswer(m, entry.id);
    if (tooLarge !== undefined) {
      this.opts.log.warn(
        `the client's answer to a daemon request was ${tooLarge} bytes once re-encoded, more than ${MAX_FRAME_BYTES} (4 MiB): not forwarded; the daemon gets an error instead`,
      );
    }
    this.link.write(line);
  }

  /** Forwards a client message now, or queues it until the daemon is reachable. */
  private send(line: string, m: Record<string, unknown>): void {
    if (this.link.isReady) {
      this.forward(line, m);
      return;
    }
    const timer = setTimeout(() => this.expireQueued(q), this.opts.reconnectTimeoutMs);
    const q: Queued = { line, msg: m, timer };
    this.queue.push(q);
    if (this.link.connected) return; // waiting for the readiness answer on this connection
    this.link.demand();
  }

  private forward(line: string, m: Record<string, unknown>): void {
    if (isRequest(m)) {
      this.inflight.set(idKey(m.id), m.id);
      if (m.method === "initialize") this.initSent = true;
    } else if (m.method === "notifications/initialized") {
      this.initializedSent = true;
    }
    this.link.write(line);
  }

  private expireQueued(q: Queued): void {
    const i = this.queue.indexOf(q);
    if (i < 0) return;
    this.queue.splice(i, 1);
    if (isRequest(q.msg)) this.failUnreachable(q.msg.id);
    else this.opts.log.debug(`dropped ${String(q.msg.method)}: the daemon was not reachable in time`);
    this.checkDrained();
  }

  /** A daemon could not be started: those waiting would only wait for the same failure. */
  private failQueued(): void {
    for (const q of this.queue.splice(0)) {
      clearTimeout(q.timer);
      if (isRequest(q.msg)) this.failUnreachable(q.msg.id);
    }
    this.checkDrained();
  }

  /** The daemon refused the connection before it was ready: nothing waiting was sent. */
  private refuseQueued(code: number, message: string): void {
    for (const q of this.queue.splice(0)) {
      clearTimeout(q.timer);
      if (isRequest(q.msg)) this.reply(errorResponse(q.msg.id, code, `${message} (nothing was sent)`));
    }
    this.checkDrained();
  }

  private failUnreachable(id: JsonRpcId): void {
    this.reply(unreachableReply(id, this.link.startError, this.opts.paths));
  }

  private reply(message: unknown): void {
    this.writeOut(encodeFrame(message).slice(0, -1));
  }

  private writeOut(line: string): void {
    const ok = this.opts.output.write(`${line}\n`);
    if (!ok) this.link.holdUntilDrained(this.opts.output);
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

  /** The daemon answered the readiness ping: replay the session, then send what waited. */
  private onReady(): void {
    if (this.initLine && this.initSent) {
      // Its size was checked with the longest replay id when the client sent it (fitsAsReplay).
      this.replayId = `loxmcp-shim-replay-${this.link.generation}`;
      this.link.write(JSON.stringify({ ...this.initLine, id: this.replayId }));
      if (this.initializedSent)
        this.link.write(JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }));
    }
    for (const q of this.queue.splice(0)) {
      clearTimeout(q.timer);
      this.forward(q.line, q.msg);
    }
  }

  private onDisconnect(): void {
    this.replayId = undefined;
    for (const id of this.inflight.values()) {
      this.reply(errorResponse(id, ErrorCodes.RequestAborted, ABORTED_MESSAGE));
    }
    this.inflight.clear();
    for (const [shimId, req] of this.serverReqs) {
      if (req.gen !== this.link.generation) continue;
      this.serverReqs.delete(shimId);
      this.writeOut(
        JSON.stringify({
          jsonrpc: "2.0",
          method: "notifications/cancelled",
          params: { requestId: shimId, reason: "loxmcp daemon connection lost" },
        }),
      );
    }
  }

  /** A message from the daemon (its responses only once the connection is ready). */
  private onDaemonMessage(line: string, m: unknown): void {
    if (isResponse(m)) {
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
      this.serverReqs.set(shimId, { gen: this.link.generation, id: m.id });
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
      if (req.gen === this.link.generation && req.id === id) return shimId;
    }
    return undefined;
  }
}
