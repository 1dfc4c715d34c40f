/**
 * Is the session alive? One MCP ping (single flight) on an interval when nothing else was said, when
 * a request finds the session idle, and after a write broke before any answer; a failed ping starts
 * recovery (through the classifier's decision). After a wake (docs/upstream.md, "Sleep and wake"):
 * pooled connections go first, then one flight refreshes the token if due and pings the session,
 * renewing it quietly on a 404, while requests wait for it.
 */
import type { AsyncLocalStorage } from "node:async_hooks";
import type { Logger } from "pino";
import { AuthError } from "./auth/errors.js";
import type { AuthManager } from "./auth/manager.js";
import { describe } from "./call-errors.js";
import type { Conn } from "./conn.js";
import { RequestCtx } from "./delivery.js";
import type { AuthBudget, Exchange } from "./exchange.js";
import type { HttpPool } from "./http.js";
import type { Lifecycle } from "./lifecycle.js";
import type { Readiness } from "./readiness.js";
import type { Wake } from "./wake.js";

export interface HealthOptions {
  opts: { pingIntervalMs: number; requestTimeoutMs: number; backoffMaxMs?: number };
  log: Logger;
  life: Lifecycle;
  ready: Readiness;
  exchange: Exchange;
  auth: AuthManager;
  http: HttpPool;
  als: AsyncLocalStorage<RequestCtx>;
  /** Looks for a wake now (onWake runs synchronously when there was one). */
  checkWake(): void;
}

type SessionCheck = "ok" | "expired" | "gone" | { trouble: string; now?: boolean };

export class Health {
  /** When a ping last proved the session alive. */
  lastPingAt: number | undefined;
  private pingTimer: NodeJS.Timeout | undefined;
  private pingFlight: Promise<void> | undefined;

  constructor(private readonly o: HealthOptions) {}

  start(): void {
    this.pingTimer = setInterval(() => this.periodicPing(), Math.max(250, this.o.opts.pingIntervalMs));
    this.pingTimer.unref?.();
  }

  stop(): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }

  private periodicPing(): void {
    const { life, opts } = this.o;
    // After a long sleep this overdue timer may run before the wake tick: let the wake flight check
    // the session (a 404 here would announce `degraded` for what the flight renews quietly).
    this.o.checkWake();
    if (life.stopped || life.state !== "ready" || !life.conn || life.wakeFlight) return;
    if (Date.now() - life.lastActivity < opts.pingIntervalMs / 2) return;
    void this.check("interval");
  }

  /** One MCP ping on the current session (single flight); failure ⇒ recovery. */
  check(why: "interval" | "idle" | "connection"): Promise<void> {
    if (!this.pingFlight) {
      this.pingFlight = this.o.als
        .exit(() => this.ping(why))
        .finally(() => {
          this.pingFlight = undefined;
        });
    }
    return this.pingFlight;
  }

  private async ping(why: string): Promise<void> {
    const { life, exchange } = this.o;
    // Two pings at most; a 401 is answered after each (no step-up for a ping).
    const budget: AuthBudget = { auth: 2, stepUp: 0 };
    for (let attempt = 0; attempt < 2; attempt++) {
      const conn = life.conn;
      if (!conn || conn.retired) return;
      const ctx = new RequestCtx("ping", true);
      try {
        await exchange.send(conn, ctx, "ping", undefined, this.pingTimeoutMs(), undefined);
        this.lastPingAt = Date.now();
        this.o.log.debug({ why }, "upstream ping ok");
        return;
      } catch (err) {
        const d = exchange.judge(conn, ctx, err, { purpose: "ping" });
        if (d.outcome === "reauth" || d.outcome === "step_up") {
          try {
            if (await exchange.retryAuth(conn, ctx, d.outcome, budget)) continue;
          } catch {
            // login impossible or failed: the next interval tries again
          }
          return;
        }
        // A JSON-RPC error to ping still proves the session is alive.
        if (d.outcome === "remote_error" && life.isCurrent(conn)) this.lastPingAt = Date.now();
        return;
      }
    }
  }

  private pingTimeoutMs(): number {
    return Math.min(this.o.opts.requestTimeoutMs, 10_000);
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
  onWake(w: Wake): void {
    const { life, log } = this.o;
    if (life.stopped || !life.started) return;
    const sec = Math.max(1, Math.round(w.sleptMs / 1000));
    const how =
      w.kind === "suspended" ? `the machine slept about ${sec} s` : `the process was frozen about ${sec} s`;
    log.info(
      { kind: w.kind, sleptSec: sec },
      `woke up (${how}): dropping pooled connections, then checking the login and the session before sending anything`,
    );
    // Keep-alive connections the servers closed meanwhile must not carry the first request.
    this.o.http.reset();
    life.forgetFailures();
    if (life.state === "ready")
      life.setState("ready", `woke up (${how}); checking the login and the session`);
    if (!life.wakeFlight) {
      life.wakeFlight = this.o.als
        .exit(() => this.afterWake(`woke up (${how})`))
        .catch((err: unknown) => {
          // Not expected: leave it to the usual recovery rather than stay in between.
          log.warn({ error: describe(err) }, "the check after a wake failed; recovering as usual");
          const conn = life.conn;
          if (conn) life.dropConn(conn, "session", `the check after a wake failed: ${describe(err)}`);
        })
        .finally(() => {
          life.wakeFlight = undefined;
          life.quiet = false;
        });
    }
  }

  /** The wake flight: token, then session (renewed if it expired), then `ready` lets requests go. */
  private async afterWake(woke: string): Promise<void> {
    const { life, auth, log } = this.o;
    const since = Date.now();
    for (let attempt = 1; ; attempt++) {
      if (life.stopped || life.authFailed()) return;
      const conn = life.conn;
      if (!conn || conn.retired) {
        // No session to check: the reconnect loop recovers; start it now rather than after a
        // backoff planned before the sleep.
        life.reconnectNow();
        return;
      }
      let trouble: string | undefined;
      let again = false;
      try {
        // 1. The token: refreshed when it expired or expires soon (one flight with any request).
        await auth.accessToken(conn.entry);
      } catch (err) {
        if (err instanceof AuthError && auth.failedReason) {
          life.enterAuthFailed(auth.failedReason);
          return;
        }
        trouble = describe(err);
      }
      if (trouble === undefined) {
        // 2. The session: one ping, on a new connection.
        const r = await this.checkSession(conn, since);
        if (r === "expired") {
          // 3. It expired while we slept: a new one, before anything queued is sent.
          await life.renew(conn);
          if (life.conn && life.state === "ready") {
            log.info({ attempts: attempt }, "awake: token checked, new session opened; sending what waited");
          }
          return;
        }
        if (r === "ok") {
          if (life.isCurrent(conn) && !life.stopped && !life.authFailed()) {
            log.info({ attempts: attempt }, "awake: token and session checked; sending what waited");
            life.setState("ready", undefined);
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
      const cap = Date.now() - since < 60_000 ? 5_000 : (this.o.opts.backoffMaxMs ?? 30_000);
      const delay = again
        ? 0
        : Math.min(cap, 250 * 2 ** Math.min(attempt - 1, 8)) * (0.5 + Math.random() / 2);
      log.warn(
        { trouble, attempt, retryInMs: Math.round(delay) },
        "not ready after the wake yet; requests wait",
      );
      if (life.isCurrent(conn)) life.setState("degraded", `${woke}; ${trouble}`);
      if (delay > 0) await this.o.ready.nextState(delay, undefined);
    }
  }

  /** One ping for the wake flight. */
  private async checkSession(conn: Conn, since: number): Promise<SessionCheck> {
    const { life, exchange } = this.o;
    const ctx = new RequestCtx("ping", true);
    const timeoutMs = this.pingTimeoutMs();
    try {
      await exchange.send(conn, ctx, "ping", undefined, timeoutMs, undefined);
      this.lastPingAt = Date.now();
      return "ok";
    } catch (err) {
      if (!life.isCurrent(conn) || life.stopped) return "gone";
      const d = exchange.judge(conn, ctx, err, {
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
            await exchange.reauthorize(conn, ctx, false, Date.now() + this.o.opts.requestTimeoutMs);
          } catch (e) {
            if (life.authFailed()) return "gone";
            return { trouble: describe(e) };
          }
          return { trouble: "the relay refused the token; it was renewed", now: true };
        case "not_delivered":
        case "resend_read":
          return life.isCurrent(conn) ? { trouble: d.reason } : "gone";
        default:
          // An answer that is not a pong (a JSON-RPC error, 429, 403 …) still shows the session is alive.
          return life.isCurrent(conn) ? "ok" : "gone";
      }
    }
  }
}
