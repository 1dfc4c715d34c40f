/**
 * Opening one session: the relay entry (the direct URL, or connect's answer, cached), then a new
 * `Conn` and initialize, answering its own 401 (refresh / log in) and 403 insufficient_scope (step
 * up) and a kept-alive connection the relay had closed (initialize only opens a session: it may
 * always be sent again). Any other failure is a `ConnectError` (failures.ts) saying whether to ask
 * connect for the current relay before the next attempt; the lifecycle schedules that attempt.
 */
import type { AsyncLocalStorage } from "node:async_hooks";
import type { Logger } from "pino";
import type { UpstreamState } from "../contracts.js";
import type { AuthManager } from "./auth/manager.js";
import { type Conn, type ConnHandlers, type ConnOptions, openConn } from "./conn.js";
import { RequestCtx } from "./delivery.js";
import { classifyInitFailure } from "./failures.js";
import type { HttpPool } from "./http.js";
import type { RelayResolver } from "./resolver.js";
import { safeUrl } from "./url.js";

export interface SessionOpenerOptions {
  opts: { requestTimeoutMs: number } & Omit<ConnOptions, "transport">;
  log: Logger;
  auth: AuthManager;
  /** Connect mode; `direct` (the configured URL) otherwise. */
  resolver: RelayResolver | undefined;
  direct: string | undefined;
  http: HttpPool;
  als: AsyncLocalStorage<RequestCtx>;
  /** What every session's transport sends with (the pool, the Bearer token, delivery tracking). */
  transport: ConnOptions["transport"];
  /** What every new session reports to. */
  handlers: ConnHandlers;
}

/** One attempt, as the lifecycle sees it. */
export interface OpenAttempt {
  /** The entry of the previous session, if there was one (a new resolve then says why). */
  previousEntry: string | undefined;
  /** The entry this attempt goes to, once known. */
  resolved(entry: string): void;
  /** A step: resolving, connecting, authenticating. */
  progress(state: UpstreamState): void;
  stopped(): boolean;
  /** The session answered initialize (called at once, in the same turn). */
  opened(conn: Conn): Promise<void>;
}

export class SessionOpener {
  private connSeq = 0;

  constructor(private readonly o: SessionOpenerOptions) {}

  /** Opens a session and hands it to `a.opened`; nothing when the upstream stopped. Throws why it failed. */
  async open(a: OpenAttempt): Promise<void> {
    // (Without a pause when the entry is known: the first step is announced in the caller's turn.)
    const entry = this.knownEntry() || (await this.resolveEntry(a));
    a.resolved(entry);
    let authTries = 0;
    let brokenTries = 0;
    const { auth, log } = this.o;
    const timeoutMs = this.o.opts.requestTimeoutMs;
    for (;;) {
      if (a.stopped()) return;
      a.progress(auth.hasTokens() ? "connecting" : "authenticating");
      const conn = this.newConn(entry);
      const ctx = new RequestCtx("initialize", true);
      const timer = setTimeout(() => ctx.abort("timeout"), timeoutMs);
      try {
        await this.o.als.run(ctx, () =>
          conn.client.connect(conn.transport, { signal: ctx.ac.signal, timeout: timeoutMs + 60_000 }),
        );
      } catch (err) {
        await conn.client.close().catch(() => {});
        if (a.stopped()) return;
        const d = classifyInitFailure({ attempt: ctx, error: err, entry, brokenTries, authTries });
        if (d.outcome === "token_error") throw err;
        if (d.outcome === "fail") throw d.error;
        if (d.outcome === "retry") {
          // A pooled connection the relay had closed: initialize again on a new connection.
          brokenTries++;
          this.o.http.reset();
          log.info(
            { entry: safeUrl(entry), code: ctx.netCode },
            "the connection broke before initialize was answered; sending it again on a new connection",
          );
          continue;
        }
        authTries++;
        a.progress("authenticating");
        if (d.outcome === "forbidden") throw d.error;
        if (d.outcome === "step_up") await auth.stepUp(entry, ctx.challenge ?? {});
        else await auth.handleUnauthorized(entry, ctx.usedToken, ctx.challenge ?? {});
        continue;
      } finally {
        ctx.settle();
        clearTimeout(timer);
      }
      if (a.stopped()) {
        await conn.client.close().catch(() => {});
        return;
      }
      await a.opened(conn);
      return;
    }
  }

  /** The direct URL, or connect's cached answer. */
  private knownEntry(): string | undefined {
    return this.o.direct || this.o.resolver!.cached();
  }

  private async resolveEntry(a: OpenAttempt): Promise<string> {
    a.progress("resolving");
    return this.o.resolver!.resolve(a.previousEntry ? "the previous relay entry failed" : "first connect");
  }

  private newConn(entry: string): Conn {
    const { opts } = this.o;
    const o = {
      transport: this.o.transport,
      clientInfo: opts.clientInfo,
      clientCapabilities: opts.clientCapabilities,
    };
    return openConn(++this.connSeq, entry, o, this.o.handlers);
  }
}
