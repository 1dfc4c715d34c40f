/**
 * The failure classifier: given what is known of a request that failed (how far it got — see
 * delivery.ts —, the HTTP status, the network error, why it was aborted, whether the caller may
 * have it sent again), decide what it means and what to do. Pure: no I/O, no state; the caller
 * performs the actions the decision names (drop the connection, re-resolve, reset the HTTP pool,
 * ping the session, answer a 401/403, resend).
 *
 * The rule it keeps: a request that may have reached the server is sent again only when the caller
 * said it may be (a read); a write is then OUTCOME_UNKNOWN, never repeated. A request refused before
 * it left, or answered with a status that means it never ran, is not delivered and may go again.
 */
import { McpError } from "@loxmcp/common";
import { UpstreamError } from "../contracts.js";
import { AuthError } from "./auth/errors.js";
import { cancelled, describe, describeCall, stripMcpPrefix, timeoutError } from "./call-errors.js";
import { type AbortReason, mayHaveRun, type Phase } from "./delivery.js";
import { isBrokenConnection } from "./http.js";
import { safeUrl } from "./url.js";

/** Statuses after which we re-resolve the relay. */
const RELAY_GONE = new Set([502, 503, 504]);
/** Statuses that mean the relay refused the request as it is (malformed, or 403 without a scope to ask for). */
const REFUSED = new Set([400, 403, 405, 406, 415, 422]);
/**
 * Connect errors that mean this machine has no network (yet), not that the relay is gone: right
 * after a wake they are waited out instead of asking connect for another relay.
 */
const NETWORK_DOWN = new Set([
  "ENETUNREACH",
  "ENETDOWN",
  "EHOSTUNREACH",
  "EADDRNOTAVAIL",
  "EAI_AGAIN",
  "ENOTFOUND",
]);
/** After a wake, "no network" is waited out this long; then it counts as the relay being unreachable. */
const NETWORK_GRACE_MS = 60_000;

/** What delivery tracking knows of one request (a `RequestCtx` fits). */
export interface Attempt {
  method: string;
  /** The caller said it may be sent again after it may have run (a read). */
  retryable: boolean;
  phase: Phase;
  status?: number | undefined;
  netCode?: string | undefined;
  abortReason?: AbortReason | undefined;
  /** The WWW-Authenticate parameters of a 401/403 (`insufficient_scope` asks for a step-up). */
  challenge?: { error?: string } | undefined;
}

export interface Failure {
  /** A request (a caller's, or one of the session's own), a health ping, or the ping after a wake. */
  purpose: "request" | "ping" | "wake";
  attempt: Attempt;
  /** What the SDK threw. */
  error: unknown;
  /** How long the request ran (named in a timeout). */
  elapsedMs: number;
  /** The relay's MCP endpoint it went to (named in reasons). */
  entry: string;
  /** Its connection is still the session's current one (not replaced, not retired). */
  current: boolean;
  /** Login is impossible (the auth manager's failed reason), if it is. */
  loginImpossible?: string | undefined;
  /** The request's params: an outcome-unknown message names the tool called. */
  params?: unknown;
  /** The wake check: time since the wake, and the ping's own timeout. */
  sinceWakeMs?: number;
  pingTimeoutMs?: number;
}

/** What to do about the connection the failure happened on. */
export interface Actions {
  /** Retire the connection and open a new session; `reresolve`: ask connect for the current relay first. */
  drop?: { reresolve: boolean; reason: string };
  /** Drop the pooled HTTP connections (a kept-alive one broke). */
  resetPool?: true;
  /** Ping the session now (a write broke before any answer and is not resent, so nothing else checks). */
  checkSession?: true;
}

export type Decision = Actions &
  (
    | {
        /** The request ends with `error`. */
        outcome: "cancelled" | "timeout" | "unavailable" | "remote_error" | "outcome_unknown";
        error: UpstreamError;
      }
    /** Login is impossible: enter auth_failed; the request ends with its error. */
    | { outcome: "auth_failed"; reason: string }
    /** 401 (refresh / log in) or 403 insufficient_scope (step up): it never ran; answer it, then resend. */
    | { outcome: "reauth" }
    | { outcome: "step_up" }
    /**
     * Recover the connection, then send it again: `not_delivered` never reached the server;
     * `resend_read` may have, and the caller allowed that.
     */
    | { outcome: "not_delivered"; reason: string }
    | { outcome: "resend_read"; reason: string }
    /** The wake check: the session expired while we slept (404): open a new one quietly. */
    | { outcome: "session_expired" }
    /** The wake check: not ready yet (no network, the token endpoint busy): wait, check again. */
    | { outcome: "wait"; reason: string }
  );

/** What a request or a health ping can come to (the wake check's own outcomes aside). */
export type RequestDecision = Exclude<Decision, { outcome: "session_expired" | "wait" }>;

export function classifyFailure(f: Failure & { purpose: "request" | "ping" }): RequestDecision;
export function classifyFailure(f: Failure): Decision;
export function classifyFailure(f: Failure): Decision {
  const a = f.attempt;
  const method = a.method;
  const ran = mayHaveRun(a.phase);
  const where = `the relay's MCP endpoint (${safeUrl(f.entry)})`;
  if (f.purpose === "wake") {
    const early = wakeCheck(f, where);
    if (early) return early;
  }
  if (a.abortReason === "caller") return { outcome: "cancelled", error: cancelled(method, ran) };
  if (a.abortReason === "timeout") {
    const error = timeoutError(method, f.elapsedMs, ran, a.retryable);
    if (f.purpose === "ping") return { outcome: "timeout", error, drop: network("ping timed out") };
    return { outcome: "timeout", error };
  }
  if (f.error instanceof AuthError) {
    // Getting a token failed before anything was sent.
    if (f.loginImpossible) return { outcome: "auth_failed", reason: f.loginImpossible };
    return unavailable(`${f.error.message}; ${method} was not sent`);
  }
  // A JSON-RPC error answered by the server: pass it through.
  if (f.error instanceof McpError && a.phase === "accepted" && !a.abortReason) {
    const e = f.error;
    return {
      outcome: "remote_error",
      error: new UpstreamError("REMOTE_ERROR", stripMcpPrefix(e.message, e.code), e.code, e.data),
    };
  }
  if (a.phase === "rejected") {
    const status = a.status ?? 0;
    if (status === 401) return { outcome: "reauth" };
    if (status === 403 && a.challenge?.error === "insufficient_scope") return { outcome: "step_up" };
    if (status === 429) {
      // The relay asks us to slow down: the session is fine, re-resolving would only spend
      // connect's own rate limit. Nothing ran; the caller may try again later.
      return unavailable(
        `the Loxone relay is rate limiting requests (HTTP 429); ${method} was not sent, try again in a moment`,
      );
    }
    if (status === 404) {
      return {
        outcome: "not_delivered",
        reason: "session expired (404)",
        drop: {
          reresolve: false,
          reason: `the relay forgot our MCP session (HTTP 404 from ${safeUrl(f.entry)})`,
        },
      };
    }
    if (REFUSED.has(status)) {
      const why = status === 403 ? "forbidden" : "refused as malformed";
      return {
        outcome: "remote_error",
        error: new UpstreamError(
          "REMOTE_ERROR",
          `the relay ${why} ${method} (HTTP ${status}); it did not run`,
          status,
        ),
      };
    }
    return {
      outcome: "not_delivered",
      reason: `HTTP ${status}`,
      drop: network(`${where} answered HTTP ${status}`),
    };
  }
  if (a.phase === "refused") {
    return {
      outcome: "not_delivered",
      reason: a.netCode ?? "connection refused",
      drop: network(`cannot connect to ${where} (${a.netCode ?? "network error"})`),
    };
  }
  if (a.phase === "none") {
    // Never reached fetch: the SDK refused (closed client) or the session was replaced.
    const reason = describe(f.error);
    if (!f.current) return { outcome: "not_delivered", reason };
    return { outcome: "not_delivered", reason, drop: network(`could not send: ${reason}`) };
  }
  // sent / accepted / lost: it may have run.
  if (a.phase === "lost" && a.status === undefined && isBrokenConnection(a.netCode)) {
    // The connection broke before any answer: most often a pooled keep-alive connection the relay
    // had closed. That says nothing about the relay or the session, so never re-resolve for it:
    // drop the pooled connections and check the session on a new connection (a resent read does
    // that; a write is not resent, so a ping does). A relay that is really gone then refuses the
    // new connection, and that is what recovery acts on.
    const reason = `the connection to ${where} broke before any answer (${a.netCode})`;
    const actions: Actions = { resetPool: true };
    if (!a.retryable && f.current) actions.checkSession = true;
    return { ...mayResend(f, reason), ...actions };
  }
  const status = a.status;
  const why =
    a.phase === "lost" && status && status >= 500
      ? `${where} answered HTTP ${status}`
      : `the connection to ${where} broke (${a.netCode ?? describe(f.error)})`;
  return { ...mayResend(f, why), drop: network(why) };
}

/** The checks of the ping after a wake that come before (and replace) the usual ones. */
function wakeCheck(f: Failure, where: string): Decision | undefined {
  const a = f.attempt;
  if (f.error instanceof AuthError) {
    if (f.loginImpossible) return { outcome: "auth_failed", reason: f.loginImpossible };
    return { outcome: "wait", reason: describe(f.error) };
  }
  if (a.abortReason === "timeout") {
    const sec = Math.round((f.pingTimeoutMs ?? f.elapsedMs) / 1000);
    return {
      outcome: "timeout",
      error: timeoutError(a.method, f.elapsedMs, mayHaveRun(a.phase), a.retryable),
      drop: network(`${where} did not answer a ping within ${sec} s after the wake`),
    };
  }
  // It expired while we slept: a new one, opened before anything waiting is sent.
  if (a.phase === "rejected" && a.status === 404) return { outcome: "session_expired" };
  // No network yet (Wi-Fi still joining): wait for it rather than ask connect for another relay.
  if (
    a.phase === "refused" &&
    NETWORK_DOWN.has(a.netCode ?? "") &&
    (f.sinceWakeMs ?? Number.POSITIVE_INFINITY) < NETWORK_GRACE_MS
  ) {
    return { outcome: "wait", reason: `no network yet (${a.netCode} for ${safeUrl(f.entry)})` };
  }
  return undefined;
}

/** It may have run: resent only when the caller allowed it; otherwise outcome unknown. */
function mayResend(f: Failure, reason: string): Decision {
  if (f.attempt.retryable) return { outcome: "resend_read", reason };
  const method = f.attempt.method;
  return {
    outcome: "outcome_unknown",
    error: new UpstreamError(
      "OUTCOME_UNKNOWN",
      `the connection to the Loxone relay failed while ${describeCall(method, f.params)} was in flight: outcome unknown: it may or may not have run; not retried automatically. Check the device state before trying again`,
      undefined,
      { method, cause: "connection" },
    ),
  };
}

function unavailable(message: string): Decision {
  return { outcome: "unavailable", error: new UpstreamError("UNAVAILABLE", message) };
}

function network(reason: string): { reresolve: true; reason: string } {
  return { reresolve: true, reason };
}

// ------------------------------------------------------------------ opening a session

/** Opening a session failed; `relayGone`: ask connect for the current relay before the next try. */
export class ConnectError extends Error {
  constructor(
    message: string,
    readonly relayGone: boolean,
  ) {
    super(message);
    this.name = "ConnectError";
  }
}

export interface InitFailure {
  attempt: Attempt;
  error: unknown;
  entry: string;
  /** How often this attempt already initialized again after a broken connection / answered a 401/403. */
  brokenTries: number;
  authTries: number;
}

export type InitDecision =
  /** Getting a token failed: that error is the answer, as is. */
  | { outcome: "token_error" }
  /** A pooled connection the relay had closed: drop the pool, initialize again on a new connection. */
  | { outcome: "retry"; resetPool: true }
  /** 401 (refresh / log in) or 403 insufficient_scope (step up), then initialize again. */
  | { outcome: "reauth" | "step_up" }
  /** 403 with nothing to ask for (still announced as authenticating, like any 401/403), or any other failure. */
  | { outcome: "forbidden" | "fail"; error: ConnectError };

/** What a failed initialize means (initialize only opens a session: it may always be sent again). */
export function classifyInitFailure(f: InitFailure): InitDecision {
  const a = f.attempt;
  if (f.error instanceof AuthError) return { outcome: "token_error" };
  if (
    a.phase === "lost" &&
    a.status === undefined &&
    isBrokenConnection(a.netCode) &&
    !a.abortReason &&
    f.brokenTries < 2
  ) {
    // Never a reason to ask connect for another relay.
    return { outcome: "retry", resetPool: true };
  }
  if (a.phase === "rejected" && (a.status === 401 || a.status === 403) && f.authTries < 2) {
    if (a.status === 403 && a.challenge?.error === "insufficient_scope") return { outcome: "step_up" };
    if (a.status === 401) return { outcome: "reauth" };
    return {
      outcome: "forbidden",
      error: new ConnectError(`the relay refused the session (HTTP 403)`, false),
    };
  }
  return { outcome: "fail", error: initError(f) };
}

function initError(f: InitFailure): ConnectError {
  const a = f.attempt;
  const at = safeUrl(f.entry);
  if (a.abortReason === "timeout") return new ConnectError(`initialize at ${at} timed out`, true);
  if (a.phase === "refused") {
    return new ConnectError(`cannot connect to ${at} (${a.netCode ?? "network error"})`, true);
  }
  if (a.phase === "rejected" || (a.status !== undefined && a.status >= 400)) {
    const status = a.status ?? 0;
    return new ConnectError(
      `the relay at ${at} answered HTTP ${status} to initialize`,
      RELAY_GONE.has(status) || status === 404,
    );
  }
  if (f.error instanceof McpError && a.phase === "accepted") {
    return new ConnectError(
      `the server refused initialize: ${stripMcpPrefix(f.error.message, f.error.code)}`,
      false,
    );
  }
  return new ConnectError(`initialize at ${at} failed (${a.netCode ?? describe(f.error)})`, true);
}
