/**
 * The one upstream MCP session: an SDK `Client` over `StreamableHTTPClientTransport` to the
 * resolved relay entry (or a direct URL), with the Bearer token of the AuthManager.
 *
 * Recovery: 401 ⇒ refresh (single flight) and resend (a 401 never ran); 404 / unknown session ⇒
 * new transport + Client + initialize (transports are single-use); network error, 502/503/504 ⇒
 * re-resolve, then reconnect, with jittered backoff. A request that may have reached the server
 * when the connection failed is resent only when the caller says it is retryable; otherwise it
 * fails with OUTCOME_UNKNOWN.
 *
 * How we know whether a request reached the server: every request runs inside an
 * AsyncLocalStorage context; our fetch wrapper (which the SDK transport calls from within that
 * context) records whether the POST carrying it failed before connecting, was rejected with an
 * HTTP status that means "not executed", or was accepted and then lost. The same context tells
 * which request a server→client request (elicitation, sampling, roots) arrived for.
 *
 * Sleep and wake (docs/upstream.md, "Sleep and wake"): a wake (timers far too late, or the wall
 * clock ahead of the monotonic one) is checked for before anything is sent; it replaces the HTTP
 * pool first, then one flight refreshes the token if due and pings the session (renewing it on a
 * 404) while requests wait for it. A connection that breaks before any answer never re-resolves.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { EventEmitter } from "node:events";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { OAuthClientInformationMixed } from "@modelcontextprotocol/sdk/shared/auth.js";
import type { FetchLike } from "@modelcontextprotocol/sdk/shared/transport.js";
import {
  ErrorCode,
  McpError,
  ProgressNotificationSchema,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import type { Logger } from "pino";
import { z } from "zod";
import {
  type InitializeInfo,
  type ServerRequest,
  type Upstream,
  UpstreamError,
  type UpstreamEvents,
  type UpstreamOptions,
  type UpstreamRequestOptions,
  type UpstreamState,
  type UpstreamStatus,
} from "../contracts.js";
import type { TokenStore } from "../store/tokens.js";
import { withBearer } from "./auth/bearer.js";
import { AuthError } from "./auth/errors.js";
import { AuthManager } from "./auth/manager.js";
import { cancelled, describe, timeoutError } from "./call-errors.js";
import { RequestCtx, withDeliveryTracking } from "./delivery.js";
import {
  ConnectError,
  classifyFailure,
  classifyInitFailure,
  type Decision,
  type Failure,
} from "./failures.js";
import { HttpPool } from "./http.js";
import { RelayResolver, type ResolverOptions, retryAtOf } from "./resolver.js";
import { requireSecureUrl, safeUrl } from "./url.js";
import { type Wake, type WakeClock, WakeDetector } from "./wake.js";

/** Extra knobs on top of the shared `UpstreamOptions` (all optional). */
export interface UpstreamSessionOptions extends UpstreamOptions {
  /** clientInfo sent in initialize (default loxmcpd/0.1.0). */
  clientInfo?: { name: string; version: string };
  /** Client capabilities declared upstream (default: elicitation + sampling, routed to the causing client). */
  clientCapabilities?: Record<string, unknown>;
  /** Resolver: longest Retry-After waited inline (default 15 s). */
  maxRetryAfterMs?: number;
  /** Resolver: connect's rate budget and schedules (defaults in resolver.ts; for tests). */
  resolver?: Pick<
    ResolverOptions,
    "budgetPerMinute" | "notFoundRetryMs" | "notFoundMaxRetryMs" | "minReresolveMs"
  >;
  /** Reconnect backoff: first delay and cap (defaults 500 ms, 30 s), jittered. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** OAuth: refresh this long before expiry (default 60 s, at most half the token lifetime). */
  refreshMarginMs?: number;
  redirectUri?: string;
  oauthClientName?: string;
  oauthScope?: string;
  tokenEndpointAuthMethod?: string;
  preRegisteredClient?: OAuthClientInformationMixed;
  /** How long after a lost response stream we wait for the response before declaring it lost (default 500 ms). */
  streamGraceMs?: number;
  /** Wake detection: the clocks compared (default wall = Date.now, monotonic = performance.now). */
  clock?: WakeClock;
  /** Wake detection: background check interval (default 1 s) and the gap that counts as a wake (default 4 s). */
  wakeTickMs?: number;
  wakeThresholdMs?: number;
}

const Passthrough = z.unknown();

interface Conn {
  id: number;
  client: Client;
  transport: StreamableHTTPClientTransport;
  entry: string;
  startedAt: number;
  inflight: number;
  retired: boolean;
}

type FailureKind = "session" | "network" | "auth";

export class UpstreamSession extends EventEmitter implements Upstream {
  private readonly log: Logger;
  private readonly auth: AuthManager;
  private readonly resolver: RelayResolver | undefined;
  private readonly als = new AsyncLocalStorage<RequestCtx>();
  private readonly key: string;
  private readonly direct: string | undefined;
  /** Our own connection pool for connect, the relay and the authorization server. */
  private readonly http: HttpPool;
  /** What the SDK transport sends with: the Bearer token, delivery tracking, our pool. */
  private readonly transportFetch: FetchLike;
  private readonly wake: WakeDetector;
  /** After a wake: refresh, check the session, then let requests go (one at a time). */
  private wakeFlight: Promise<void> | undefined;
  /** A session renewed by the wake flight: connect without announcing `connecting`. */
  private quiet = false;

  private state: UpstreamState = "starting";
  private reason: string | undefined;
  private entry: string | undefined;
  private conn: Conn | undefined;
  private connSeq = 0;
  private connecting: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryAt: number | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private pingFlight: Promise<void> | undefined;
  private toolsFlight: Promise<void> | undefined;
  private started = false;
  private stopped = false;
  private failures = 0;
  private connectedOnce = false;
  private info: InitializeInfo | undefined;
  private tools: { tools: Array<Record<string, unknown>> } | undefined;
  private lastActivity = 0;
  private lastPingAt: number | undefined;
  private readonly inflight = new Set<RequestCtx>();
  private readonly counters = { reconnects: 0, requests: 0, errors: 0 };
  /** The last step-up: the scope asked for and the access token it produced. */
  private lastStepUp: { scope: string; token: string | undefined } | undefined;

  constructor(
    private readonly opts: UpstreamSessionOptions,
    private readonly store: TokenStore,
  ) {
    super();
    // Every request waiting for recovery listens for the next state change: no fixed limit.
    this.setMaxListeners(0);
    this.log = opts.logger.child({ component: "upstream" });
    this.wake = new WakeDetector({
      onWake: (w) => this.onWake(w),
      ...(opts.clock ? { clock: opts.clock } : {}),
      ...(opts.wakeTickMs !== undefined ? { tickMs: opts.wakeTickMs } : {}),
      ...(opts.wakeThresholdMs !== undefined ? { thresholdMs: opts.wakeThresholdMs } : {}),
    });
    // Every request checks for a wake first: after one, the pool is replaced before a socket is picked.
    this.http = new HttpPool({
      ...(opts.fetch ? { fetch: opts.fetch } : {}),
      beforeRequest: () => this.wake.check(),
    });
    if (opts.upstreamUrl) {
      this.direct = requireSecureUrl("upstream URL (LOXMCP_UPSTREAM_URL)", opts.upstreamUrl).href;
      this.key = this.direct;
    } else {
      this.key = opts.serial;
      const resolverOptions: ConstructorParameters<typeof RelayResolver>[0] = {
        connectUrl: opts.connectUrl,
        serial: opts.serial,
        store,
        logger: opts.logger.child({ component: "resolver" }),
      };
      resolverOptions.fetch = this.http.fetch;
      if (opts.maxRetryAfterMs !== undefined) resolverOptions.maxRetryAfterMs = opts.maxRetryAfterMs;
      this.resolver = new RelayResolver({ ...resolverOptions, ...(opts.resolver ?? {}) });
    }
    const authOptions: ConstructorParameters<typeof AuthManager>[0] = {
      key: this.key,
      store,
      user: opts.user,
      password: opts.password,
      logger: opts.logger.child({ component: "auth" }),
      resourcePolicy: {
        ...(opts.serial ? { serial: opts.serial } : {}),
        ...(opts.allowedResources ? { allowedResources: opts.allowedResources } : {}),
      },
    };
    authOptions.fetch = this.http.fetch;
    authOptions.resetConnections = () => this.http.reset();
    if (opts.redirectUri !== undefined) authOptions.redirectUri = opts.redirectUri;
    if (opts.oauthClientName !== undefined) authOptions.clientName = opts.oauthClientName;
    if (opts.oauthScope !== undefined) authOptions.scope = opts.oauthScope;
    if (opts.tokenEndpointAuthMethod !== undefined)
      authOptions.tokenEndpointAuthMethod = opts.tokenEndpointAuthMethod;
    if (opts.preRegisteredClient !== undefined) authOptions.preRegisteredClient = opts.preRegisteredClient;
    if (opts.refreshMarginMs !== undefined) authOptions.refreshMarginMs = opts.refreshMarginMs;
    this.auth = new AuthManager(authOptions);
    const bearer = withBearer((url) => this.auth.accessToken(this.conn?.entry ?? this.entry ?? url));
    const tracking = withDeliveryTracking(() => this.als.getStore(), opts.streamGraceMs ?? 500);
    this.transportFetch = bearer(tracking(this.http.fetch));
  }

  // ------------------------------------------------------------------ public API

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.log.info(
      { upstream: this.direct ? safeUrl(this.direct) : `serial ${this.opts.serial}` },
      "starting upstream session",
    );
    this.wake.start();
    this.kick(0);
    this.pingTimer = setInterval(() => this.periodicPing(), Math.max(250, this.opts.pingIntervalMs));
    this.pingTimer.unref?.();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.wake.stop();
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.retryTimer = undefined;
    this.pingTimer = undefined;
    for (const ctx of this.inflight) ctx.abort("caller");
    const conn = this.conn;
    this.conn = undefined;
    this.setState("stopped", "daemon stopping");
    if (conn) {
      await withTimeout(
        conn.transport.terminateSession().catch(() => {}),
        2_000,
      );
      await conn.client.close().catch(() => {});
    }
    // A connect attempt in progress notices `stopped` and gives up; do not wait long for it.
    if (this.connecting)
      await withTimeout(
        this.connecting.catch(() => {}),
        2_000,
      );
    await withTimeout(this.http.close(), 2_000);
    this.log.info("upstream session stopped");
  }

  status(): UpstreamStatus {
    const s: UpstreamStatus = {
      state: this.state,
      counters: {
        logins: this.auth.counters.logins,
        refreshes: this.auth.counters.refreshes,
        resolves: this.resolver?.resolveCount ?? 0,
        reconnects: this.counters.reconnects,
        requests: this.counters.requests,
        errors: this.counters.errors,
      },
    };
    if (this.reason !== undefined) s.reason = this.reason;
    const entry = this.conn?.entry ?? this.entry;
    if (entry !== undefined) s.entry = safeUrl(entry);
    const exp = this.auth.tokenExpiresAt();
    if (exp !== undefined) s.tokenExpiresAt = exp;
    if (this.conn) s.sessionStartedAt = this.conn.startedAt;
    if (this.lastPingAt !== undefined) s.lastPingAt = this.lastPingAt;
    return s;
  }

  whenReady(timeoutMs: number): Promise<void> {
    if (this.state === "ready" && this.conn) return Promise.resolve();
    if (this.state === "auth_failed") return Promise.reject(this.authFailedError());
    if (this.stopped)
      return Promise.reject(new UpstreamError("UNAVAILABLE", "the upstream session is stopped"));
    if (!this.started) this.start();
    const deadline = Date.now() + Math.max(0, timeoutMs);
    // The next attempt is scheduled after the deadline (a 404 or connect's rate limit): waiting
    // cannot help, say why now.
    const tooLate = () =>
      !this.connecting &&
      ((this.retryAt !== undefined && this.retryAt > deadline) ||
        this.resolver?.configProblem() !== undefined);
    if (tooLate()) return Promise.reject(this.notReadyError());
    return new Promise<void>((resolve, reject) => {
      const onState = (s: UpstreamStatus) => {
        if (s.state === "ready") done(() => resolve());
        else if (s.state === "auth_failed") done(() => reject(this.authFailedError()));
        else if (s.state === "stopped") {
          done(() => reject(new UpstreamError("UNAVAILABLE", "the upstream session is stopped")));
        } else if (tooLate()) done(() => reject(this.notReadyError()));
      };
      const timer = setTimeout(() => done(() => reject(this.notReadyError())), Math.max(0, timeoutMs));
      const done = (fn: () => void) => {
        clearTimeout(timer);
        this.off("state", onState);
        fn();
      };
      this.on("state", onState);
    });
  }

  initializeInfo(): InitializeInfo | undefined {
    return this.info;
  }

  /** UNAVAILABLE naming the state, its reason and the next attempt. */
  private notReadyError(): UpstreamError {
    const next =
      this.retryAt !== undefined ? `; next attempt at ${new Date(this.retryAt).toISOString()}` : "";
    return new UpstreamError(
      "UNAVAILABLE",
      `the Loxone relay is not reachable right now (${this.state}${this.reason ? `: ${this.reason}` : ""}); nothing was sent, try again later${next}`,
      undefined,
      this.retryAt !== undefined ? { retryAt: this.retryAt } : undefined,
    );
  }

  async listTools(): Promise<{ tools: Array<Record<string, unknown>> }> {
    if (this.tools) return this.tools;
    await this.whenReady(this.opts.requestTimeoutMs);
    if (!this.tools) await this.refreshTools("first use");
    if (!this.tools) {
      throw new UpstreamError(
        "UNAVAILABLE",
        "the tool list could not be fetched from the Loxone relay; try again shortly",
      );
    }
    return this.tools;
  }

  async request(method: string, params: unknown, opts: UpstreamRequestOptions): Promise<unknown> {
    this.counters.requests++;
    try {
      return await this.requestWithRecovery(method, params, opts);
    } catch (err) {
      this.counters.errors++;
      throw err;
    }
  }

  async notify(method: string, params?: unknown): Promise<void> {
    await this.whenReady(Math.min(this.opts.requestTimeoutMs, 10_000));
    const conn = this.conn;
    if (!conn) throw new UpstreamError("UNAVAILABLE", "no upstream session; the notification was not sent");
    const n = params === undefined ? { method } : { method, params: params as Record<string, unknown> };
    await conn.client.notification(n).catch((err: unknown) => {
      throw new UpstreamError("UNAVAILABLE", `could not send ${method} upstream: ${describe(err)}`);
    });
  }

  async relogin(): Promise<void> {
    if (this.stopped) throw new UpstreamError("UNAVAILABLE", "the upstream session is stopped");
    this.log.info("relogin requested: dropping tokens and logging in again");
    this.auth.reset();
    this.store.clearTokens(this.key);
    const conn = this.conn;
    if (conn) this.dropConn(conn, "auth", "relogin requested");
    if (this.state === "auth_failed") this.setState("authenticating", "relogin requested");
    this.kick(0);
    await this.whenReady(Math.max(this.opts.requestTimeoutMs, 30_000)).catch((err: unknown) => {
      throw err instanceof UpstreamError ? err : new UpstreamError("UNAVAILABLE", describe(err));
    });
  }

  override on<E extends keyof UpstreamEvents>(event: E, listener: UpstreamEvents[E]): this {
    return super.on(event, listener);
  }

  override off<E extends keyof UpstreamEvents>(event: E, listener: UpstreamEvents[E]): this {
    return super.off(event, listener);
  }

  // ------------------------------------------------------------------ requests

  private async requestWithRecovery(
    method: string,
    params: unknown,
    opts: UpstreamRequestOptions,
  ): Promise<unknown> {
    const timeoutMs = opts.timeoutMs ?? this.opts.requestTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    const budget: AuthBudget = { auth: 1, stepUp: 1 };
    let resends = 0;
    for (let attempt = 1; ; attempt++) {
      if (opts.signal?.aborted) throw cancelled(method, false);
      // A wake seen now starts the wake check, and readyConn waits for it: nothing queued goes
      // out before the token and the session were checked.
      this.wake.check();
      if (this.state === "auth_failed") throw this.authFailedError();
      const conn = await this.readyConn(deadline, method, opts.signal);
      if (this.opts.idleCheckMs > 0 && Date.now() - this.lastActivity > this.opts.idleCheckMs) {
        await this.healthCheck("idle");
        if (this.conn !== conn) continue; // the check replaced the session; wait for the new one
      }
      const ctx = new RequestCtx(method, opts.retryable, opts.onServerRequest);
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw timeoutError(method, timeoutMs, false, opts.retryable);
      let result: unknown;
      try {
        result = await this.send(conn, ctx, method, params, remaining, opts.signal);
        return result;
      } catch (err) {
        const d = this.judge(conn, ctx, err, { purpose: "request", params });
        if (d.outcome === "auth_failed") throw this.authFailedError();
        if (d.outcome === "reauth" || d.outcome === "step_up") {
          if (await this.retryAuth(conn, ctx, d.outcome, budget, deadline)) continue;
          throw new UpstreamError(
            "AUTH_FAILED",
            d.outcome === "reauth"
              ? `the relay rejected the ${method} request as unauthorized even after a token refresh; it did not run. Try \`loxmcp relogin\``
              : `the server still refuses ${method} for insufficient scope after a new authorization; it did not run`,
          );
        }
        if (d.outcome !== "resend_read" && d.outcome !== "not_delivered") {
          if ("error" in d) throw d.error;
          throw new UpstreamError("UNAVAILABLE", `${method} failed; it was not sent`); // (wake-only outcomes)
        }
        // Connection-level trouble. The session is being recovered (judge() started it).
        if (d.outcome === "resend_read") {
          if (++resends > 3) {
            throw new UpstreamError(
              "UNAVAILABLE",
              `${method} failed ${resends} times because the relay connection kept breaking; giving up`,
            );
          }
          this.log.warn(
            { method, attempt, reason: d.reason },
            "connection lost while a read was in flight; resending it after recovery",
          );
        } else {
          this.log.info(
            { method, attempt, reason: d.reason },
            "request was not delivered; resending after recovery",
          );
        }
        if (attempt >= 8) {
          throw new UpstreamError(
            "UNAVAILABLE",
            `${method} could not be delivered after ${attempt} attempts`,
          );
        }
      }
    }
  }

  /** One send on one connection, inside the request's ALS context. */
  private async send(
    conn: Conn,
    ctx: RequestCtx,
    method: string,
    params: unknown,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    const onCallerAbort = () => ctx.abort("caller");
    signal?.addEventListener("abort", onCallerAbort, { once: true });
    const timer = setTimeout(() => ctx.abort("timeout"), timeoutMs);
    conn.inflight++;
    this.inflight.add(ctx);
    try {
      const req =
        params === undefined || params === null
          ? { method }
          : { method, params: params as Record<string, unknown> };
      const result = await this.als.run(ctx, () =>
        conn.client.request(req, Passthrough, {
          signal: ctx.ac.signal,
          // Our own timer decides (ctx.abortReason); the SDK's is only a backstop.
          timeout: timeoutMs + 60_000,
        }),
      );
      this.lastActivity = Date.now();
      // Any answer proves the path works: recovery after the next failure starts without delay.
      this.failures = 0;
      return result;
    } finally {
      ctx.settle();
      clearTimeout(timer);
      signal?.removeEventListener("abort", onCallerAbort);
      this.inflight.delete(ctx);
      conn.inflight--;
      if (conn.retired && conn.inflight === 0) void this.closeConn(conn);
    }
  }

  /** Classifies a failed request (failures.ts) and performs the actions the decision names. */
  private judge(
    conn: Conn,
    ctx: RequestCtx,
    err: unknown,
    how: Pick<Failure, "purpose" | "params" | "sinceWakeMs" | "pingTimeoutMs"> = { purpose: "request" },
  ): Decision {
    const d = classifyFailure({
      ...how,
      attempt: ctx,
      error: err,
      elapsedMs: Date.now() - ctx.startedAt,
      entry: conn.entry,
      current: this.conn === conn && !conn.retired,
      loginImpossible: this.auth.failedReason,
    });
    if (d.outcome === "auth_failed") this.enterAuthFailed(d.reason);
    if (d.drop) this.dropConn(conn, d.drop.reresolve ? "network" : "session", d.drop.reason);
    if (d.resetPool) this.http.reset();
    if (d.checkSession) void this.healthCheck("connection");
    return d;
  }

  /**
   * The one answer to a 401 (refresh the token, or log in) or a 403 insufficient_scope (step up)
   * met by a request on a session, each at most as often as `budget` allows. True: authorized
   * again, resend (a 401/403 never ran); false: that kind was already answered as often as
   * allowed. Throws what `reauthorize` throws.
   * (Opening a session, before there is one to judge, answers its own 401/403 in `connect`.)
   */
  private async retryAuth(
    conn: Conn,
    ctx: RequestCtx,
    kind: "reauth" | "step_up",
    budget: AuthBudget,
    deadline?: number,
  ): Promise<boolean> {
    const stepUp = kind === "step_up";
    if ((stepUp ? budget.stepUp : budget.auth) <= 0) return false;
    if (stepUp) budget.stepUp--;
    else budget.auth--;
    await this.reauthorize(conn, ctx, stepUp, deadline);
    return true;
  }

  /** Refresh / log in for a request; waits at most until `deadline` (the flight goes on). */
  private async reauthorize(conn: Conn, ctx: RequestCtx, stepUp = false, deadline?: number): Promise<void> {
    const scope = ctx.challenge?.scope ?? "";
    if (stepUp && this.lastStepUp?.scope === scope && this.lastStepUp.token === ctx.usedToken) {
      // The token a step-up got for exactly this scope is refused for it: another authorization
      // would not change that (and would loop). Nothing ran.
      throw new UpstreamError(
        "AUTH_FAILED",
        `the server refuses ${ctx.method} for insufficient scope even with a token for "${scope}"; it did not run`,
      );
    }
    const flight = stepUp
      ? this.auth.stepUp(conn.entry, ctx.challenge ?? {})
      : this.auth.handleUnauthorized(conn.entry, ctx.usedToken, ctx.challenge ?? {});
    flight.catch(() => {}); // outcome also handled below; never an unhandled rejection
    let timer: NodeJS.Timeout | undefined;
    try {
      if (deadline === undefined) {
        await flight;
      } else {
        const late = new Promise<"late">((r) => {
          timer = setTimeout(() => r("late"), Math.max(0, deadline - Date.now()));
        });
        if ((await Promise.race([flight, late])) === "late") {
          throw new UpstreamError(
            "UNAVAILABLE",
            `the login/token refresh did not finish in time; ${ctx.method} was not sent, try again shortly`,
          );
        }
      }
    } catch (err) {
      if (err instanceof UpstreamError) throw err;
      throw this.authError(err, ctx.method);
    } finally {
      if (timer) clearTimeout(timer);
    }
    if (stepUp) this.lastStepUp = { scope, token: this.store.getTokens(this.key)?.tokens.access_token };
  }

  private authError(err: unknown, method: string): UpstreamError {
    if (err instanceof AuthError && this.auth.failedReason) {
      this.enterAuthFailed(this.auth.failedReason);
      return this.authFailedError();
    }
    return new UpstreamError("UNAVAILABLE", `${describe(err)}; ${method} did not run`);
  }

  /** Waits (bounded) until a session is ready and returns it. */
  private async readyConn(deadline: number, method: string, signal: AbortSignal | undefined): Promise<Conn> {
    if (!this.started) this.start();
    for (;;) {
      if (this.stopped)
        throw new UpstreamError("UNAVAILABLE", "the upstream session is stopped; nothing was sent");
      const conn = this.conn;
      const flight = this.wakeFlight;
      if (conn && this.state === "ready" && !conn.retired && !flight) return conn;
      if (this.state === "auth_failed") throw this.authFailedError();
      if (signal?.aborted) throw cancelled(method, false);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new UpstreamError(
          "UNAVAILABLE",
          `the Loxone relay is not reachable right now (${this.state}${this.reason ? `: ${this.reason}` : ""}); ${method} was not sent, try again later`,
          undefined,
          this.retryAt ? { retryAt: this.retryAt } : undefined,
        );
      }
      if (this.retryAt !== undefined && this.retryAt > deadline) {
        // The next attempt is scheduled after our deadline (e.g. connect rate limit): fail now.
        throw new UpstreamError(
          "UNAVAILABLE",
          `the Loxone relay is not reachable right now (${this.reason ?? this.state}); ${method} was not sent, next attempt at ${new Date(this.retryAt).toISOString()}`,
          undefined,
          { retryAt: this.retryAt },
        );
      }
      if (flight) await settledWithin(flight, left, signal);
      else await this.nextState(left, signal);
    }
  }

  /** Resolves on the next state change, after `ms`, or when `signal` aborts. */
  private nextState(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.off("state", done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.on("state", done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }

  // ------------------------------------------------------------------ connection lifecycle

  /** Starts a connect attempt now or after `delayMs`, unless one is running or scheduled. */
  private kick(delayMs: number): void {
    if (this.stopped || this.connecting || this.conn || this.state === "auth_failed") return;
    if (this.retryTimer) return;
    if (delayMs > 0) {
      this.retryAt = Date.now() + delayMs;
      this.retryTimer = setTimeout(() => {
        this.retryTimer = undefined;
        this.retryAt = undefined;
        this.kick(0);
      }, delayMs);
      return;
    }
    this.retryAt = undefined;
    // Outside any request context: the session outlives the request that noticed the failure.
    const attempt = this.als.exit(() => this.establish());
    this.connecting = attempt;
    attempt.then(
      () => {
        this.connecting = undefined;
        if (this.stopped || this.conn || this.state === "auth_failed") return;
        // Connected, then lost it again during setup (e.g. tools/list failed): back off.
        this.onConnectFailed(new Error(this.reason ?? "the new session failed right away"));
      },
      (err: unknown) => {
        this.connecting = undefined;
        this.onConnectFailed(err);
      },
    );
  }

  private async establish(): Promise<void> {
    let entry: string;
    if (this.direct) {
      entry = this.direct;
    } else {
      const resolver = this.resolver!;
      const cached = resolver.cached();
      if (cached) {
        entry = cached;
      } else {
        this.progress("resolving");
        entry = await resolver.resolve(this.entry ? "the previous relay entry failed" : "first connect");
      }
    }
    this.entry = entry;
    let authTries = 0;
    let brokenTries = 0;
    for (;;) {
      if (this.stopped) return;
      this.progress(this.auth.hasTokens() ? "connecting" : "authenticating");
      const conn = this.newConn(entry);
      const ctx = new RequestCtx("initialize", true);
      const timer = setTimeout(() => ctx.abort("timeout"), this.opts.requestTimeoutMs);
      try {
        await this.als.run(ctx, () =>
          conn.client.connect(conn.transport, {
            signal: ctx.ac.signal,
            timeout: this.opts.requestTimeoutMs + 60_000,
          }),
        );
      } catch (err) {
        await conn.client.close().catch(() => {});
        if (this.stopped) return;
        const d = classifyInitFailure({ attempt: ctx, error: err, entry, brokenTries, authTries });
        if (d.outcome === "token_error") throw err;
        if (d.outcome === "fail") throw d.error;
        if (d.outcome === "retry") {
          // A pooled connection the relay had closed: initialize again on a new connection.
          brokenTries++;
          this.http.reset();
          this.log.info(
            { entry: safeUrl(entry), code: ctx.netCode },
            "the connection broke before initialize was answered; sending it again on a new connection",
          );
          continue;
        }
        authTries++;
        this.progress("authenticating");
        if (d.outcome === "forbidden") throw d.error;
        if (d.outcome === "step_up") await this.auth.stepUp(entry, ctx.challenge ?? {});
        else await this.auth.handleUnauthorized(entry, ctx.usedToken, ctx.challenge ?? {});
        continue;
      } finally {
        ctx.settle();
        clearTimeout(timer);
      }
      if (this.stopped) {
        await conn.client.close().catch(() => {});
        return;
      }
      conn.startedAt = Date.now();
      this.lastActivity = conn.startedAt;
      this.conn = conn;
      this.info = initializeInfoOf(conn);
      const reconnect = this.connectedOnce;
      this.connectedOnce = true;
      if (reconnect) this.counters.reconnects++;
      this.log.info(
        { entry: safeUrl(entry), sessionId: shortId(conn.transport.sessionId), reconnect },
        reconnect
          ? "upstream session re-established; refreshing the tool list"
          : "upstream session established",
      );
      try {
        await this.fetchTools(conn);
      } catch (err) {
        this.log.warn(
          { error: describe(err) },
          "tools/list failed right after initialize; the session stays up",
        );
      }
      if (this.conn !== conn) return; // failed meanwhile; recovery is already running
      this.resolver?.confirm(entry);
      this.setState("ready", undefined);
      if (reconnect) this.emit("toolsChanged");
      return;
    }
  }

  private onConnectFailed(err: unknown): void {
    if (this.stopped) return;
    if (err instanceof AuthError && this.auth.failedReason) {
      this.enterAuthFailed(this.auth.failedReason);
      return;
    }
    this.failures++;
    let delay = backoff(this.failures, this.opts.backoffMinMs ?? 500, this.opts.backoffMaxMs ?? 30_000);
    let reason = describe(err);
    const retryAt = retryAtOf(err);
    if (retryAt !== undefined) delay = Math.max(delay, retryAt - Date.now());
    if (err instanceof ConnectError && err.relayGone && this.resolver && this.entry) {
      reason += this.resolver.invalidate(this.entry)
        ? "; will ask connect for the current relay"
        : "; connect named this relay moments ago, trying it again before asking connect again";
    }
    // Schedule first, then announce: whoever waits on the state sees when the next try is.
    this.kick(delay);
    this.setState("degraded", reason);
    this.log.warn(
      { reason, retryInMs: Math.round(delay), failures: this.failures },
      "could not (re)connect to the upstream; retrying after a pause",
    );
  }

  private newConn(entry: string): Conn {
    const transport = new StreamableHTTPClientTransport(new URL(entry), {
      fetch: this.transportFetch,
      reconnectionOptions: {
        initialReconnectionDelay: 1_000,
        maxReconnectionDelay: 30_000,
        reconnectionDelayGrowFactor: 1.5,
        maxRetries: 2,
      },
    });
    const client = new Client(this.opts.clientInfo ?? { name: "loxmcpd", version: "0.1.0" }, {
      capabilities: (this.opts.clientCapabilities ?? { elicitation: {}, sampling: {} }) as never,
    });
    const conn: Conn = {
      id: ++this.connSeq,
      client,
      transport,
      entry,
      startedAt: 0,
      inflight: 0,
      retired: false,
    };
    client.onerror = (err) => {
      this.log.debug({ conn: conn.id, error: describe(err) }, "transport reported an error");
      // The SDK gave up resuming the server's notification stream (GET SSE): without it we would
      // silently miss tools/list_changed and other notifications, so start a fresh session.
      if (/Maximum reconnection attempts/.test(describe(err)) && this.conn === conn && !conn.retired) {
        this.dropConn(conn, "session", "the server's notification stream could not be resumed");
      }
    };
    client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
      if (this.conn !== conn) return;
      this.log.info("server says the tool list changed; fetching it again");
      await this.refreshTools("tools/list_changed");
    });
    // Progress tokens belong to the clients (the mux maps them); pass progress through as is.
    client.setNotificationHandler(ProgressNotificationSchema, async (n) => {
      this.emit("notification", { method: n.method, params: n.params });
    });
    client.fallbackNotificationHandler = async (n) => {
      const out: { method: string; params?: unknown } = { method: n.method };
      if (n.params !== undefined) out.params = n.params;
      this.emit("notification", out);
    };
    client.fallbackRequestHandler = async (request) =>
      this.routeServerRequest(request.method, request.params);
    return conn;
  }

  /** Server→client request: to the request that caused it, else the oldest one that can answer. */
  private async routeServerRequest(method: string, params: unknown): Promise<never> {
    const ctx = this.als.getStore();
    let target = ctx?.onServerRequest && !ctx.settled ? ctx : undefined;
    if (!target) {
      for (const c of this.inflight) {
        if (c.onServerRequest && !c.settled) {
          target = c;
          break;
        }
      }
    }
    if (!target?.onServerRequest) {
      throw new McpError(ErrorCode.MethodNotFound, `no connected client can answer ${method} right now`);
    }
    const req: ServerRequest = params === undefined ? { method } : { method, params };
    return (await target.onServerRequest(req)) as never;
  }

  /** Marks `conn` dead (once), starts recovery. In-flight requests on it finish on their own. */
  private dropConn(conn: Conn, kind: FailureKind, reason: string): void {
    if (conn.retired) return;
    conn.retired = true;
    if (conn.inflight === 0) void this.closeConn(conn);
    if (this.conn !== conn) return;
    this.conn = undefined;
    if (this.stopped) return;
    if (kind === "network" && this.resolver) this.resolver.invalidate(conn.entry);
    const next =
      kind === "session"
        ? "opening a new session"
        : kind === "auth"
          ? "logging in again"
          : this.resolver
            ? "asking connect for the current relay, then reconnecting"
            : "reconnecting";
    // The first attempt after a session that worked for a while goes at once; a session that
    // keeps dying young backs off (never a tight loop). Every successful answer resets the count.
    const young = Date.now() - conn.startedAt < 5_000;
    if (young) this.failures++;
    else this.failures = 0;
    const delay =
      young && this.failures > 1
        ? backoff(this.failures - 1, this.opts.backoffMinMs ?? 500, this.opts.backoffMaxMs ?? 30_000)
        : 0;
    this.log.warn(
      { entry: safeUrl(conn.entry), reason, retryInMs: Math.round(delay) },
      `upstream session lost; ${next}`,
    );
    this.setState("degraded", reason);
    this.kick(delay);
  }

  private async closeConn(conn: Conn): Promise<void> {
    await conn.client.close().catch(() => {});
  }

  // ------------------------------------------------------------------ health

  private periodicPing(): void {
    // After a long sleep this overdue timer may run before the wake tick: let the wake flight check
    // the session (a 404 here would announce `degraded` for what the flight renews quietly).
    this.wake.check();
    if (this.stopped || this.state !== "ready" || !this.conn || this.wakeFlight) return;
    if (Date.now() - this.lastActivity < this.opts.pingIntervalMs / 2) return;
    void this.healthCheck("interval");
  }

  /** One MCP ping on the current session (single flight); failure ⇒ recovery. */
  private healthCheck(why: "interval" | "idle" | "connection"): Promise<void> {
    if (!this.pingFlight) {
      this.pingFlight = this.als
        .exit(() => this.doPing(why))
        .finally(() => {
          this.pingFlight = undefined;
        });
    }
    return this.pingFlight;
  }

  private async doPing(why: string): Promise<void> {
    // Two pings at most; a 401 is answered after each (no step-up for a ping).
    const budget: AuthBudget = { auth: 2, stepUp: 0 };
    for (let attempt = 0; attempt < 2; attempt++) {
      const conn = this.conn;
      if (!conn || conn.retired) return;
      const ctx = new RequestCtx("ping", true);
      try {
        await this.send(
          conn,
          ctx,
          "ping",
          undefined,
          Math.min(this.opts.requestTimeoutMs, 10_000),
          undefined,
        );
        this.lastPingAt = Date.now();
        this.log.debug({ why }, "upstream ping ok");
        return;
      } catch (err) {
        const d = this.judge(conn, ctx, err, { purpose: "ping" });
        if (d.outcome === "reauth" || d.outcome === "step_up") {
          try {
            if (await this.retryAuth(conn, ctx, d.outcome, budget)) continue;
          } catch {
            // login impossible or failed: the next interval tries again
          }
          return;
        }
        // A JSON-RPC error to ping still proves the session is alive.
        if (d.outcome === "remote_error" && conn === this.conn && !conn.retired) this.lastPingAt = Date.now();
        return;
      }
    }
  }

  // ------------------------------------------------------------------ wake

  /**
   * A wake was seen (synchronously, before anything else is sent). Pooled connections go first;
   * then one flight refreshes the token if needed, checks the session and renews it if it expired;
   * requests wait for that flight in readyConn (at most until their deadline). The state stays
   * `ready` (with the reason "woke up …; checking") while that routine check runs, so a call made
   * right after a wake is queued rather than refused; real trouble found by the check (no network,
   * the token endpoint down, the relay gone) is `degraded`, as always.
   */
  private onWake(w: Wake): void {
    if (this.stopped || !this.started) return;
    const sec = Math.max(1, Math.round(w.sleptMs / 1000));
    const how =
      w.kind === "suspended" ? `the machine slept about ${sec} s` : `the process was frozen about ${sec} s`;
    this.log.info(
      { kind: w.kind, sleptSec: sec },
      `woke up (${how}): dropping pooled connections, then checking the login and the session before sending anything`,
    );
    // Keep-alive connections the servers closed meanwhile must not carry the first request.
    this.http.reset();
    // Backoff counted before the sleep says nothing about now.
    this.failures = 0;
    if (this.state === "ready")
      this.setState("ready", `woke up (${how}); checking the login and the session`);
    if (!this.wakeFlight) {
      this.wakeFlight = this.als
        .exit(() => this.afterWake(`woke up (${how})`))
        .catch((err: unknown) => {
          // Not expected: leave it to the usual recovery rather than stay in between.
          this.log.warn({ error: describe(err) }, "the check after a wake failed; recovering as usual");
          const conn = this.conn;
          if (conn) this.dropConn(conn, "session", `the check after a wake failed: ${describe(err)}`);
        })
        .finally(() => {
          this.wakeFlight = undefined;
          this.quiet = false;
        });
    }
  }

  /** The wake flight: token, then session (renewed if it expired), then `ready` lets requests go. */
  private async afterWake(woke: string): Promise<void> {
    const since = Date.now();
    for (let attempt = 1; ; attempt++) {
      if (this.stopped || this.state === "auth_failed") return;
      const conn = this.conn;
      if (!conn || conn.retired) {
        // No session to check: the reconnect loop recovers; start it now rather than after a
        // backoff planned before the sleep.
        this.reconnectNow();
        return;
      }
      let trouble: string | undefined;
      let again = false;
      try {
        // 1. The token: refreshed when it expired or expires soon (one flight with any request).
        await this.auth.accessToken(conn.entry);
      } catch (err) {
        if (err instanceof AuthError && this.auth.failedReason) {
          this.enterAuthFailed(this.auth.failedReason);
          return;
        }
        trouble = describe(err);
      }
      if (trouble === undefined) {
        // 2. The session: one ping, on a new connection.
        const r = await this.checkSession(conn, since);
        if (r === "expired") {
          // 3. It expired while we slept: a new one, before anything queued is sent.
          await this.renewSession(conn);
          if (this.conn && this.state === "ready") {
            this.log.info(
              { attempts: attempt },
              "awake: token checked, new session opened; sending what waited",
            );
          }
          return;
        }
        if (r === "ok") {
          if (this.conn === conn && !conn.retired && !this.stopped && !this.authFailed()) {
            this.log.info({ attempts: attempt }, "awake: token and session checked; sending what waited");
            this.setState("ready", undefined);
          }
          return;
        }
        if (r === "gone") {
          // The relay refused the connection (or another request found the session broken): the
          // reconnect loop took over (state degraded), and requests wait for it.
          return;
        }
        trouble = r.trouble;
        again = r.now === true;
      }
      // Not yet (the network is coming back, the token endpoint is busy): wait, then again.
      const cap = Date.now() - since < 60_000 ? 5_000 : (this.opts.backoffMaxMs ?? 30_000);
      const delay = again
        ? 0
        : Math.min(cap, 250 * 2 ** Math.min(attempt - 1, 8)) * (0.5 + Math.random() / 2);
      this.log.warn(
        { trouble, attempt, retryInMs: Math.round(delay) },
        "not ready after the wake yet; requests wait",
      );
      if (this.conn === conn && !conn.retired) this.setState("degraded", `${woke}; ${trouble}`);
      if (delay > 0) await this.nextState(delay, undefined);
    }
  }

  /** One ping for the wake flight. */
  private async checkSession(
    conn: Conn,
    since: number,
  ): Promise<"ok" | "expired" | "gone" | { trouble: string; now?: boolean }> {
    const ctx = new RequestCtx("ping", true);
    const timeoutMs = Math.min(this.opts.requestTimeoutMs, 10_000);
    try {
      await this.send(conn, ctx, "ping", undefined, timeoutMs, undefined);
      this.lastPingAt = Date.now();
      return "ok";
    } catch (err) {
      if (this.conn !== conn || conn.retired || this.stopped) return "gone";
      const d = this.judge(conn, ctx, err, {
        purpose: "wake",
        sinceWakeMs: Date.now() - since,
        pingTimeoutMs: timeoutMs,
      });
      switch (d.outcome) {
        case "auth_failed":
        case "timeout":
          return "gone";
        case "session_expired":
          return "expired";
        case "wait":
          return { trouble: d.reason };
        case "reauth":
          // The relay refused the token (revoked meanwhile?): refresh, or log in as the last resort.
          try {
            await this.reauthorize(conn, ctx, false, Date.now() + this.opts.requestTimeoutMs);
          } catch (e) {
            if (this.state === "auth_failed") return "gone";
            return { trouble: describe(e) };
          }
          return { trouble: "the relay refused the token; it was renewed", now: true };
        case "not_delivered":
        case "resend_read":
          return this.conn === conn && !conn.retired ? { trouble: d.reason } : "gone";
        default:
          // An answer that is not a pong (a JSON-RPC error, 429, 403 …) still shows the session is alive.
          return this.conn === conn && !conn.retired ? "ok" : "gone";
      }
    }
  }

  /**
   * The session expired while we slept (404): open a new one on the same entry without passing
   * through `connecting` (requests are held by the wake flight meanwhile). A failure is reported
   * as usual (`degraded`, the reconnect loop with backoff).
   */
  private async renewSession(conn: Conn): Promise<void> {
    if (this.conn !== conn || conn.retired || this.stopped) return;
    conn.retired = true;
    this.conn = undefined;
    if (conn.inflight === 0) void this.closeConn(conn);
    this.log.info(
      { entry: safeUrl(conn.entry) },
      "the relay forgot our MCP session while we slept (HTTP 404); opening a new one before anything waiting is sent",
    );
    this.quiet = true;
    try {
      this.kick(0);
      await this.connecting?.catch(() => {});
    } finally {
      this.quiet = false;
    }
  }

  /** Starts a connect attempt now, replacing a pending backoff timer. */
  private reconnectNow(): void {
    if (this.stopped || this.connecting || this.conn || this.state === "auth_failed") return;
    if (this.retryTimer) {
      clearTimeout(this.retryTimer);
      this.retryTimer = undefined;
      this.retryAt = undefined;
    }
    this.kick(0);
  }

  // ------------------------------------------------------------------ tools

  private refreshTools(why: string): Promise<void> {
    if (!this.toolsFlight) {
      this.toolsFlight = this.als
        .exit(async () => {
          const before = JSON.stringify(this.tools);
          const conn = await this.readyConn(Date.now() + this.opts.requestTimeoutMs, "tools/list", undefined);
          await this.fetchTools(conn);
          if (JSON.stringify(this.tools) !== before) {
            this.log.info({ why, tools: this.tools?.tools.length }, "tool list updated; telling clients");
            this.emit("toolsChanged");
          }
        })
        .catch((err: unknown) => {
          this.log.warn(
            { why, error: describe(err) },
            "could not refresh the tool list; keeping the old one",
          );
        })
        .finally(() => {
          this.toolsFlight = undefined;
        });
    }
    return this.toolsFlight;
  }

  private async fetchTools(conn: Conn): Promise<void> {
    const tools: Array<Record<string, unknown>> = [];
    let cursor: string | undefined;
    for (let page = 0; page < 50; page++) {
      // A server may let initialize through unauthenticated and ask for a token (401) or a
      // wider scope (403 insufficient_scope) only now: log in / step up once each, then resend.
      const budget: AuthBudget = { auth: 1, stepUp: 1 };
      let res: { tools?: Array<Record<string, unknown>>; nextCursor?: string };
      for (;;) {
        const ctx = new RequestCtx("tools/list", true);
        try {
          res = (await this.send(
            conn,
            ctx,
            "tools/list",
            cursor ? { cursor } : undefined,
            this.opts.requestTimeoutMs,
            undefined,
          )) as typeof res;
          break;
        } catch (err) {
          const d = this.judge(conn, ctx, err);
          if (d.outcome === "reauth" || d.outcome === "step_up") {
            if (await this.retryAuth(conn, ctx, d.outcome, budget)) continue;
          }
          throw err;
        }
      }
      tools.push(...(res.tools ?? []));
      cursor = res.nextCursor;
      if (!cursor) break;
    }
    this.tools = { tools };
  }

  // ------------------------------------------------------------------ state

  /** (A method, so that TypeScript does not narrow the state across awaits.) */
  private authFailed(): boolean {
    return this.state === "auth_failed";
  }

  /** A step of (re)connecting; not announced while the wake flight renews the session. */
  private progress(state: UpstreamState): void {
    if (this.quiet && this.state === "ready") return;
    this.setState(state, this.reason);
  }

  private setState(state: UpstreamState, reason: string | undefined): void {
    const changed = state !== this.state || reason !== this.reason;
    this.state = state;
    this.reason = reason;
    if (!changed) return;
    if (state === "ready") this.log.info({ entry: this.entry && safeUrl(this.entry) }, "upstream ready");
    this.emit("state", this.status());
  }

  private enterAuthFailed(reason: string): void {
    if (this.state === "auth_failed") return;
    const conn = this.conn;
    this.conn = undefined;
    if (conn) {
      conn.retired = true;
      if (conn.inflight === 0) void this.closeConn(conn);
    }
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.log.error(
      { reason },
      "login impossible; upstream paused in auth_failed until relogin or a config change",
    );
    this.setState("auth_failed", reason);
  }

  private authFailedError(): UpstreamError {
    return new UpstreamError(
      "AUTH_FAILED",
      `${this.reason ?? this.auth.failedReason ?? "login failed"}; fix the credentials, then run \`loxmcp relogin\``,
    );
  }
}

/** How often one request may still answer a 401 (refresh / log in) and a 403 insufficient_scope (step up). */
interface AuthBudget {
  auth: number;
  stepUp: number;
}

function initializeInfoOf(conn: Conn): InitializeInfo {
  const server = conn.client.getServerVersion();
  const info: InitializeInfo = {
    protocolVersion: conn.transport.protocolVersion ?? "",
    capabilities: (conn.client.getServerCapabilities() ?? {}) as Record<string, unknown>,
    serverInfo: (server ?? { name: "unknown", version: "0" }) as InitializeInfo["serverInfo"],
  };
  const instructions = conn.client.getInstructions();
  if (instructions !== undefined) info.instructions = instructions;
  return info;
}

function backoff(failures: number, minMs: number, maxMs: number): number {
  if (failures <= 1) return minMs * (0.5 + Math.random() / 2);
  const exp = Math.min(maxMs, minMs * 2 ** (failures - 1));
  return exp * (0.5 + Math.random() / 2);
}

function shortId(id: string | undefined): string | undefined {
  return id ? `${id.slice(0, 8)}…` : undefined;
}

/** Resolves when `p` settles, after `ms`, or when `signal` aborts, whichever is first. */
function settledWithin(p: Promise<unknown>, ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener("abort", done, { once: true });
    p.then(done, done);
  });
}

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), ms))),
    ]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}
