/**
 * The connection lifecycle of the one upstream session: open a session (session-opener.ts: resolve
 * the relay entry, get a token, initialize), fetch the tool list, then `ready`; a dropped session is
 * re-opened (after a re-resolve when the relay may be gone) with jittered backoff, a session that
 * expired during a sleep renewed quietly; login impossible pauses everything in `auth_failed`. It
 * owns the session's state and announces every change (`state` event); requests wait for a ready
 * session in readiness.ts, the health checks (ping, wake) are in health.ts.
 */

import type { EventEmitter } from "node:events";
import { withTimeout } from "@loxmcp/common";
import { type InitializeInfo, UpstreamError, type UpstreamState, type UpstreamStatus } from "../contracts.js";
import { AuthError } from "./auth/errors.js";
import { describe } from "./call-errors.js";
import { type Conn, closeConn, initializeInfoOf, shortId } from "./conn.js";
import { ConnectError } from "./failures.js";
import { retryAtOf } from "./resolver.js";
import { SessionOpener, type SessionOpenerOptions } from "./session-opener.js";
import { safeUrl } from "./url.js";

/** Why a session is dropped: names what comes next (and "network" re-resolves first). */
export type DropKind = "session" | "network" | "auth";

export interface LifecycleOptions extends Omit<SessionOpenerOptions, "handlers" | "opts"> {
  opts: SessionOpenerOptions["opts"] & { backoffMinMs?: number; backoffMaxMs?: number };
  /** Where `state` is announced (the Upstream's own emitter). */
  events: Pick<EventEmitter, "emit" | "on" | "off">;
  hooks: {
    /** The status announced with each state change. */
    status(): UpstreamStatus;
    /** On a new session, after initialize and before `ready` (the tool list). */
    opened(conn: Conn): Promise<void>;
    /** The server said the tool list changed. */
    toolListChanged(): Promise<void>;
    serverRequest(method: string, params: unknown): Promise<never>;
  };
}

export class Lifecycle {
  private _state: UpstreamState = "starting";
  private _reason: string | undefined;
  private _entry: string | undefined;
  private _conn: Conn | undefined;
  private _info: InitializeInfo | undefined;
  private _started = false;
  private _stopped = false;
  private attempt: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private nextAttemptAt: number | undefined;
  private failures = 0;
  private connectedOnce = false;
  /** Sessions re-established after the first. */
  reconnects = 0;
  /** When the session last answered (or was opened). */
  lastActivity = 0;
  /** The check after a wake (health.ts), while it runs: requests wait for it before sending. */
  wakeFlight: Promise<void> | undefined;
  /** A session renewed by the wake flight: connect without announcing `connecting`. */
  quiet = false;

  private readonly opener: SessionOpener;

  constructor(private readonly o: LifecycleOptions) {
    const { log, hooks } = o;
    this.opener = new SessionOpener({
      ...o,
      handlers: {
        error: (conn, err) => {
          log.debug({ conn: conn.id, error: describe(err) }, "transport reported an error");
          // The SDK gave up resuming the server's notification stream (GET SSE): without it we would
          // silently miss tools/list_changed and other notifications, so start a fresh session.
          if (/Maximum reconnection attempts/.test(describe(err)) && this.isCurrent(conn)) {
            this.dropConn(conn, "session", "the server's notification stream could not be resumed");
          }
        },
        toolListChanged: async (conn) => {
          if (this._conn !== conn) return;
          log.info("server says the tool list changed; fetching it again");
          await hooks.toolListChanged();
        },
        notification: (n) => o.events.emit("notification", n),
        serverRequest: (method, params) => hooks.serverRequest(method, params),
      },
    });
  }

  get state(): UpstreamState {
    return this._state;
  }
  get reason(): string | undefined {
    return this._reason;
  }
  get entry(): string | undefined {
    return this._entry;
  }
  /** The ready (or being set up) session, if any. */
  get conn(): Conn | undefined {
    return this._conn;
  }
  get info(): InitializeInfo | undefined {
    return this._info;
  }
  get started(): boolean {
    return this._started;
  }
  get stopped(): boolean {
    return this._stopped;
  }

  /** A connect attempt is running. */
  get connecting(): boolean {
    return this.attempt !== undefined;
  }
  /** When the next connect attempt is scheduled, if it is. */
  get retryAt(): number | undefined {
    return this.nextAttemptAt;
  }

  /** (A method, so that TypeScript does not narrow the state across awaits.) */
  authFailed(): boolean {
    return this._state === "auth_failed";
  }

  /** `conn` is the session's current connection and still usable. */
  isCurrent(conn: Conn): boolean {
    return this._conn === conn && !conn.retired;
  }

  /** Marks it started (`kick(0)` then opens the first session). */
  markStarted(): void {
    this._started = true;
  }

  /** First step of stopping: nothing new starts. */
  stopping(): void {
    this._stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  /** Last step: announce `stopped`, end the session, the connect attempt and the HTTP pool. */
  async close(): Promise<void> {
    const conn = this._conn;
    this._conn = undefined;
    this.setState("stopped", "daemon stopping");
    if (conn) {
      await withTimeout(
        conn.transport.terminateSession().catch(() => {}),
        2_000,
        () => undefined,
      );
      await conn.client.close().catch(() => {});
    }
    // A connect attempt in progress notices `stopped` and gives up; do not wait long for it.
    if (this.attempt)
      await withTimeout(
        this.attempt.catch(() => {}),
        2_000,
        () => undefined,
      );
    await withTimeout(this.o.http.close(), 2_000, () => undefined);
  }

  /** Any answer proves the path works: recovery after the next failure starts without delay. */
  answered(): void {
    this.lastActivity = Date.now();
    this.failures = 0;
  }

  /** Backoff counted before a sleep says nothing about now. */
  forgetFailures(): void {
    this.failures = 0;
  }

  // ------------------------------------------------------------------ (re)connecting

  /** Starts a connect attempt now or after `delayMs`, unless one is running or scheduled. */
  kick(delayMs: number): void {
    if (this._stopped || this.attempt || this._conn || this._state === "auth_failed") return;
    if (this.retryTimer) return;
    if (delayMs > 0) {
      this.nextAttemptAt = Date.now() + delayMs;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.nextAttemptAt = undefined;
        this.kick(0);
      }, delayMs);
      return;
    }
    this.nextAttemptAt = undefined;
    // Outside any request context: the session outlives the request that noticed the failure.
    const attempt = this.o.als.exit(() => this.establish());
    this.attempt = attempt;
    attempt.then(
      () => {
        this.attempt = undefined;
        if (this._stopped || this._conn || this._state === "auth_failed") return;
        // Connected, then lost it again during setup (e.g. tools/list failed): back off.
        this.onConnectFailed(new Error(this._reason ?? "the new session failed right away"));
      },
      (err: unknown) => {
        this.attempt = undefined;
        this.onConnectFailed(err);
      },
    );
  }

  /** Starts a connect attempt now, replacing a pending backoff timer. */
  reconnectNow(): void {
    if (this._stopped || this.attempt || this._conn || this._state === "auth_failed") return;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.nextAttemptAt = undefined;
    }
    this.kick(0);
  }

  private establish(): Promise<void> {
    return this.opener.open({
      previousEntry: this._entry,
      resolved: (entry) => {
        this._entry = entry;
      },
      progress: (state) => this.progress(state),
      stopped: () => this._stopped,
      opened: (conn) => this.opened(conn),
    });
  }

  /** A new session answered initialize: fetch the tool list, then `ready`. */
  private async opened(conn: Conn): Promise<void> {
    const entry = conn.entry;
    conn.startedAt = Date.now();
    this.lastActivity = conn.startedAt;
    this._conn = conn;
    this._info = initializeInfoOf(conn);
    const reconnect = this.connectedOnce;
    this.connectedOnce = true;
    if (reconnect) this.reconnects++;
    this.o.log.info(
      { entry: safeUrl(entry), sessionId: shortId(conn.transport.sessionId), reconnect },
      reconnect
        ? "upstream session re-established; refreshing the tool list"
        : "upstream session established",
    );
    try {
      await this.o.hooks.opened(conn);
    } catch (err) {
      this.o.log.warn(
        { error: describe(err) },
        "tools/list failed right after initialize; the session stays up",
      );
    }
    if (this._conn !== conn) return; // failed meanwhile; recovery is already running
    this.o.resolver?.confirm(entry);
    this.setState("ready", undefined);
    if (reconnect) this.o.events.emit("toolsChanged");
  }

  private onConnectFailed(err: unknown): void {
    if (this._stopped) return;
    const { auth, resolver, opts } = this.o;
    if (err instanceof AuthError && auth.failedReason) {
      this.enterAuthFailed(auth.failedReason);
      return;
    }
    this.failures++;
    let delay = backoff(this.failures, opts.backoffMinMs ?? 500, opts.backoffMaxMs ?? 30_000);
    let reason = describe(err);
    const retryAt = retryAtOf(err);
    if (retryAt !== undefined) delay = Math.max(delay, retryAt - Date.now());
    if (err instanceof ConnectError && err.relayGone && resolver && this._entry) {
      reason += resolver.invalidate(this._entry)
        ? "; will ask connect for the current relay"
        : "; connect named this relay moments ago, trying it again before asking connect again";
    }
    // Schedule first, then announce: whoever waits on the state sees when the next try is.
    this.kick(delay);
    this.setState("degraded", reason);
    this.o.log.warn(
      { reason, retryInMs: Math.round(delay), failures: this.failures },
      "could not (re)connect to the upstream; retrying after a pause",
    );
  }

  // ------------------------------------------------------------------ losing the session

  /** Marks `conn` dead (once), starts recovery. In-flight requests on it finish on their own. */
  dropConn(conn: Conn, kind: DropKind, reason: string): void {
    if (conn.retired) return;
    conn.retired = true;
    if (conn.inflight === 0) void closeConn(conn);
    if (this._conn !== conn) return;
    this._conn = undefined;
    if (this._stopped) return;
    const { resolver, opts } = this.o;
    if (kind === "network" && resolver) resolver.invalidate(conn.entry);
    const next =
      kind === "session"
        ? "opening a new session"
        : kind === "auth"
          ? "logging in again"
          : resolver
            ? "asking connect for the current relay, then reconnecting"
            : "reconnecting";
    // The first attempt after a session that worked for a while goes at once; a session that
    // keeps dying young backs off (never a tight loop). Every successful answer resets the count.
    const young = Date.now() - conn.startedAt < 5_000;
    if (young) this.failures++;
    else this.failures = 0;
    const delay =
      young && this.failures > 1
        ? backoff(this.failures - 1, opts.backoffMinMs ?? 500, opts.backoffMaxMs ?? 30_000)
        : 0;
    this.o.log.warn(
      { entry: safeUrl(conn.entry), reason, retryInMs: Math.round(delay) },
      `upstream session lost; ${next}`,
    );
    this.setState("degraded", reason);
    this.kick(delay);
  }

  /**
   * The session expired while we slept (404): open a new one on the same entry without passing
   * through `connecting` (requests are held by the wake flight meanwhile). A failure is reported
   * as usual (`degraded`, the reconnect loop with backoff).
   */
  async renew(conn: Conn): Promise<void> {
    if (this._conn !== conn || conn.retired || this._stopped) return;
    this.retire(conn);
    this.o.log.info(
      { entry: safeUrl(conn.entry) },
      "the relay forgot our MCP session while we slept (HTTP 404); opening a new one before anything waiting is sent",
    );
    this.quiet = true;
    try {
      this.kick(0);
      await this.attempt?.catch(() => {});
    } finally {
      this.quiet = false;
    }
  }

  /** Login is impossible: pause in `auth_failed` until relogin or a config change. */
  enterAuthFailed(reason: string): void {
    if (this._state === "auth_failed") return;
    const conn = this._conn;
    if (conn) this.retire(conn);
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.o.log.error(
      { reason },
      "login impossible; upstream paused in auth_failed until relogin or a config change",
    );
    this.setState("auth_failed", reason);
  }

  authFailedError(): UpstreamError {
    return new UpstreamError(
      "AUTH_FAILED",
      `${this._reason ?? this.o.auth.failedReason ?? "login failed"}; fix the credentials, then run \`loxmcp relogin\``,
    );
  }

  /** Takes the current `conn` out of use (closed once nothing runs on it), without recovery. */
  private retire(conn: Conn): void {
    conn.retired = true;
    this._conn = undefined;
    if (conn.inflight === 0) void closeConn(conn);
  }

  // ------------------------------------------------------------------ state

  /** A step of (re)connecting; not announced while the wake flight renews the session. */
  private progress(state: UpstreamState): void {
    if (this.quiet && this._state === "ready") return;
    this.setState(state, this._reason);
  }

  setState(state: UpstreamState, reason: string | undefined): void {
    const changed = state !== this._state || reason !== this._reason;
    this._state = state;
    this._reason = reason;
    if (!changed) return;
    if (state === "ready") this.o.log.info({ entry: this._entry && safeUrl(this._entry) }, "upstream ready");
    this.o.events.emit("state", this.o.hooks.status());
  }
}

function backoff(failures: number, minMs: number, maxMs: number): number {
  if (failures <= 1) return minMs * (0.5 + Math.random() / 2);
  const exp = Math.min(maxMs, minMs * 2 ** (failures - 1));
  return exp * (0.5 + Math.random() / 2);
}
