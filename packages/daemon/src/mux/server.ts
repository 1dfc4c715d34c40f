/**
 * The Unix-socket server. The socket lives in a private runtime dir (0700, checked with lstat)
 * and is itself 0600 (created under umask 0177, then chmod'ed). Node exposes no SO_PEERCRED, so
 * peers of another uid are kept out by these modes only (tested), as with ssh-agent on
 * platforms without peer credentials. The system daemon (hardened mode) opens its socket to its
 * group (dir 0750, socket 0660) and adds an admin socket (0600) that only root and its own user
 * can open: connections from there are marked `admin`.
 *
 * Framing: newline-delimited JSON-RPC, max 4 MiB per frame. An oversize frame gets one
 * JSON-RPC error and closes THAT connection; a malformed line gets a parse error and the
 * connection stays. Ids come back exactly as written (jsonrpc-edges.ts).
 *
 * Limits (mux/limits.ts, docs/daemon.md): connections at once with slots kept for control
 * connections; a connection that says nothing is closed; a client that does not read its answers
 * is first not read from (backpressure), then disconnected once its unread answers pass a cap.
 */
import { chmodSync, unlinkSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import {
  ErrorCodes,
  encodeFrame,
  ensurePrivateDir,
  errorResponse,
  LineDecoder,
  MAX_FRAME_BYTES,
} from "@loxmcp/common";
import type { Logger } from "pino";
import type { ForwardCall, Principal } from "../contracts.js";
import { forwardFor } from "./forward.js";
import { encodeAnswer, parseFrame } from "./jsonrpc-edges.js";
import { DEFAULT_LIMITS, FairQueue, type MuxLimits } from "./limits.js";
import { ProgressRouter } from "./progress.js";
import { ClientSession, type SessionDeps } from "./session.js";

/** Unread answers above this pause reading from that client until it catches up. */
const PAUSE_ABOVE_BYTES = 256 * 1024;
/** A control connection with nothing in flight and no traffic for this long is closed. */
const IDLE_CONTROL_MS = 5_000;

export interface MuxServerOptions {
  socketPath: string;
  runtimeDir: string;
  /**
   * Hardened mode (the system daemon): the runtime dir is 0750 and the socket 0660, so the
   * daemon's group (the person) may connect; the admin socket (0600) is root's way in. Default:
   * 0700 / 0600 and no admin socket.
   */
  runtimeDirMode?: number;
  socketMode?: number;
  adminSocketPath?: string;
  /** What every session gets; progress routing is the server's own. */
  deps: Omit<SessionDeps, "progress">;
  logger: Logger;
  maxFrameBytes?: number;
  limits?: Partial<MuxLimits>;
}

export class MuxServer {
  private server: Server | undefined;
  private adminServer: Server | undefined;
  private readonly sessions = new Map<
    string,
    { session: ClientSession; socket: Socket; lastActive: number }
  >();
  private idleSweep: NodeJS.Timeout | undefined;
  private nextConn = 1;
  /** Open HTTP connections of the person's page (counted with the socket's connections). */
  private pageConns = 0;
  private listening = false;
  private shuttingDown = false;
  private readonly log: Logger;
  readonly limits: MuxLimits;
  private readonly upstreamSlots: FairQueue;
  /** Which session an upstream progress notification belongs to. */
  private readonly progress = new ProgressRouter();
  private readonly onNotification = (n: { method: string; params?: unknown }) =>
    this.fanOut(n.method, n.params);
  private readonly onToolsChanged = () => this.fanOut("notifications/tools/list_changed");

  constructor(private readonly opts: MuxServerOptions) {
    this.log = opts.logger.child({ component: "mux" });
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.upstreamSlots = new FairQueue(this.limits.upstreamConcurrency, this.limits.upstreamQueue);
  }

  /**
   * A forward for a tools/call the daemon makes of its own accord (the policy's `loxmcp
   * stop-all`): the path of every client's call (forward.ts) — a relay slot, then the relay —
   * ended by `signal`; the slot is the next free one, ahead of every waiting client call.
   */
  forwarder(holder: string, signal: AbortSignal): ForwardCall {
    return forwardFor({
      upstream: this.opts.deps.upstream,
      slots: this.upstreamSlots,
      holder,
      signal,
      urgent: true,
    });
  }

  /** Relay slots in use and requests waiting for one (status). */
  upstreamQueue(): { inUse: number; waiting: number } {
    return { inUse: this.upstreamSlots.inUse, waiting: this.upstreamSlots.queued };
  }

  private mcpConnections(): number {
    let n = 0;
    for (const { session } of this.sessions.values()) if (session.role === "mcp") n++;
    return n;
  }

  /** HTTP connections of the person's page open now. */
  get pageConnections(): number {
    return this.pageConns;
  }

  /**
   * Admits one HTTP connection of the person's page (docs/page.md): it counts with the socket's
   * connections, at most `limits.pageConnections` of them, and never into the slots kept for
   * control connections (so `loxmcp status` and `stop-all` still get through when the page's port
   * is flooded, even by another local user). Returns the release function, or undefined (refused).
   */
  admitPageConnection(): (() => void) | undefined {
    const lim = this.limits;
    if (this.pageConns >= lim.pageConnections || this.sessions.size + this.pageConns >= lim.maxConnections) {
      this.opts.deps.counters.refusedConnections++;
      return undefined;
    }
    this.pageConns++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.pageConns--;
    };
  }

  async listen(): Promise<void> {
    ensurePrivateDir(this.opts.runtimeDir, this.opts.runtimeDirMode ?? 0o700);
    this.server = await this.listenOn(this.opts.socketPath, this.opts.socketMode ?? 0o600, false);
    if (this.opts.adminSocketPath) {
      this.adminServer = await this.listenOn(this.opts.adminSocketPath, 0o600, true);
    }
    this.listening = true;
    // Control connections are one request each (the CLI): one that idles holds a slot the person's
    // `stop-all` or `status` may need, so it is closed.
    this.idleSweep = setInterval(() => {
      const now = Date.now();
      for (const e of this.sessions.values()) {
        if (
          e.session.role === "control" &&
          e.session.inFlightCount === 0 &&
          now - e.lastActive > IDLE_CONTROL_MS
        ) {
          e.session.onClosed();
          e.socket.destroy();
        }
      }
    }, 1_000);
    this.idleSweep.unref();
    this.opts.deps.upstream.on("notification", this.onNotification);
    this.opts.deps.upstream.on("toolsChanged", this.onToolsChanged);
    this.log.info({ socket: this.opts.socketPath }, "listening");
  }

  /** Listens on `path`, created under a umask that never lets it be wider than `mode`, then chmod'ed. */
  private async listenOn(path: string, mode: number, admin: boolean): Promise<Server> {
    const server = createServer((socket) => this.accept(socket, admin));
    const oldMask = process.umask(0o777 & ~mode);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(path, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
    chmodSync(path, mode);
    server.on("error", (err) => this.log.error({ err }, "socket server error"));
    return server;
  }

  /** Connected MCP clients (for status). */
  clients(): Principal[] {
    return [...this.sessions.values()].filter((e) => e.session.isClient()).map((e) => e.session.identity());
  }

  inFlight(): number {
    let n = 0;
    for (const { session } of this.sessions.values()) n += session.inFlightCount;
    return n;
  }

  /** Sends a notification to every client that speaks MCP with us. */
  fanOut(method: string, params?: unknown): void {
    if (method === "notifications/progress" && this.progress.deliver(params)) return;
    if (method === "notifications/cancelled") return; // cancels a server→client request: not routable
    for (const { session } of this.sessions.values()) {
      if (session.mcpActive && !session.isClosed) {
        session.notify(method, params);
        this.opts.deps.counters.notificationsFannedOut++;
      }
    }
  }

  private accept(socket: Socket, admin = false): void {
    const connId = `c${this.nextConn++}`;
    const counters = this.opts.deps.counters;
    const lim = this.limits;
    // MCP clients may hold at most maxConnections − controlReserve; the hard cap leaves room above
    // that for connections whose role is not known yet, so control connections get through.
    if (this.sessions.size + this.pageConns >= lim.maxConnections + lim.controlReserve) {
      counters.refusedConnections++;
      this.log.warn(
        { conn: connId, limit: lim.maxConnections },
        "connection refused: too many connections (limits.maxConnections)",
      );
      socket.on("error", () => {});
      socket.end(
        encodeFrame(
          errorResponse(
            null,
            ErrorCodes.TooBusy,
            `too many connections to loxmcpd (at most ${lim.maxConnections}); close some MCP clients or raise limits.maxConnections`,
          ),
        ),
      );
      setTimeout(() => socket.destroy(), 1_000).unref();
      return;
    }
    counters.connections++;
    const decoder = new LineDecoder(this.opts.maxFrameBytes ?? MAX_FRAME_BYTES);
    let closing = false;
    let paused = false;
    const drop = (why: string) => {
      if (closing) return;
      closing = true;
      this.log.warn({ conn: connId, client: session.identity().name }, why);
      session.onClosed();
      socket.destroy();
    };
    const write = (message: unknown) => {
      if (closing || socket.destroyed || !socket.writable) return;
      socket.write(encodeAnswer(message));
      const buffered = socket.writableLength;
      if (buffered > lim.maxBufferedBytes) {
        counters.slowClientsDropped++;
        drop(
          `disconnected: the client did not read its answers (${buffered} bytes unread > limits.maxBufferedBytes)`,
        );
      } else if (buffered > PAUSE_ABOVE_BYTES && !paused) {
        // Read nothing more from a client that does not read: its requests wait in the kernel,
        // and if it still reads nothing for limits.stalledClientMs, it is disconnected.
        paused = true;
        socket.pause();
        const stalled = setTimeout(() => {
          counters.slowClientsDropped++;
          drop(
            `disconnected: the client read none of its answers for ${lim.stalledClientMs} ms (limits.stalledClientMs)`,
          );
        }, lim.stalledClientMs);
        stalled.unref();
        socket.once("drain", () => {
          clearTimeout(stalled);
          paused = false;
          if (closing) return;
          handleBacklog();
          if (!paused) socket.resume();
        });
      }
    };
    const session = new ClientSession(connId, write, {
      ...this.opts.deps,
      progress: this.progress,
      ...(admin ? { admin: true } : {}),
      shuttingDown: () => this.shuttingDown,
      maxInFlight: lim.maxInFlightPerConnection,
      upstreamSlots: this.upstreamSlots,
      admitMcp: () => this.mcpConnections() + this.pageConns <= lim.maxConnections - lim.controlReserve,
      refuse: (message) => {
        counters.refusedConnections++;
        if (closing) return;
        closing = true;
        this.sessions.delete(connId);
        this.log.warn({ conn: connId }, "MCP client refused: too many MCP clients (limits.maxConnections)");
        session.onClosed();
        socket.end(encodeFrame(errorResponse(null, ErrorCodes.TooBusy, message)));
        setTimeout(() => socket.destroy(), 1_000).unref();
      },
    });
    const entry = { session, socket, lastActive: Date.now() };
    this.sessions.set(connId, entry);
    this.log.debug({ conn: connId }, "connection opened");
    const idle = setTimeout(() => {
      if (session.role === undefined) drop("closed a connection that said nothing (limits.idleHandshakeMs)");
    }, lim.idleHandshakeMs);
    idle.unref();

    /** Lines read but not handled yet: handling stops while the client is not reading. */
    let backlog: string[] = [];
    const handleBacklog = () => {
      while (backlog.length > 0 && !paused && !closing) {
        const line = backlog.shift() as string;
        let msg: unknown;
        try {
          msg = parseFrame(line);
        } catch (err) {
          this.opts.deps.counters.parseErrors++;
          write(
            errorResponse(
              null,
              ErrorCodes.ParseError,
              `parse error: the line is not valid JSON (${(err as Error).message})`,
            ),
          );
          continue;
        }
        session.handleMessage(msg);
      }
    };
    socket.on("data", (chunk: Buffer) => {
      entry.lastActive = Date.now();
      if (closing) return;
      const { lines, oversized } = decoder.push(chunk);
      backlog = backlog.length > 0 ? backlog.concat(lines) : lines;
      handleBacklog();
      if (oversized > 0) {
        closing = true;
        this.opts.deps.counters.oversizeFrames++;
        const max = this.opts.maxFrameBytes ?? MAX_FRAME_BYTES;
        const message = `frame larger than ${max} bytes (4 MiB) refused and this connection closed; split the request or send less data`;
        this.log.warn(
          { conn: connId, client: session.identity().name },
          "oversize frame: closing this connection",
        );
        session.onClosed();
        if (!socket.destroyed && socket.writable) {
          socket.end(encodeFrame(errorResponse(null, ErrorCodes.InvalidRequest, message)));
        }
        // Do not wait for a slow peer to read: drop it shortly after the error is flushed.
        setTimeout(() => socket.destroy(), 1_000).unref();
      }
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code !== "EPIPE" && err.code !== "ECONNRESET")
        this.log.debug({ conn: connId, err }, "socket error");
    });
    socket.on("close", () => {
      clearTimeout(idle);
      session.onClosed();
      this.sessions.delete(connId);
      if (session.isClient())
        this.log.info({ conn: connId, client: session.identity().name }, "client disconnected");
    });
  }

  /** Stops accepting new connections and new MCP requests (requests in flight go on). */
  stopAccepting(): void {
    if (this.idleSweep) clearInterval(this.idleSweep);
    this.shuttingDown = true;
    if (!this.server || !this.listening) return;
    this.listening = false;
    this.server.close();
    this.adminServer?.close();
    this.opts.deps.upstream.off("notification", this.onNotification);
    this.opts.deps.upstream.off("toolsChanged", this.onToolsChanged);
  }

  /** Waits until no request is in flight, at most `deadlineMs`. Returns how many are left. */
  async drain(deadlineMs: number): Promise<number> {
    const end = Date.now() + deadlineMs;
    while (this.inFlight() > 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 25));
    }
    return this.inFlight();
  }

  /** Answers what is still in flight with an error, closes every connection, removes the socket. */
  async close(reason = "loxmcpd is shutting down"): Promise<void> {
    this.stopAccepting();
    const flushes: Promise<void>[] = [];
    for (const { session, socket } of this.sessions.values()) {
      session.abortAll(reason);
      session.onClosed();
      flushes.push(
        new Promise<void>((resolve) => {
          if (socket.destroyed) return resolve();
          socket.once("close", () => resolve());
          socket.end();
          setTimeout(() => {
            socket.destroy();
            resolve();
          }, 500).unref();
        }),
      );
    }
    await Promise.all(flushes);
    this.sessions.clear();
    for (const path of [this.opts.socketPath, this.opts.adminSocketPath]) {
      try {
        if (path) unlinkSync(path);
      } catch {
        // already gone
      }
    }
  }
}
