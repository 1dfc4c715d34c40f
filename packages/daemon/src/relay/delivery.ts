/**
 * Delivery tracking: what is known of one request on its way to the relay (sent? refused before
 * it left? answered with an HTTP error that means it never ran? lost after it may have run?),
 * carried through the SDK by AsyncLocalStorage and filled in by a fetch wrapper
 * (`withDeliveryTracking`) and by watching the SSE response body.
 */
import { extractWWWAuthenticateParams } from "@modelcontextprotocol/sdk/client/auth.js";
import type { Middleware } from "@modelcontextprotocol/sdk/client/middleware.js";
import type { ServerRequest } from "../contracts.js";
import type { AuthChallenge } from "./auth/manager.js";
import { networkErrorCode } from "./resolver.js";

/** HTTP statuses that mean the server did not execute the request. */
export const NOT_EXECUTED = new Set([400, 401, 403, 404, 405, 406, 408, 409, 413, 415, 422, 429, 503]);
/** Network errors that happen before the request could be written. */
export const CONNECT_ERRORS = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EADDRNOTAVAIL",
  "UND_ERR_CONNECT_TIMEOUT",
  "CERT_HAS_EXPIRED",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

export type Phase = "none" | "sent" | "refused" | "rejected" | "lost" | "accepted";
export type AbortReason = "timeout" | "caller" | "stream";

/** Per-request bookkeeping, carried through the SDK by AsyncLocalStorage. */
export class RequestCtx {
  id: string | number | undefined;
  phase: Phase = "none";
  status: number | undefined;
  challenge: AuthChallenge | undefined;
  usedToken: string | undefined;
  netCode: string | undefined;
  abortReason: AbortReason | undefined;
  settled = false;
  readonly ac = new AbortController();
  readonly startedAt = Date.now();
  private graceTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly method: string,
    readonly retryable: boolean,
    readonly onServerRequest?: (req: ServerRequest) => Promise<unknown>,
  ) {}

  abort(reason: AbortReason): void {
    if (this.settled || this.abortReason) return;
    this.abortReason = reason;
    this.ac.abort(new Error(`request ${reason}`));
  }

  /** The response stream ended or broke; give the SDK a moment to deliver what it already got. */
  streamEnded(graceMs: number, broken: boolean): void {
    if (this.settled || this.graceTimer) return;
    if (broken) this.phase = "lost";
    this.graceTimer = setTimeout(() => {
      if (!this.settled) {
        this.phase = "lost";
        this.abort("stream");
      }
    }, graceMs);
  }

  settle(): void {
    this.settled = true;
    if (this.graceTimer) clearTimeout(this.graceTimer);
  }

  /** True when the request may have reached the server (and so may have run). */
  get mayHaveRun(): boolean {
    return mayHaveRun(this.phase);
  }
}

/** True when a request that got as far as `phase` may have reached the server (and so may have run). */
export function mayHaveRun(phase: Phase): boolean {
  return phase === "sent" || phase === "lost" || phase === "accepted";
}

/** Wraps an SSE response body so that its end or failure is noticed for `ctx`. */
export function watchBody(res: Response, ctx: RequestCtx, graceMs: number): Response {
  const reader = res.body!.getReader();
  // SSE resumability (SEP-1699): a stream that carried an event id and then closed gracefully is
  // resumed by the SDK with GET + Last-Event-ID after the server's `retry` (else its own backoff,
  // 1 s then 1.5 s); the response arrives there. Give it that long before calling the request lost.
  const sse = {
    decoder: new TextDecoder(),
    partial: "",
    sawId: false,
    retryMs: undefined as number | undefined,
  };
  const scan = (chunk: Uint8Array) => {
    const lines = (sse.partial + sse.decoder.decode(chunk, { stream: true })).split(/\r\n|\r|\n/);
    sse.partial = lines.pop() ?? "";
    for (const line of lines) {
      if (/^id:\s*\S/.test(line)) sse.sawId = true;
      const retry = /^retry:\s*(\d+)\s*$/.exec(line);
      if (retry) sse.retryMs = Number(retry[1]);
    }
  };
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await reader.read();
        if (done) {
          controller.close();
          const resumeMs = sse.sawId ? 2 * (sse.retryMs ?? 1_250) + 2_000 : 0;
          ctx.streamEnded(Math.max(graceMs, resumeMs), false);
        } else {
          scan(value);
          controller.enqueue(value);
        }
      } catch (err) {
        ctx.netCode = networkErrorCode(err) ?? "stream broken";
        ctx.streamEnded(graceMs, true);
        controller.error(err);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
}

/**
 * The fetch wrapper that records, for the request of the current context (`current()`), what
 * became of the POST carrying it: refused before it left, rejected with a status that means it
 * never ran, lost, or accepted (then its SSE body is watched). It also notes the Bearer token the
 * POST carried (a 401 is answered for that token) and a 401/403's WWW-Authenticate parameters.
 * Other requests (GET streams, notifications, another context's) pass untouched.
 */
export function withDeliveryTracking(current: () => RequestCtx | undefined, graceMs: number): Middleware {
  return (next) => async (input, init) => {
    const ctx = current();
    const method = (init?.method ?? "GET").toUpperCase();
    if (ctx === undefined || method !== "POST" || !claim(ctx, init?.body)) return next(input, init);
    ctx.usedToken = bearerOf(init?.headers);
    ctx.phase = "sent";
    // The request's own signal, not the transport's: the SDK hands every POST the transport's
    // long-lived signal, on which Node 20's fetch leaves one listener per request until it is
    // garbage-collected (thousands of listeners, each new request scanning them all). The request
    // is aborted with its own signal (cancel, timeout, stop: RequestCtx.abort) anyway.
    let res: Response;
    try {
      res = await next(input, { ...init, signal: ctx.ac.signal });
    } catch (err) {
      const code = networkErrorCode(err);
      ctx.netCode = code;
      if (!ctx.abortReason && code && CONNECT_ERRORS.has(code)) ctx.phase = "refused";
      else ctx.phase = "lost";
      throw err;
    }
    if (res.status === 401 || res.status === 403) ctx.challenge = extractWWWAuthenticateParams(res);
    ctx.status = res.status;
    if (!res.ok) {
      ctx.phase = NOT_EXECUTED.has(res.status) ? "rejected" : "lost";
      return res;
    }
    ctx.phase = "accepted";
    if (!res.body || !/text\/event-stream/i.test(res.headers.get("content-type") ?? "")) return res;
    return watchBody(res, ctx, graceMs);
  };
}

/** Binds the first JSON-RPC request POSTed in `ctx` to it; true when `body` is that request. */
function claim(ctx: RequestCtx, body: unknown): boolean {
  if (typeof body !== "string") return false;
  let msg: unknown;
  try {
    msg = JSON.parse(body);
  } catch {
    return false;
  }
  if (!msg || typeof msg !== "object" || Array.isArray(msg)) return false;
  const m = msg as { id?: unknown; method?: unknown };
  if (typeof m.method !== "string" || (typeof m.id !== "string" && typeof m.id !== "number")) return false;
  if (ctx.id === undefined && m.method === ctx.method) ctx.id = m.id;
  return ctx.id === m.id;
}

/** The Bearer token in `headers`, if any. */
function bearerOf(headers: RequestInit["headers"]): string | undefined {
  const auth = new Headers(headers).get("authorization");
  return auth?.startsWith("Bearer ") ? auth.slice("Bearer ".length) : undefined;
}
