/**
 * The tool cache: the relay's tool list, fetched (every page) when a session opens and again when
 * the server says it changed; clients are told (`toolsChanged`) only when it really did change.
 */
import type { AsyncLocalStorage } from "node:async_hooks";
import type { Logger } from "pino";
import { describe } from "./call-errors.js";
import type { Conn } from "./conn.js";
import { RequestCtx } from "./delivery.js";
import type { AuthBudget, Exchange } from "./exchange.js";

export type ToolList = { tools: Array<Record<string, unknown>> };

export interface ToolCacheOptions {
  requestTimeoutMs: number;
  log: Logger;
  exchange: Exchange;
  als: AsyncLocalStorage<RequestCtx>;
  /** Waits (bounded) for a ready session. */
  readyConn(deadline: number, method: string): Promise<Conn>;
  /** The list changed: tell the clients. */
  changed(): void;
}

export class ToolCache {
  private tools: ToolList | undefined;
  private flight: Promise<void> | undefined;

  constructor(private readonly o: ToolCacheOptions) {}

  /** The cached list, if there is one. */
  get list(): ToolList | undefined {
    return this.tools;
  }

  /** Fetches the list again on a ready session (single flight); a failure keeps the old one. */
  refresh(why: string): Promise<void> {
    if (!this.flight) {
      const { log } = this.o;
      this.flight = this.o.als
        .exit(async () => {
          const before = JSON.stringify(this.tools);
          const conn = await this.o.readyConn(Date.now() + this.o.requestTimeoutMs, "tools/list");
          await this.fetch(conn);
          if (JSON.stringify(this.tools) !== before) {
            log.info({ why, tools: this.tools?.tools.length }, "tool list updated; telling clients");
            this.o.changed();
          }
        })
        .catch((err: unknown) => {
          log.warn({ why, error: describe(err) }, "could not refresh the tool list; keeping the old one");
        })
        .finally(() => {
          this.flight = undefined;
        });
    }
    return this.flight;
  }

  /** Fetches every page of the list on `conn`. */
  async fetch(conn: Conn): Promise<void> {
    const { exchange } = this.o;
    const tools: Array<Record<string, unknown>> = [];
    let cursor: string | undefined;
    for (let page = 0; page < 50; page++) {
      // A server may let initialize through unauthenticated and ask for a token (401) or a
      // wider scope (403 insufficient_scope) only now: log in / step up once each, then resend.
      const budget: AuthBudget = { auth: 1, stepUp: 1 };
      let res: { tools?: Array<Record<string, unknown>>; nextCursor?: string };
      for (;;) {
        const ctx = new RequestCtx("tools/list", true);
        const params = cursor ? { cursor } : undefined;
        try {
          res = (await exchange.send(
            conn,
            ctx,
            "tools/list",
            params,
            this.o.requestTimeoutMs,
            undefined,
          )) as typeof res;
          break;
        } catch (err) {
          const d = exchange.judge(conn, ctx, err);
          if (d.outcome === "reauth" || d.outcome === "step_up") {
            if (await exchange.retryAuth(conn, ctx, d.outcome, budget)) continue;
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
}
