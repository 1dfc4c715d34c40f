/**
 * How callers wait for a ready session (lifecycle.ts): bounded by their deadline, cancelled by
 * their signal, held while the check after a wake runs, and refused at once (UNAVAILABLE, nothing
 * sent) when the next connect attempt is scheduled after their deadline.
 */
import type { EventEmitter } from "node:events";
import { UpstreamError, type UpstreamState, type UpstreamStatus } from "../contracts.js";
import { cancelled } from "./call-errors.js";
import type { Conn } from "./conn.js";

/** What waiting reads of the session (the lifecycle). */
export interface SessionView {
  readonly state: UpstreamState;
  readonly reason: string | undefined;
  readonly conn: Conn | undefined;
  readonly started: boolean;
  readonly stopped: boolean;
  /** The check after a wake, while it runs. */
  readonly wakeFlight: Promise<void> | undefined;
  /** When the next connect attempt is scheduled, if it is. */
  readonly retryAt: number | undefined;
  /** A connect attempt is running. */
  readonly connecting: boolean;
  authFailedError(): UpstreamError;
}

export interface ReadinessOptions {
  /** Where the session announces its state. */
  events: Pick<EventEmitter, "on" | "off">;
  /** Starts the upstream (waiting before `start()` starts it). */
  start(): void;
  /** A configuration problem that no waiting can fix (connect refuses the serial …), if any. */
  configProblem(): string | undefined;
}

export class Readiness {
  constructor(
    private readonly v: SessionView,
    private readonly o: ReadinessOptions,
  ) {}

  whenReady(timeoutMs: number): Promise<void> {
    const v = this.v;
    if (v.state === "ready" && v.conn) return Promise.resolve();
    if (v.state === "auth_failed") return Promise.reject(v.authFailedError());
    if (v.stopped) return Promise.reject(new UpstreamError("UNAVAILABLE", "the upstream session is stopped"));
    if (!v.started) this.o.start();
    const deadline = Date.now() + Math.max(0, timeoutMs);
    // The next attempt is scheduled after the deadline (a 404 or connect's rate limit): waiting
    // cannot help, say why now.
    const tooLate = () =>
      !v.connecting &&
      ((v.retryAt !== undefined && v.retryAt > deadline) || this.o.configProblem() !== undefined);
    if (tooLate()) return Promise.reject(this.notReadyError());
    return new Promise<void>((resolve, reject) => {
      const onState = (s: UpstreamStatus) => {
        if (s.state === "ready") done(() => resolve());
        else if (s.state === "auth_failed") done(() => reject(v.authFailedError()));
        else if (s.state === "stopped") {
          done(() => reject(new UpstreamError("UNAVAILABLE", "the upstream session is stopped")));
        } else if (tooLate()) done(() => reject(this.notReadyError()));
      };
      const timer = setTimeout(() => done(() => reject(this.notReadyError())), Math.max(0, timeoutMs));
      const done = (fn: () => void) => {
        clearTimeout(timer);
        this.o.events.off("state", onState);
        fn();
      };
      this.o.events.on("state", onState);
    });
  }

  /** UNAVAILABLE naming the state, its reason and the next attempt. */
  private notReadyError(): UpstreamError {
    const v = this.v;
    const next = v.retryAt !== undefined ? `; next attempt at ${new Date(v.retryAt).toISOString()}` : "";
    return new UpstreamError(
      "UNAVAILABLE",
      `the Loxone relay is not reachable right now (${v.state}${v.reason ? `: ${v.reason}` : ""}); nothing was sent, try again later${next}`,
      undefined,
      v.retryAt !== undefined ? { retryAt: v.retryAt } : undefined,
    );
  }

  /** Waits (bounded) until a session is ready and returns it. */
  async readyConn(deadline: number, method: string, signal: AbortSignal | undefined): Promise<Conn> {
    const v = this.v;
    if (!v.started) this.o.start();
    for (;;) {
      if (v.stopped)
        throw new UpstreamError("UNAVAILABLE", "the upstream session is stopped; nothing was sent");
      const conn = v.conn;
      const flight = v.wakeFlight;
      if (conn && v.state === "ready" && !conn.retired && !flight) return conn;
      if (v.state === "auth_failed") throw v.authFailedError();
      if (signal?.aborted) throw cancelled(method, false);
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new UpstreamError(
          "UNAVAILABLE",
          `the Loxone relay is not reachable right now (${v.state}${v.reason ? `: ${v.reason}` : ""}); ${method} was not sent, try again later`,
          undefined,
          v.retryAt ? { retryAt: v.retryAt } : undefined,
        );
      }
      if (v.retryAt !== undefined && v.retryAt > deadline) {
        // The next attempt is scheduled after our deadline (e.g. connect rate limit): fail now.
        throw new UpstreamError(
          "UNAVAILABLE",
          `the Loxone relay is not reachable right now (${v.reason ?? v.state}); ${method} was not sent, next attempt at ${new Date(v.retryAt).toISOString()}`,
          undefined,
          { retryAt: v.retryAt },
        );
      }
      if (flight) await settledWithin(flight, left, signal);
      else await this.nextState(left, signal);
    }
  }

  /** Resolves on the next state change, after `ms`, or when `signal` aborts. */
  nextState(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.o.events.off("state", done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      this.o.events.on("state", done);
      signal?.addEventListener("abort", done, { once: true });
    });
  }
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
