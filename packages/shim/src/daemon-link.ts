/**
 * The shim's link to the daemon socket: connecting (starting a daemon on demand) with jittered
 * backoff, `loxmcp/hello` and the readiness `ping` on each connection, back-pressure between the
 * client's stdin and the socket, and noticing that the connection is gone. What goes over the
 * link, and what becomes of the daemon's messages, is the bridge's (bridge.ts).
 *
 * Readiness: right after each connect the shim says `loxmcp/hello` and pings under a shim-internal
 * id (`loxmcp-shim-ready-<gen>`). Until the daemon answers that ping the link is not ready and the
 * bridge keeps the client's messages queued; `ready()` is when it may replay the session and send
 * them.
 */
import type { Socket } from "node:net";
import {
  type ConnectOrStartOptions,
  connectOrStartDaemon,
  DaemonUnreachableError,
  type Env,
  ErrorCodes,
  isResponse,
  type JsonRpcResponse,
  LineDecoder,
  type LoxmcpPaths,
  MAX_FRAME_BYTES,
} from "@loxmcp/common";
import { VERSION } from "./version.js";

/** Frames from our own daemon may be larger than client frames (big tool results): cap for memory only. */
const MAX_DAEMON_FRAME_BYTES = 16 * MAX_FRAME_BYTES;

export interface Logger {
  debug(msg: string): void;
  warn(msg: string): void;
}

export interface DaemonLinkOptions {
  /** The client's stdin: paused while the socket cannot take more. */
  input: NodeJS.ReadableStream;
  env: Env;
  paths: LoxmcpPaths;
  /** `--name` (null: the daemon uses clientInfo.name). */
  name: string | null;
  startTimeoutMs: number;
  log: Logger;
  /** For tests: override how the daemon is reached. */
  connect?: (opts: ConnectOrStartOptions) => Promise<{ socket: Socket }>;
}

/** What the bridge does when something happens on the link. */
export interface DaemonLinkEvents {
  /** Client messages are waiting: a daemon may be started for them. */
  wantsStart(): boolean;
  /** A daemon could not be reached although one could be started (`startError` says why). */
  startFailed(): void;
  /** The daemon answered the readiness ping on this connection. */
  ready(): void;
  /** Before it was ready the daemon refused this connection (an error with a null id). */
  refused(code: number, message: string): void;
  /** A message from the daemon; responses only once the connection is ready. */
  message(line: string, m: unknown): void;
  /** The connection is gone. */
  lost(): void;
  /** After a loss: whether to reconnect. */
  shouldReconnect(): boolean;
}

export class DaemonLink {
  private sock: Socket | undefined;
  private gen = 0;
  private connecting = false;
  private everConnected = false;
  private closed = false;
  /**
   * The current connection is only used once the daemon has answered our readiness ping on it:
   * a connect can succeed on the listener of a daemon that is dying (kill -9 closes its accepted
   * connections before its listening socket), and a request written there would be lost without
   * an answer. Until then client messages wait in the queue, so nothing is sent to a daemon that
   * never read it, and on a reconnect they go to the next one (they were never sent: no resend).
   */
  private ready = false;
  private readyId: string | undefined;
  private reconnected = false;
  private wake: (() => void) | undefined;
  private lastStartError: DaemonUnreachableError | undefined;

  constructor(
    private readonly opts: DaemonLinkOptions,
    private readonly events: DaemonLinkEvents,
  ) {}

  /** A socket is open (ready or not). */
  get connected(): boolean {
    return this.sock !== undefined;
  }

  /** A socket is open and the daemon answered the readiness ping on it. */
  get isReady(): boolean {
    return this.sock !== undefined && this.ready;
  }

  /** Counts connections; names the current one. */
  get generation(): number {
    return this.gen;
  }

  /** Why the last attempt that could start a daemon failed (cleared on connect). */
  get startError(): DaemonUnreachableError | undefined {
    return this.lastStartError;
  }

  /** Connects (in the background) unless connected or already trying. */
  start(): void {
    void this.connectLoop();
  }

  /** A client message waits: connect now, cutting a backoff wait short. */
  demand(): void {
    this.wake?.();
    void this.connectLoop();
  }

  write(line: string): void {
    const sock = this.sock;
    if (!sock) return;
    const ok = sock.write(`${line}\n`);
    if (!ok) {
      this.opts.input.pause();
      sock.once("drain", () => this.opts.input.resume());
    }
  }

  /** `output` cannot take more: stop reading the daemon until it drains. */
  holdUntilDrained(output: NodeJS.WritableStream): void {
    const sock = this.sock;
    if (!sock) return;
    sock.pause();
    output.once("drain", () => sock.resume());
  }

  /** Stops connecting and closes the socket (bounded: 500 ms, then destroyed). */
  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    const sock = this.sock;
    this.sock = undefined;
    if (!sock) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        sock.destroy();
        resolve();
      }, 500);
      sock.once("close", () => {
        clearTimeout(t);
        resolve();
      });
      sock.end();
    });
  }

  private async connectLoop(): Promise<void> {
    if (this.connecting || this.sock || this.closed) return;
    this.connecting = true;
    let attempt = 0;
    try {
      while (!this.closed && !this.sock) {
        // Start a daemon when someone needs it: once at start-up, then when client messages wait.
        const allowStart = (!this.everConnected && attempt === 0) || this.events.wantsStart();
        try {
          const connect = this.opts.connect ?? connectOrStartDaemon;
          const { socket } = await connect({
            env: this.opts.env,
            paths: this.opts.paths,
            timeoutMs: this.opts.startTimeoutMs,
            allowStart,
            log: (msg) => this.opts.log.debug(msg),
          });
          if (this.closed) {
            socket.destroy();
            return;
          }
          this.lastStartError = undefined;
          this.attach(socket);
          return;
        } catch (e) {
          if (allowStart) {
            const err =
              e instanceof DaemonUnreachableError
                ? e
                : new DaemonUnreachableError((e as Error).message, {
                    socket: this.opts.paths.socket,
                    logFile: this.opts.paths.logFile,
                  });
            this.lastStartError = err;
            this.opts.log.warn(err.message);
            // Those waiting now would only wait for the same failure: the bridge answers them.
            this.events.startFailed();
          }
        }
        // Demand arrived while we only probed: start the daemon now, without a backoff sleep.
        if (!allowStart && this.events.wantsStart()) continue;
        attempt++;
        await this.backoff(attempt);
      }
    } finally {
      this.connecting = false;
    }
  }

  /** Jittered exponential backoff (100 ms … 5 s); a new client message cuts it short. */
  private backoff(attempt: number): Promise<void> {
    const base = Math.min(5_000, 100 * 2 ** Math.min(attempt - 1, 10));
    const ms = base / 2 + Math.random() * (base / 2);
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.wake = undefined;
        resolve();
      };
      const t = setTimeout(done, ms);
      this.wake = done;
    });
  }

  private attach(socket: Socket): void {
    const reconnect = this.everConnected;
    this.reconnected = reconnect;
    this.gen++;
    this.sock = socket;
    this.ready = false;
    this.everConnected = true;
    const decoder = new LineDecoder(MAX_DAEMON_FRAME_BYTES);
    socket.on("data", (chunk: Buffer) => {
      const { lines, oversized } = decoder.push(chunk);
      if (oversized > 0) this.opts.log.warn(`dropped ${oversized} oversized frame(s) from the daemon`);
      for (const line of lines) this.onLine(line);
    });
    socket.on("error", (err) => this.opts.log.debug(`daemon socket error: ${err.message}`));
    socket.on("close", () => this.onDisconnect(socket));
    this.opts.log.debug(`connected to ${this.opts.paths.socket}${reconnect ? " (reconnected)" : ""}`);

    this.write(
      JSON.stringify({
        jsonrpc: "2.0",
        method: "loxmcp/hello",
        params: {
          kind: "shim",
          name: this.opts.name,
          pid: process.pid,
          ppid: process.ppid,
          version: VERSION,
        },
      }),
    );
    // A ping answered without the upstream, even before initialize: proof the daemon reads us.
    this.readyId = `loxmcp-shim-ready-${this.gen}`;
    this.write(JSON.stringify({ jsonrpc: "2.0", id: this.readyId, method: "ping" }));
  }

  private onLine(line: string): void {
    let m: unknown;
    try {
      m = JSON.parse(line);
    } catch {
      this.opts.log.warn("dropped a line from the daemon that is not JSON");
      return;
    }
    if (isResponse(m) && !this.ready) {
      if (this.readyId !== undefined && m.id === this.readyId) this.onReady();
      else if (m.id === null) this.onRefusedBeforeReady(m);
      return;
    }
    this.events.message(line, m);
  }

  /** The daemon answered the readiness ping: the bridge replays the session and sends what waited. */
  private onReady(): void {
    this.readyId = undefined;
    this.ready = true;
    this.events.ready();
    if (this.reconnected) this.opts.log.warn("reconnected to the loxmcp daemon");
  }

  /**
   * Before it read our readiness ping the daemon refused this connection (too many connections,
   * an error with a null id): nothing waiting was sent, so each waiting request gets that refusal.
   */
  private onRefusedBeforeReady(m: JsonRpcResponse): void {
    const err = "error" in m ? (m.error as { code?: unknown; message?: unknown }) : undefined;
    const code = typeof err?.code === "number" ? err.code : ErrorCodes.TooBusy;
    const message =
      typeof err?.message === "string" ? err.message : "the loxmcp daemon refused the connection";
    this.opts.log.warn(`the loxmcp daemon refused the connection: ${message}`);
    this.events.refused(code, message);
  }

  private onDisconnect(socket: Socket): void {
    if (this.sock !== socket) return;
    this.sock = undefined;
    this.ready = false;
    this.readyId = undefined;
    this.events.lost();
    this.opts.input.resume();
    if (this.closed || !this.events.shouldReconnect()) return;
    this.opts.log.warn("lost the connection to the loxmcp daemon; reconnecting");
    void this.connectLoop();
  }
}
