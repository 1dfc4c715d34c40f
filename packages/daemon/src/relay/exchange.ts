/**
 * One request on the session: sent inside its own delivery-tracking context (AsyncLocalStorage,
 * read by the transport's fetch wrapper), its failure judged by the classifier (failures.ts) and
 * the actions that decision names performed, a 401/403 answered (the one auth-retry helper), and
 * the server→client requests raised meanwhile routed to the request that caused them.
 */
import type { AsyncLocalStorage } from "node:async_hooks";
import { ErrorCodes, McpError } from "@loxmcp/common";
import { type ServerRequest, UpstreamError } from "../contracts.js";
import { AuthError } from "./auth/errors.js";
import type { AuthManager } from "./auth/manager.js";
import { describe } from "./call-errors.js";
import { type Conn, closeConn } from "./conn.js";
import type { RequestCtx } from "./delivery.js";
import { classifyFailure, type Decision, type Failure, type RequestDecision } from "./failures.js";
import type { HttpPool } from "./http.js";
import type { Lifecycle } from "./lifecycle.js";

/** What the caller says of a failure besides what delivery tracking knows. */
type How = Pick<Failure, "purpose" | "params" | "sinceWakeMs" | "pingTimeoutMs">;

/** How often one request may still answer a 401 (refresh / log in) and a 403 insufficient_scope (step up). */
export interface AuthBudget {
  auth: number;
  stepUp: number;
}

export interface ExchangeOptions {
  als: AsyncLocalStorage<RequestCtx>;
  life: Lifecycle;
  auth: AuthManager;
  http: HttpPool;
  /** The access token now stored (what a step-up got). */
  storedToken(): string | undefined;
  /** Ping the session now (a write broke before any answer and is not resent). */
  checkSession(): void;
}

export class Exchange {
  private readonly inflight = new Set<RequestCtx>();
  /** The last step-up: the scope asked for and the access token it produced. */
  private lastStepUp: { scope: string; token: string | undefined } | undefined;

  constructor(private readonly o: ExchangeOptions) {}

  /** One send on one connection, inside the request's ALS context. */
  async send(
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
      const result = await this.o.als.run(ctx, () =>
        conn.client.request(req, {
          signal: ctx.ac.signal,
          // Our own timer decides (ctx.abortReason); the client's is only a backstop.
          timeout: timeoutMs + 60_000,
        }),
      );
      this.o.life.answered();
      return result;
    } finally {
      ctx.settle();
      clearTimeout(timer);
      signal?.removeEventListener("abort", onCallerAbort);
      this.inflight.delete(ctx);
      conn.inflight--;
      if (conn.retired && conn.inflight === 0) void closeConn(conn);
    }
  }

  /** Aborts every request in flight (the daemon is stopping). */
  abortAll(): void {
    for (const ctx of this.inflight) ctx.abort("caller");
  }

  /** Classifies a failed request (failures.ts) and performs the actions the decision names. */
  judge(
    conn: Conn,
    ctx: RequestCtx,
    err: unknown,
    how?: How & { purpose: "request" | "ping" },
  ): RequestDecision;
  judge(conn: Conn, ctx: RequestCtx, err: unknown, how: How): Decision;
  judge(conn: Conn, ctx: RequestCtx, err: unknown, how: How = { purpose: "request" }): Decision {
    const { life, auth } = this.o;
    const d = classifyFailure({
      ...how,
      attempt: ctx,
      error: err,
      elapsedMs: Date.now() - ctx.startedAt,
      entry: conn.entry,
      current: life.isCurrent(conn),
      loginImpossible: auth.failedReason,
    });
    if (d.outcome === "auth_failed") life.enterAuthFailed(d.reason);
    if (d.drop) life.dropConn(conn, d.drop.reresolve ? "network" : "session", d.drop.reason);
    if (d.resetPool) this.o.http.reset();
    if (d.checkSession) this.o.checkSession();
    return d;
  }

  /**
   * The one answer to a 401 (refresh the token, or log in) or a 403 insufficient_scope (step up)
   * met by a request on a session, each at most as often as `budget` allows. True: authorized
   * again, resend (a 401/403 never ran); false: that kind was already answered as often as
   * allowed. Throws what `reauthorize` throws.
   * (Opening a session, before there is one to judge, answers its own 401/403 in lifecycle.ts.)
   */
  async retryAuth(
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
  async reauthorize(conn: Conn, ctx: RequestCtx, stepUp = false, deadline?: number): Promise<void> {
    const scope = ctx.challenge?.scope ?? "";
    if (stepUp && this.lastStepUp?.scope === scope && this.lastStepUp.token === ctx.usedToken) {
      // The token a step-up got for exactly this scope is refused for it: another authorization
      // would not change that (and would loop). Nothing ran.
      throw new UpstreamError(
        "AUTH_FAILED",
        `the server refuses ${ctx.method} for insufficient scope even with a token for "${scope}"; it did not run`,
      );
    }
    const { auth } = this.o;
    const flight = stepUp
      ? auth.stepUp(conn.entry, ctx.challenge ?? {})
      : auth.handleUnauthorized(conn.entry, ctx.usedToken, ctx.challenge ?? {});
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
    if (stepUp) this.lastStepUp = { scope, token: this.o.storedToken() };
  }

  private authError(err: unknown, method: string): UpstreamError {
    const { life, auth } = this.o;
    if (err instanceof AuthError && auth.failedReason) {
      life.enterAuthFailed(auth.failedReason);
      return life.authFailedError();
    }
    return new UpstreamError("UNAVAILABLE", `${describe(err)}; ${method} did not run`);
  }

  /** Server→client request: to the request that caused it, else the oldest one that can answer. */
  async routeServerRequest(method: string, params: unknown): Promise<never> {
    const ctx = this.o.als.getStore();
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
      throw new McpError(ErrorCodes.MethodNotFound, `no connected client can answer ${method} right now`);
    }
    const req: ServerRequest = params === undefined ? { method } : { method, params };
    return (await target.onServerRequest(req)) as never;
  }
}
