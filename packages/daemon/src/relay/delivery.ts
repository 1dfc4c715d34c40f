/**
 * Delivery tracking: what is known of one request on its way to the relay (sent? refused before
 * it left? answered with an HTTP error that means it never ran? lost after it may have run?),
 * carried through the SDK by AsyncLocalStorage and filled in by the transport (transport.ts), which
 * also watches the request's SSE answer.
 */
import type { ServerRequest } from "../contracts.js";
import type { AuthChallenge } from "./auth/manager.js";

/** HTTP statuses that mean the server did not execute the request. */
export const NOT_EXECUTED = new Set([400, 401, 403, 404, 405, 406, 408, 409, 413, 415, 422, 429, 503]);
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
