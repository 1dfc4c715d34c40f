/**
 * The one upstream MCP session (`Upstream`): an SDK `Client` over our `node:http` Streamable HTTP
 * transport (transport.ts) to the resolved relay entry (or a direct URL), with the Bearer token of
 * the AuthManager. This class composes the parts and keeps the request path:
 *  - the transport asks the AuthManager for the token of each request and records, in the
 *    request's AsyncLocalStorage context (delivery.ts), whether the POST carrying it was refused
 *    before it left, rejected with a status that means it never ran, or accepted and then lost;
 *  - failures.ts decides what a failure means and what to do (pure); exchange.ts sends one request,
 *    performs that decision and answers a 401/403 (refresh, log in or step up: it never ran);
 *  - lifecycle.ts (with session-opener.ts and readiness.ts): resolve, authorize, initialize,
 *    re-resolve when the relay may be gone, re-open dropped sessions with backoff, wait for `ready`;
 *  - health.ts: pings, and the check after a wake (docs/upstream.md, "Sleep and wake");
 *  - tools.ts: the tool cache.
 * A request that may have reached the server when the connection failed is resent only when the
 * caller says it is retryable (a read); otherwise it fails with OUTCOME_UNKNOWN.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { EventEmitter } from "node:events";
import type { OAuthClientInformationMixed } from "@modelcontextprotocol/sdk/shared/auth.js";
import type { Logger } from "pino";
import {
  type InitializeInfo,
  type Upstream,
  UpstreamError,
  type UpstreamEvents,
  type UpstreamOptions,
  type UpstreamRequestOptions,
  type UpstreamStatus,
} from "../contracts.js";
import type { TokenStore } from "../store/tokens.js";
import { AuthManager } from "./auth/manager.js";
import { cancelled, describe, timeoutError } from "./call-errors.js";
import { RequestCtx } from "./delivery.js";
import { type AuthBudget, Exchange } from "./exchange.js";
import { Health } from "./health.js";
import { HttpPool } from "./http.js";
import { Lifecycle } from "./lifecycle.js";
import { Readiness } from "./readiness.js";
import { RelayResolver, type ResolverOptions } from "./resolver.js";
import { ToolCache } from "./tools.js";
import type { RelayWire } from "./transport.js";
import { requireSecureUrl, safeUrl } from "./url.js";
import { type WakeClock, WakeDetector } from "./wake.js";

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
  /**
   * OAuth: fly logins and refreshes in a child process (relay/auth/flight-child.ts): the daemon's
   * entry script and database file. Ignored when `fetch` is injected (tests, --insecure-tls).
   */
  oauthChild?: { entry: string; dbPath: string };
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
  /** Tests: a look at the relay MCP endpoint's wire (and a way to break a request on it). */
  relayWire?: RelayWire;
}

export class UpstreamSession extends EventEmitter implements Upstream {
  private readonly log: Logger;
  private readonly auth: AuthManager;
  private readonly resolver: RelayResolver | undefined;
  private readonly key: string;
  private readonly direct: string | undefined;
  /** Our own connection pool for connect, the relay and the authorization server. */
  private readonly http: HttpPool;
  private readonly wake: WakeDetector;
  private readonly life: Lifecycle;
  private readonly ready: Readiness;
  private readonly exchange: Exchange;
  private readonly health: Health;
  private readonly tools: ToolCache;
  private readonly counters = { requests: 0, errors: 0 };

  constructor(
    private readonly opts: UpstreamSessionOptions,
    private readonly store: TokenStore,
  ) {
    super();
    // Every request waiting for recovery listens for the next state change: no fixed limit.
    this.setMaxListeners(0);
    const log = opts.logger.child({ component: "upstream" });
    this.log = log;
    this.wake = new WakeDetector({
      onWake: (w) => this.health.onWake(w),
      ...(opts.clock ? { clock: opts.clock } : {}),
      ...(opts.wakeTickMs !== undefined ? { tickMs: opts.wakeTickMs } : {}),
      ...(opts.wakeThresholdMs !== undefined ? { thresholdMs: opts.wakeThresholdMs } : {}),
    });
    // Every request checks for a wake first: after one, the pool is replaced before a socket is picked.
    const http = new HttpPool({
      ...(opts.fetch ? { fetch: opts.fetch } : {}),
      beforeRequest: () => this.wake.check(),
    });
    this.http = http;
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
      // node:http on the pool (no fetch, no undici in the daemon), unless a test injected fetch
      resolverOptions.fetch = opts.fetch ? http.fetch : http.get;
      if (opts.maxRetryAfterMs !== undefined) resolverOptions.maxRetryAfterMs = opts.maxRetryAfterMs;
      this.resolver = new RelayResolver({ ...resolverOptions, ...(opts.resolver ?? {}) });
    }
    const auth = new AuthManager(this.authOptions(opts, store));
    this.auth = auth;
    const als = new AsyncLocalStorage<RequestCtx>();
    // What the transport sends with: our pool, the Bearer token, delivery tracking.
    const transport = {
      pool: http,
      token: (url: string) => auth.accessToken(this.life.conn?.entry ?? this.life.entry ?? url),
      current: () => als.getStore(),
      graceMs: opts.streamGraceMs ?? 500,
      wire: opts.relayWire,
    };
    const { resolver, direct } = this;
    this.life = new Lifecycle({
      opts,
      log,
      auth,
      resolver,
      direct,
      http,
      als,
      transport,
      events: this,
      hooks: {
        status: () => this.status(),
        opened: (conn) => this.tools.fetch(conn),
        toolListChanged: () => this.tools.refresh("tools/list_changed"),
        serverRequest: (method, params) => this.exchange.routeServerRequest(method, params),
      },
    });
    const life = this.life;
    this.ready = new Readiness(life, {
      events: this,
      start: () => this.start(),
      configProblem: () => resolver?.configProblem(),
    });
    const ready = this.ready;
    this.exchange = new Exchange({
      als,
      life,
      auth,
      http,
      storedToken: () => store.getTokens(this.key)?.tokens.access_token,
      checkSession: () => void this.health.check("connection"),
    });
    const exchange = this.exchange;
    const checkWake = () => this.wake.check();
    this.health = new Health({ opts, log, life, ready, exchange, auth, http, als, checkWake });
    this.tools = new ToolCache({
      requestTimeoutMs: opts.requestTimeoutMs,
      log,
      exchange,
      als,
      readyConn: (deadline, method) => ready.readyConn(deadline, method, undefined),
      changed: () => this.emit("toolsChanged"),
    });
  }

  private authOptions(
    opts: UpstreamSessionOptions,
    store: TokenStore,
  ): ConstructorParameters<typeof AuthManager>[0] {
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
    if (opts.oauthChild && !opts.fetch) authOptions.childProcess = opts.oauthChild;
    return authOptions;
  }

  // ------------------------------------------------------------------ public API

  start(): void {
    if (this.life.started || this.life.stopped) return;
    this.life.markStarted();
    this.log.info(
      { upstream: this.direct ? safeUrl(this.direct) : `serial ${this.opts.serial}` },
      "starting upstream session",
    );
    this.wake.start();
    this.life.kick(0);
    this.health.start();
  }

  async stop(): Promise<void> {
    if (this.life.stopped) return;
    this.life.stopping();
    this.wake.stop();
    this.health.stop();
    this.exchange.abortAll();
    await this.life.close();
    this.log.info("upstream session stopped");
  }

  status(): UpstreamStatus {
    const { life, auth } = this;
    const s: UpstreamStatus = {
      state: life.state,
      counters: {
        logins: auth.counters.logins,
        refreshes: auth.counters.refreshes,
        resolves: this.resolver?.resolveCount ?? 0,
        reconnects: life.reconnects,
        requests: this.counters.requests,
        errors: this.counters.errors,
      },
    };
    if (life.reason !== undefined) s.reason = life.reason;
    const entry = life.conn?.entry ?? life.entry;
    if (entry !== undefined) s.entry = safeUrl(entry);
    const exp = auth.tokenExpiresAt();
    if (exp !== undefined) s.tokenExpiresAt = exp;
    if (life.conn) s.sessionStartedAt = life.conn.startedAt;
    if (this.health.lastPingAt !== undefined) s.lastPingAt = this.health.lastPingAt;
    return s;
  }

  whenReady(timeoutMs: number): Promise<void> {
    return this.ready.whenReady(timeoutMs);
  }

  initializeInfo(): InitializeInfo | undefined {
    return this.life.info;
  }

  async listTools(): Promise<{ tools: Array<Record<string, unknown>> }> {
    const cached = this.tools.list;
    if (cached) return cached;
    await this.whenReady(this.opts.requestTimeoutMs);
    if (!this.tools.list) await this.tools.refresh("first use");
    const tools = this.tools.list;
    if (!tools) {
      throw new UpstreamError(
        "UNAVAILABLE",
        "the tool list could not be fetched from the Loxone relay; try again shortly",
      );
    }
    return tools;
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
    const conn = this.life.conn;
    if (!conn) throw new UpstreamError("UNAVAILABLE", "no upstream session; the notification was not sent");
    const n = params === undefined ? { method } : { method, params: params as Record<string, unknown> };
    await conn.client.notification(n).catch((err: unknown) => {
      throw new UpstreamError("UNAVAILABLE", `could not send ${method} upstream: ${describe(err)}`);
    });
  }

  async relogin(): Promise<void> {
    const { life } = this;
    if (life.stopped) throw new UpstreamError("UNAVAILABLE", "the upstream session is stopped");
    this.log.info("relogin requested: dropping tokens and logging in again");
    this.auth.reset();
    this.store.clearTokens(this.key);
    const conn = life.conn;
    if (conn) life.dropConn(conn, "auth", "relogin requested");
    if (life.authFailed()) life.setState("authenticating", "relogin requested");
    life.kick(0);
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

  /**
   * One request, recovered: waits for a ready session, sends, and on failure does what the
   * classifier decided: a 401/403 answered once and resent (it never ran), a request that was not
   * delivered resent after recovery, a read that may have run resent (three times at most), a
   * write that may have run reported as OUTCOME_UNKNOWN, never repeated.
   */
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
      if (this.life.authFailed()) throw this.life.authFailedError();
      const conn = await this.ready.readyConn(deadline, method, opts.signal);
      if (this.opts.idleCheckMs > 0 && Date.now() - this.life.lastActivity > this.opts.idleCheckMs) {
        await this.health.check("idle");
        if (this.life.conn !== conn) continue; // the check replaced the session; wait for the new one
      }
      const ctx = new RequestCtx(method, opts.retryable, opts.onServerRequest);
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw timeoutError(method, timeoutMs, false, opts.retryable);
      let result: unknown;
      try {
        result = await this.exchange.send(conn, ctx, method, params, remaining, opts.signal);
        return result;
      } catch (err) {
        const d = this.exchange.judge(conn, ctx, err, { purpose: "request", params });
        if (d.outcome === "auth_failed") throw this.life.authFailedError();
        if (d.outcome === "reauth" || d.outcome === "step_up") {
          if (await this.exchange.retryAuth(conn, ctx, d.outcome, budget, deadline)) continue;
          throw new UpstreamError(
            "AUTH_FAILED",
            d.outcome === "reauth"
              ? `the relay rejected the ${method} request as unauthorized even after a token refresh; it did not run. Try \`loxmcp relogin\``
              : `the server still refuses ${method} for insufficient scope after a new authorization; it did not run`,
          );
        }
        if (d.outcome !== "resend_read" && d.outcome !== "not_delivered") throw d.error;
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
}
