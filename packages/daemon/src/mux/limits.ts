/**
 * Limits that keep one client from taking the daemon down or starving the others: a fair queue
 * for requests to the relay (round robin over connections, so a client with 2,000 requests waits
 * its turn behind a client with one) and the defaults of every socket limit (docs/daemon.md).
 */
import { ErrorCodes, McpError } from "@loxmcp/common";

export interface MuxLimits {
  /** Socket connections at once, control connections included. */
  maxConnections: number;
  /** Of those, kept for control connections (`loxmcp status`, `stop-all` always get through). */
  controlReserve: number;
  /** Requests one connection may have in flight. */
  maxInFlightPerConnection: number;
  /** Requests to the relay at once, over all clients. */
  upstreamConcurrency: number;
  /** Requests waiting for a relay slot, over all clients (beyond: refused). */
  upstreamQueue: number;
  /** Answers buffered for a client that does not read; beyond, it is disconnected. */
  maxBufferedBytes: number;
  /** A client that has not read its pending answers for this long is disconnected. */
  stalledClientMs: number;
  /** A connection that says nothing (no hello, no request) within this time is closed. */
  idleHandshakeMs: number;
  /**
   * HTTP connections of the person's local page (live updates included) at once. They count with
   * the socket's connections and never take the slots kept for control connections.
   */
  pageConnections: number;
}

export const DEFAULT_LIMITS: MuxLimits = {
  maxConnections: 64,
  controlReserve: 8,
  maxInFlightPerConnection: 32,
  upstreamConcurrency: 8,
  upstreamQueue: 512,
  maxBufferedBytes: 8 * 1024 * 1024,
  stalledClientMs: 30_000,
  idleHandshakeMs: 10_000,
  pageConnections: 16,
};

interface Waiter {
  resolve: (release: () => void) => void;
  reject: (err: Error) => void;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

/**
 * A counting semaphore whose waiters are served round robin by key (the connection). An urgent
 * waiter (the person's `loxmcp stop-all`) is never refused for a full queue and is served before
 * every other waiter: a flood of AI requests can neither refuse nor delay an emergency stop.
 */
export class FairQueue {
  private active = 0;
  private waiting = 0;
  private readonly queues = new Map<string, Waiter[]>();
  /** Keys in the order they get their next turn. */
  private readonly turn: string[] = [];
  /** Urgent waiters, first come first served, ahead of every key's turn. */
  private readonly urgent: Waiter[] = [];

  constructor(
    private readonly slots: number,
    private readonly maxWaiting: number,
  ) {}

  get inUse(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting;
  }

  acquire(key: string, signal?: AbortSignal, urgent = false): Promise<() => void> {
    if (this.active < this.slots && (this.waiting === 0 || urgent)) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting >= this.maxWaiting && !urgent) {
      return Promise.reject(
        new McpError(
          ErrorCodes.TooBusy,
          `the daemon has ${this.waiting} requests waiting for the Loxone relay already; nothing was sent, try again in a moment`,
          { limit: this.maxWaiting, setting: "limits.upstreamQueue" },
        ),
      );
    }
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        resolve,
        reject,
        signal,
        onAbort: () => {
          const u = this.urgent.indexOf(w);
          if (u >= 0) {
            this.urgent.splice(u, 1);
            this.waiting--;
          }
          const q = this.queues.get(key);
          const i = q?.indexOf(w) ?? -1;
          if (q && i >= 0) {
            q.splice(i, 1);
            this.waiting--;
            if (q.length === 0) this.dropKey(key);
          }
          reject(signal?.reason as Error);
        },
      };
      signal?.addEventListener("abort", w.onAbort, { once: true });
      if (urgent) {
        this.urgent.push(w);
        this.waiting++;
        return;
      }
      let q = this.queues.get(key);
      if (!q) {
        q = [];
        this.queues.set(key, q);
        this.turn.push(key);
      }
      q.push(w);
      this.waiting++;
    });
  }

  private dropKey(key: string): void {
    this.queues.delete(key);
    const i = this.turn.indexOf(key);
    if (i >= 0) this.turn.splice(i, 1);
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.active--;
      this.next();
    };
  }

  private next(): void {
    while (this.active < this.slots && this.urgent.length > 0) {
      const w = this.urgent.shift() as Waiter;
      this.waiting--;
      w.signal?.removeEventListener("abort", w.onAbort);
      this.active++;
      w.resolve(this.releaser());
    }
    while (this.active < this.slots && this.turn.length > 0) {
      const key = this.turn.shift() as string;
      const q = this.queues.get(key);
      const w = q?.shift();
      if (!q || !w) {
        this.queues.delete(key);
        continue;
      }
      if (q.length > 0) this.turn.push(key);
      else this.queues.delete(key);
      this.waiting--;
      w.signal?.removeEventListener("abort", w.onAbort);
      this.active++;
      w.resolve(this.releaser());
    }
  }
}
