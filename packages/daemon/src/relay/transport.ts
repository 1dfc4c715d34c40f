/**
 * The MCP Streamable HTTP client transport of the relay session, on `node:http`/`node:https`
 * keep-alive (the pool's agents, http.ts) instead of the SDK's fetch-based one: same wire (POST with
 * `accept: application/json, text/event-stream`, `mcp-session-id`, `mcp-protocol-version`, the Bearer
 * token asked for per request; JSON or SSE answers; the GET notification stream after initialize,
 * resumed with `Last-Event-ID` and backoff; a POST's SSE stream that closed after an event id resumed
 * by GET after the server's `retry` (SEP-1699); DELETE to end the session), without web streams,
 * undici or a body `tee` on the per-call path: headers and body leave in one write.
 *
 * Delivery tracking is done here, explicitly, for the request of the current context (`current()`,
 * the `RequestCtx` the exchange runs it in — see delivery.ts): the token it carried; refused (no
 * connection, nothing written), rejected (a status that means it never ran, with a 401/403's
 * WWW-Authenticate parameters), lost (broken after it may have run) or accepted; then the end or
 * break of its SSE answer. Its abort signal aborts the HTTP request. Nothing is ever sent twice here:
 * resending is the classifier's decision (failures.ts).
 */

import { AsyncResource } from "node:async_hooks";
import { type ClientRequest, request as httpRequest, type IncomingMessage } from "node:http";
import { request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import { isNotification, isRequest, isResponse } from "@loxmcp/common";
import type { Transport, TransportSendOptions } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage, RequestId } from "@modelcontextprotocol/sdk/types.js";
import type { AuthChallenge } from "./auth/manager.js";
import { NOT_EXECUTED, type RequestCtx } from "./delivery.js";
import type { HttpPool } from "./http.js";
import { networkErrorCode } from "./resolver.js";
import { SseParser } from "./sse.js";

/** An HTTP answer the transport could not use (the SDK's `StreamableHTTPError` shape). */
export class RelayHttpError extends Error {
  constructor(
    /** The HTTP status, or -1 for an unexpected content type. */
    readonly code: number,
    message: string,
  ) {
    super(`Streamable HTTP error: ${message}`);
    this.name = "RelayHttpError";
  }
}

export interface ReconnectionOptions {
  initialReconnectionDelay: number;
  maxReconnectionDelay: number;
  reconnectionDelayGrowFactor: number;
  maxRetries: number;
}

/** A look at the wire, for tests: `sending` may throw to fail a request as a connection that broke under it. */
export interface RelayWire {
  sending?(method: string, body: string | undefined): void;
  answered?(method: string, body: string | undefined, status: number): void;
}

export interface RelayTransportOptions {
  url: URL;
  /** The keep-alive agents (and the wake check before each request). */
  pool: Pick<HttpPool, "agentFor">;
  /** The Bearer token for the next request (refreshed first when due); undefined: no header. */
  token(url: string): Promise<string | undefined>;
  /** The delivery-tracking context of the request being sent, if any. */
  current(): RequestCtx | undefined;
  /** How long after its SSE answer ended or broke a request may still be answered. */
  graceMs: number;
  reconnection: ReconnectionOptions;
  wire?: RelayWire | undefined;
}

interface SseOptions {
  resumptionToken?: string | undefined;
  onresumptiontoken?: ((token: string) => void) | undefined;
  replayMessageId?: RequestId | undefined;
}

type Headers = Record<string, string>;

/** How long a GET stream may be silent before it is taken for a dead connection (undici's default body timeout). */
const STREAM_IDLE_MS = 300_000;

export class RelayTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  private _sessionId: string | undefined;
  private _protocolVersion: string | undefined;
  private started = false;
  private closed = false;
  private serverRetryMs: number | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** Requests whose answer is still open (the GET streams among them): ended by `close()`. */
  private readonly open = new Set<ClientRequest>();
  private readonly href: string;

  constructor(private readonly o: RelayTransportOptions) {
    this.href = o.url.href;
  }

  get sessionId(): string | undefined {
    return this._sessionId;
  }

  get protocolVersion(): string | undefined {
    return this._protocolVersion;
  }

  setProtocolVersion(version: string): void {
    this._protocolVersion = version;
  }

  async start(): Promise<void> {
    if (this.started) throw new Error("RelayTransport already started");
    this.started = true;
  }

  async close(): Promise<void> {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.closed = true;
    for (const req of this.open) req.destroy();
    this.open.clear();
    this.onclose?.();
  }

  async send(message: JSONRPCMessage, options?: TransportSendOptions): Promise<void> {
    try {
      if (options?.resumptionToken) {
        const replayMessageId = isRequest(message) ? message.id : undefined;
        this.startSse({ resumptionToken: options.resumptionToken, replayMessageId }).catch((err: unknown) =>
          this.onerror?.(asError(err)),
        );
        return;
      }
      await this.post(message, options?.onresumptiontoken);
    } catch (err) {
      this.onerror?.(asError(err));
      throw err;
    }
  }

  async terminateSession(): Promise<void> {
    if (!this._sessionId) return;
    try {
      const res = await this.exchange("DELETE", await this.headers(), undefined, undefined);
      const status = res.statusCode ?? 0;
      drain(res);
      if (!ok(status) && status !== 405) {
        throw new RelayHttpError(status, `Failed to terminate session: ${res.statusMessage ?? status}`);
      }
      this._sessionId = undefined;
    } catch (err) {
      this.onerror?.(asError(err));
      throw err;
    }
  }

  // ------------------------------------------------------------------ POST

  private async post(
    message: JSONRPCMessage,
    onresumptiontoken: SseOptions["onresumptiontoken"],
  ): Promise<void> {
    const ctx = this.tracked(message);
    const headers = await this.headers(ctx);
    headers["content-type"] = "application/json";
    headers.accept = "application/json, text/event-stream";
    const body = JSON.stringify(message);
    // Server→client requests raised on this answer run in the context of the request that caused them.
    const scope = new AsyncResource("RelayAnswer");
    const res = await this.exchange("POST", headers, body, ctx);
    const status = res.statusCode ?? 0;
    const sessionId = res.headers["mcp-session-id"];
    if (typeof sessionId === "string" && sessionId) this._sessionId = sessionId;
    if (ctx) {
      ctx.status = status;
      if (status === 401 || status === 403) ctx.challenge = challengeOf(res);
    }
    if (!ok(status)) {
      if (ctx) ctx.phase = NOT_EXECUTED.has(status) ? "rejected" : "lost";
      const text = await readText(res).catch(() => null);
      throw new RelayHttpError(status, `Error POSTing to endpoint: ${text}`);
    }
    if (ctx) ctx.phase = "accepted";
    if (status === 202) {
      drain(res);
      if (isNotification(message) && message.method === "notifications/initialized") {
        this.startSse({}).catch((err: unknown) => this.onerror?.(asError(err)));
      }
      return;
    }
    if (!isRequest(message)) {
      drain(res);
      return;
    }
    const contentType = res.headers["content-type"];
    const type = mediaType(contentType);
    if (type === "text/event-stream") {
      this.readSse(res, { onresumptiontoken }, false, ctx, scope);
    } else if (type === "application/json") {
      let text: string;
      try {
        text = await readText(res);
      } catch (err) {
        if (ctx) {
          ctx.phase = "lost";
          ctx.netCode = networkErrorCode(err) ?? "stream broken";
        }
        throw err;
      }
      const data = JSON.parse(text) as unknown;
      const messages = (Array.isArray(data) ? data : [data]).map(jsonRpcMessage);
      for (const m of messages) this.onmessage?.(m);
    } else {
      drain(res);
      throw new RelayHttpError(-1, `Unexpected content type: ${contentType}`);
    }
  }

  /** The context of `message` when it is the request that context was made for (its first one of that method). */
  private tracked(message: JSONRPCMessage): RequestCtx | undefined {
    if (!isRequest(message)) return undefined;
    const ctx = this.o.current();
    if (!ctx) return undefined;
    if (ctx.id === undefined && message.method === ctx.method) ctx.id = message.id;
    return ctx.id === message.id ? ctx : undefined;
  }

  // ------------------------------------------------------------------ GET streams

  private async startSse(o: SseOptions): Promise<void> {
    try {
      const headers = await this.headers();
      headers.accept = "text/event-stream";
      if (o.resumptionToken) headers["last-event-id"] = o.resumptionToken;
      const res = await this.exchange("GET", headers, undefined, undefined);
      const status = res.statusCode ?? 0;
      if (!ok(status)) {
        drain(res);
        if (status === 405) return; // the server offers no notification stream
        throw new RelayHttpError(status, `Failed to open SSE stream: ${res.statusMessage ?? status}`);
      }
      this.readSse(res, o, true, undefined, undefined);
    } catch (err) {
      this.onerror?.(asError(err));
      throw err;
    }
  }

  private scheduleReconnection(o: SseOptions, attempt: number): void {
    const r = this.o.reconnection;
    if (attempt >= r.maxRetries) {
      this.onerror?.(new Error(`Maximum reconnection attempts (${r.maxRetries}) exceeded.`));
      return;
    }
    const delay =
      this.serverRetryMs ??
      Math.min(r.initialReconnectionDelay * r.reconnectionDelayGrowFactor ** attempt, r.maxReconnectionDelay);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closed) return;
      this.startSse(o).catch((err: unknown) => {
        this.onerror?.(new Error(`Failed to reconnect SSE stream: ${asError(err).message}`));
        this.scheduleReconnection(o, attempt + 1);
      });
    }, delay);
  }

  /**
   * Reads an SSE answer as it arrives: messages to `onmessage` in order; for a tracked request, its
   * end or break noted (with the time a resumption may take); a stream that can be resumed and
   * ended without the answer resumed by GET + Last-Event-ID.
   */
  private readSse(
    res: IncomingMessage,
    o: SseOptions,
    reconnectable: boolean,
    ctx: RequestCtx | undefined,
    scope: AsyncResource | undefined,
  ): void {
    let lastEventId: string | undefined;
    let answered = false;
    let retryMs: number | undefined;
    let done = false;
    const onEvent = (event: string, data: string, id: string | undefined) => {
      if (id) {
        lastEventId = id;
        o.onresumptiontoken?.(id);
      }
      if (!data || (event && event !== "message")) return;
      try {
        const message = jsonRpcMessage(JSON.parse(data));
        if (isResponse(message)) {
          answered = true;
          if (o.replayMessageId !== undefined) message.id = o.replayMessageId;
        }
        if (scope) scope.runInAsyncScope(() => this.onmessage?.(message));
        else this.onmessage?.(message);
      } catch (err) {
        this.onerror?.(asError(err));
      }
    };
    const parser = new SseParser(onEvent, (ms) => {
      this.serverRetryMs = ms;
      retryMs = ms;
    });
    const finish = (err: unknown) => {
      if (done) return;
      done = true;
      const broken = err !== undefined;
      if (ctx) {
        if (broken) {
          ctx.netCode = networkErrorCode(err) ?? "stream broken";
          ctx.streamEnded(this.o.graceMs, true);
        } else {
          // SEP-1699: a stream that carried an event id and closed gracefully is resumed with
          // GET + Last-Event-ID after the server's `retry` (else the backoff); the answer comes there.
          const resumeMs = lastEventId !== undefined ? 2 * (retryMs ?? 1_250) + 2_000 : 0;
          ctx.streamEnded(Math.max(this.o.graceMs, resumeMs), false);
        }
      }
      if (broken) this.onerror?.(new Error(`SSE stream disconnected: ${asError(err).message}`));
      const canResume = reconnectable || lastEventId !== undefined;
      if (canResume && !answered && !this.closed && !ctx?.abortReason) {
        this.scheduleReconnection(
          {
            resumptionToken: lastEventId,
            onresumptiontoken: o.onresumptiontoken,
            replayMessageId: o.replayMessageId,
          },
          0,
        );
      }
    };
    let failure: unknown;
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => parser.push(chunk));
    res.on("error", (err) => {
      failure = err;
    });
    res.on("end", () => finish(undefined));
    res.on("close", () => {
      if (!res.complete) finish(failure ?? new Error("the SSE stream broke"));
      else finish(undefined);
    });
  }

  // ------------------------------------------------------------------ HTTP

  /** The headers every request carries: the Bearer token (noted for `ctx`), the session, the protocol version. */
  private async headers(ctx?: RequestCtx): Promise<Headers> {
    const token = await this.o.token(this.href);
    const h: Headers = {};
    if (token) h.authorization = `Bearer ${token}`;
    if (this._sessionId) h["mcp-session-id"] = this._sessionId;
    if (this._protocolVersion) h["mcp-protocol-version"] = this._protocolVersion;
    if (ctx) ctx.usedToken = token;
    return h;
  }

  /**
   * One HTTP request, headers and body in one write, on a pooled keep-alive connection; resolves
   * with the response (its body unread). For `ctx`: phase `sent`, then `refused` when it failed before a
   * connection carried anything, `lost` when it failed after; its abort signal aborts it (body included).
   */
  private exchange(
    method: string,
    headers: Headers,
    body: string | undefined,
    ctx: RequestCtx | undefined,
  ): Promise<IncomingMessage> {
    const signal = ctx?.ac.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.closed) return Promise.reject(new Error("the relay transport is closed"));
    if (ctx) ctx.phase = "sent";
    let connected = false;
    const failed = (err: unknown) => {
      if (ctx) {
        ctx.netCode = networkErrorCode(err);
        ctx.phase = connected ? "lost" : "refused";
      }
      return err;
    };
    const url = this.o.url;
    let agent: ReturnType<HttpPool["agentFor"]>;
    try {
      agent = this.o.pool.agentFor(url);
    } catch (err) {
      return Promise.reject(failed(err));
    }
    const wire = this.o.wire;
    if (wire?.sending) {
      try {
        wire.sending(method, body);
      } catch (err) {
        connected = true; // as if it broke under a kept-alive connection
        return Promise.reject(failed(err));
      }
    }
    if (body !== undefined) headers["content-length"] = String(Buffer.byteLength(body));
    return new Promise<IncomingMessage>((resolve, reject) => {
      const send = url.protocol === "https:" ? httpsRequest : httpRequest;
      const req = send(url, { method, headers, agent });
      this.open.add(req);
      // A notification stream with nothing on it for this long is taken for a dead connection
      // and resumed (what undici's body timeout did); a request's own timer ends a POST first.
      if (method === "GET") {
        req.setTimeout(STREAM_IDLE_MS, () => {
          req.destroy(Object.assign(new Error("the SSE stream was silent too long"), { code: "ETIMEDOUT" }));
        });
      }
      let settled = false;
      const onAbort = () => req.destroy(signal?.reason ?? new Error("request aborted"));
      signal?.addEventListener("abort", onAbort, { once: true });
      // Nothing of the request leaves before the connection is up (TLS: after the handshake, so a
      // certificate refused is "refused" too); a reused kept-alive connection is up already.
      req.on("socket", (socket: Socket) => {
        if (!socket.connecting) connected = true;
        else socket.once("encrypted" in socket ? "secureConnect" : "connect", () => (connected = true));
      });
      req.on("response", (res) => {
        settled = true;
        wire?.answered?.(method, body, res.statusCode ?? 0);
        resolve(res);
      });
      req.on("error", (err) => {
        if (settled) return; // the response reports it (a broken body)
        settled = true;
        reject(failed(err));
      });
      req.on("close", () => {
        this.open.delete(req);
        signal?.removeEventListener("abort", onAbort);
      });
      req.end(body);
    });
  }
}

/** Reads and drops a body nobody needs, so that its connection can be kept alive. */
function drain(res: IncomingMessage): void {
  res.on("error", () => {});
  res.resume();
}

function ok(status: number): boolean {
  return status >= 200 && status < 300;
}

function mediaType(header: string | undefined): string | undefined {
  if (!header) return undefined;
  return (header.split(";", 1)[0] ?? "").trim().toLowerCase();
}

/** A 401/403's WWW-Authenticate parameters, read as the SDK reads them (a Bearer challenge only). */
export function challengeOf(res: Pick<IncomingMessage, "headers">): AuthChallenge {
  const header = res.headers["www-authenticate"];
  const value = Array.isArray(header) ? header.join(", ") : header;
  if (!value) return {};
  const [type, scheme] = value.split(" ");
  if (type?.toLowerCase() !== "bearer" || !scheme) return {};
  const field = (name: string) => {
    const m = new RegExp(`${name}=(?:"([^"]+)"|([^\\s,]+))`).exec(value);
    return (m?.[1] ?? m?.[2]) || undefined;
  };
  const out: AuthChallenge = {};
  const rm = field("resource_metadata");
  if (rm && URL.canParse(rm)) out.resourceMetadataUrl = new URL(rm); // an invalid URL is ignored, as the SDK does
  const scope = field("scope");
  if (scope) out.scope = scope;
  const error = field("error");
  if (error) out.error = error;
  return out;
}

/** A message as JSON-RPC 2.0 (what the SDK's schema checked): an object saying `jsonrpc: "2.0"`. */
function jsonRpcMessage(m: unknown): JSONRPCMessage {
  if (typeof m !== "object" || m === null || (m as { jsonrpc?: unknown }).jsonrpc !== "2.0") {
    throw new Error(`not a JSON-RPC 2.0 message: ${JSON.stringify(m)?.slice(0, 200)}`);
  }
  return m as JSONRPCMessage;
}

function readText(res: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      text += chunk;
    });
    res.on("error", reject);
    res.on("end", () => resolve(text));
    res.on("close", () => {
      if (!res.complete) reject(new Error("the answer broke off"));
    });
  });
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
