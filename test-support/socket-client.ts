/**
 * Talking to the daemon's Unix socket from tests:
 * - `controlCall`: one `loxmcp/*` JSON-RPC request (as the CLI does, no initialize);
 * - `RawConnection`: raw frames in/out, for framing tests (oversize, malformed JSON);
 * - `SocketClientTransport`: an MCP SDK `Transport`, so a real SDK `Client` can talk to the
 *   daemon exactly as a shim would (it sends `loxmcp/hello` first).
 */
import { connect, type Socket } from "node:net";
import { encodeFrame, LineDecoder, MAX_FRAME_BYTES } from "@loxmcp/common";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";

export class ControlCallError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = "ControlCallError";
  }
}

function openSocket(socketPath: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    s.once("connect", () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

/**
 * Sends one JSON-RPC request over the socket and resolves with its `result`.
 * Rejects with `ControlCallError` (code/message/data) for a JSON-RPC error, or with the
 * socket error (ENOENT / ECONNREFUSED) when nothing listens.
 */
export async function controlCall(
  socketPath: string,
  method: string,
  params: Record<string, unknown> = {},
  opts: { timeoutMs?: number } = {},
): Promise<unknown> {
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const s = await openSocket(socketPath);
  return new Promise((resolve, reject) => {
    const decoder = new LineDecoder();
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer to ${method} within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (fn: () => void) => {
      clearTimeout(timer);
      s.destroy();
      fn();
    };
    s.on("data", (chunk: Buffer) => {
      for (const line of decoder.push(chunk).lines) {
        let msg: {
          id?: unknown;
          result?: unknown;
          error?: { code: number; message: string; data?: unknown };
        };
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        if (msg.id !== 1) continue;
        if (msg.error) {
          const e = msg.error;
          finish(() => reject(new ControlCallError(e.code, e.message, e.data)));
        } else finish(() => resolve(msg.result));
      }
    });
    s.on("error", (err) => finish(() => reject(err)));
    s.on("close", () => finish(() => reject(new Error(`connection closed before the answer to ${method}`))));
    s.write(encodeFrame({ jsonrpc: "2.0", id: 1, method, params }));
  });
}

/** A raw socket connection collecting every decoded frame it receives. */
export class RawConnection {
  readonly messages: Array<Record<string, unknown>> = [];
  /** Lines that were not JSON. */
  readonly garbage: string[] = [];
  closed = false;
  readonly closedPromise: Promise<void>;
  private readonly decoder = new LineDecoder(MAX_FRAME_BYTES * 4);

  private constructor(readonly socket: Socket) {
    this.closedPromise = new Promise((resolve) => {
      socket.on("close", () => {
        this.closed = true;
        resolve();
      });
    });
    socket.on("error", () => {});
    socket.on("data", (chunk: Buffer) => {
      for (const line of this.decoder.push(chunk).lines) {
        try {
          this.messages.push(JSON.parse(line));
        } catch {
          this.garbage.push(line);
        }
      }
    });
  }

  static async open(socketPath: string): Promise<RawConnection> {
    return new RawConnection(await openSocket(socketPath));
  }

  /** Writes text as is (add the newline yourself); resolves when flushed (or the peer closed). */
  write(raw: string | Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.write(raw, () => resolve());
    });
  }

  /** Writes one JSON message as a frame. */
  send(message: unknown): Promise<void> {
    return this.write(encodeFrame(message));
  }

  /** Waits for a received message matching `pred` (deadline `timeoutMs`). */
  async waitMessage(
    pred: (m: Record<string, unknown>) => boolean,
    timeoutMs = 5_000,
  ): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.find(pred);
      if (m) return m;
      if (Date.now() > deadline) {
        throw new Error(`no matching message within ${timeoutMs} ms; got ${JSON.stringify(this.messages)}`);
      }
      if (this.closed) throw new Error(`connection closed; got ${JSON.stringify(this.messages)}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** Sends an MCP `initialize` as `clientName` under `id` and waits for its answer. */
  async initialize(
    clientName: string,
    id: string | number = 1,
    timeoutMs = 15_000,
  ): Promise<Record<string, unknown>> {
    await this.send({
      jsonrpc: "2.0",
      id,
      method: "initialize",
      params: {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: clientName, version: "1" },
      },
    });
    return this.waitMessage((m) => m.id === id, timeoutMs);
  }

  close(): void {
    this.socket.destroy();
  }
}

export interface HelloInfo {
  /** `--name` of the shim, or null. */
  name?: string | null;
  pid?: number;
  ppid?: number;
  kind?: string;
  version?: string;
}

/**
 * An MCP SDK `Transport` over the daemon's socket with newline framing. On `start()` it
 * connects and FIRST sends the `loxmcp/hello` notification, as a shim does; pass `hello: false`
 * to skip it.
 */
export class SocketClientTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  private socket: Socket | undefined;
  private readonly decoder = new LineDecoder();
  private closedOnce = false;

  constructor(
    readonly socketPath: string,
    private readonly hello: HelloInfo | false = {},
  ) {}

  async start(): Promise<void> {
    if (this.socket) throw new Error("SocketClientTransport already started");
    const s = await openSocket(this.socketPath);
    this.socket = s;
    s.on("data", (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = this.decoder.push(chunk).lines;
      } catch (err) {
        this.onerror?.(err as Error);
        return;
      }
      for (const line of lines) {
        let msg: JSONRPCMessage;
        try {
          msg = JSON.parse(line) as JSONRPCMessage;
        } catch (err) {
          this.onerror?.(err as Error);
          continue;
        }
        this.onmessage?.(msg);
      }
    });
    s.on("error", (err) => this.onerror?.(err));
    s.on("close", () => this.fireClose());
    if (this.hello !== false) {
      const h = this.hello;
      s.write(
        encodeFrame({
          jsonrpc: "2.0",
          method: "loxmcp/hello",
          params: {
            kind: h.kind ?? "shim",
            name: h.name ?? null,
            pid: h.pid ?? process.pid,
            ppid: h.ppid ?? process.ppid,
            version: h.version ?? "0.1.0",
          },
        }),
      );
    }
  }

  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = this.socket;
      if (!s || s.destroyed) return reject(new Error("SocketClientTransport is not connected"));
      s.write(encodeFrame(message), (err) => (err ? reject(err) : resolve()));
    });
  }

  async close(): Promise<void> {
    this.socket?.destroy();
    this.fireClose();
  }

  private fireClose(): void {
    if (this.closedOnce) return;
    this.closedOnce = true;
    this.onclose?.();
  }
}
