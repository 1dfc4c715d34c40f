/**
 * Live updates for the page: server-sent events. While at least one page listens, the state is
 * looked at twice a second and sent when it changed (a held call shows up without a reload); a
 * comment every 15 s keeps the stream open through idle periods. A stream whose session ended is
 * closed.
 */
import type { ServerResponse } from "node:http";
import type { Logger } from "pino";
import type { PageSession } from "./auth.js";

const TICK_MS = 500;
const KEEPALIVE_MS = 15_000;

export interface LiveState {
  data: unknown;
  /** Changes exactly when the page should redraw (times that merely count down are left out). */
  digest: string;
}

interface Listener {
  res: ServerResponse;
  session: PageSession;
}

export class LiveUpdates {
  private readonly listeners = new Set<Listener>();
  private timer: NodeJS.Timeout | undefined;
  private keepalive: NodeJS.Timeout | undefined;
  private lastDigest = "";
  private busy = false;

  constructor(
    private readonly state: () => Promise<LiveState>,
    private readonly alive: (s: PageSession) => boolean,
    private readonly log: Logger,
  ) {}

  get size(): number {
    return this.listeners.size;
  }

  /** Turns the response into an event stream and sends the state at once. */
  async add(res: ServerResponse, session: PageSession): Promise<void> {
    res.writeHead(200, {
      "Content-Type": "text/event-stream; charset=utf-8",
      "X-Accel-Buffering": "no",
    });
    res.socket?.setTimeout(0);
    res.write("retry: 2000\n\n");
    const l: Listener = { res, session };
    this.listeners.add(l);
    res.on("close", () => {
      this.listeners.delete(l);
      if (this.listeners.size === 0) this.idle();
    });
    try {
      // Only to the new page: the others get it with the next change.
      send(res, "state", (await this.state()).data);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, "page: could not build the state");
    }
    if (!this.timer) {
      this.timer = setInterval(() => void this.tick(), TICK_MS);
      this.timer.unref();
      this.keepalive = setInterval(() => {
        for (const x of this.listeners) x.res.write(": keep-alive\n\n");
      }, KEEPALIVE_MS);
      this.keepalive.unref();
    }
  }

  /** Sends the state now if it changed (also called right after an action on the page). */
  async tick(): Promise<void> {
    if (this.busy || this.listeners.size === 0) return;
    this.busy = true;
    try {
      for (const l of this.listeners) {
        if (!this.alive(l.session)) {
          send(l.res, "signed-out", { reason: "the page's session ended" });
          l.res.end();
          this.listeners.delete(l);
        }
      }
      if (this.listeners.size === 0) return;
      const s = await this.state();
      if (s.digest === this.lastDigest) return;
      this.lastDigest = s.digest;
      for (const l of this.listeners) send(l.res, "state", s.data);
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, "page: could not build the state");
    } finally {
      this.busy = false;
    }
  }

  /** Closes every stream (the daemon stops). */
  close(): void {
    for (const l of this.listeners) l.res.end();
    this.listeners.clear();
    this.idle();
  }

  private idle(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.keepalive) clearInterval(this.keepalive);
    this.timer = undefined;
    this.keepalive = undefined;
    this.lastDigest = "";
  }
}

function send(res: ServerResponse, event: string, data: unknown): void {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}
