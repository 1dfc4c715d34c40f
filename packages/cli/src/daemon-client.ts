/**
 * The CLI's only way to the daemon: one JSON-RPC `loxmcp/*` request per connection over the
 * daemon's Unix socket (newline framing from @loxmcp/common, no initialize). Every connection
 * starts with the CLI's `loxmcp/hello` (kind "cli": a control connection). Before connecting,
 * the socket's directory and LOXMCP_HOME are checked (checkSocketPath): a socket another user
 * could have planted is refused and nothing is sent.
 */
import { existsSync } from "node:fs";
import { connect, type Socket } from "node:net";
import {
  checkSocketPath,
  type Env,
  ErrorCodes,
  encodeFrame,
  isUnsafePathError,
  LineDecoder,
} from "@loxmcp/common";
import { CliError } from "./command.js";
import { VERSION } from "./version.js";

export class DaemonNotRunningError extends CliError {
  constructor(readonly socket: string) {
    super(
      "DAEMON_NOT_RUNNING",
      `daemon not running (socket ${socket}): start it with \`loxmcp service start\` (or \`loxmcp start\`) or run any MCP client's shim`,
    );
  }
}

export class SocketPermissionError extends CliError {
  constructor(readonly socket: string) {
    super(
      "SOCKET_PERMISSION",
      `permission denied on the daemon socket ${socket}: it belongs to another user or has a wrong mode; run \`loxmcp doctor\` (the socket must be yours, mode 0600, in a 0700 dir)`,
    );
  }
}

export class DaemonTimeoutError extends CliError {
  constructor(method: string, timeoutMs: number, socket: string) {
    super(
      "DAEMON_TIMEOUT",
      `the daemon did not answer ${method} within ${Math.round(timeoutMs / 1000)} s (socket ${socket}); look at \`loxmcp logs -n 50\``,
    );
  }
}

export class DaemonRpcError extends CliError {
  constructor(
    readonly method: string,
    readonly rpcCode: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(
      "DAEMON_ERROR",
      rpcCode === ErrorCodes.MethodNotFound
        ? `the daemon does not know ${method}: it is older than this CLI; restart it with \`loxmcp stop && loxmcp start\``
        : `${method} failed: ${message}`,
    );
  }
}

/** The socket (or LOXMCP_HOME) could have been put there by another user: nothing was sent. */
export class UnsafeSocketError extends CliError {
  constructor(message: string, code: string) {
    super(code, message);
  }
}

export interface CallOptions {
  timeoutMs?: number;
  /** Treat the connection closing before an answer as success (used for shutdown). */
  closeIsAnswer?: boolean;
  /** Where LOXMCP_HOME / LOXMCP_SOCKET come from for the safety check (default process.env). */
  env?: Env;
}

/** The first frame of every CLI connection: who is calling (the daemon fixes it for the connection). */
export function cliHello(): Record<string, unknown> {
  return {
    jsonrpc: "2.0",
    method: "loxmcp/hello",
    params: { kind: "cli", name: "loxmcp-cli", pid: process.pid, version: VERSION },
  };
}

/** Throws UnsafeSocketError (one line: the path and the fix) for a socket we must not talk to. */
function checkSocket(socketPath: string, env: Env): void {
  try {
    checkSocketPath({ socket: socketPath }, env);
  } catch (e) {
    if (isUnsafePathError(e)) throw new UnsafeSocketError(e.message, e.code);
    throw e;
  }
}

function openSocket(socketPath: string, env: Env): Promise<Socket> {
  checkSocket(socketPath, env);
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    s.once("connect", () => {
      s.removeAllListeners("error");
      resolve(s);
    });
    s.once("error", (err: NodeJS.ErrnoException) => {
      s.destroy();
      if (err.code === "ENOENT" || err.code === "ECONNREFUSED" || err.code === "ENOTSOCK") {
        reject(new DaemonNotRunningError(socketPath));
      } else if (err.code === "EACCES" || err.code === "EPERM") {
        reject(new SocketPermissionError(socketPath));
      } else {
        reject(
          new CliError("SOCKET_ERROR", `cannot connect to the daemon socket ${socketPath}: ${err.message}`),
        );
      }
    });
  });
}

/**
 * Sends the CLI's hello, then one request, and resolves with its `result`. Throws
 * UnsafeSocketError, DaemonNotRunningError, SocketPermissionError, DaemonTimeoutError or
 * DaemonRpcError — all with a next step.
 */
export async function callDaemon(
  socketPath: string,
  method: `loxmcp/${string}`,
  params: Record<string, unknown> = {},
  opts: CallOptions = {},
): Promise<unknown> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const s = await openSocket(socketPath, opts.env ?? process.env);
  const id = 1;
  return new Promise((resolve, reject) => {
    const decoder = new LineDecoder();
    let done = false;
    const finish = (fn: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      fn();
    };
    const timer = setTimeout(
      () => finish(() => reject(new DaemonTimeoutError(method, timeoutMs, socketPath))),
      timeoutMs,
    );
    s.on("data", (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = decoder.push(chunk).lines;
      } catch (err) {
        finish(() =>
          reject(new CliError("BAD_FRAME", `bad answer from the daemon: ${(err as Error).message}`)),
        );
        return;
      }
      for (const line of lines) {
        let msg: {
          id?: unknown;
          result?: unknown;
          error?: { code?: unknown; message?: unknown; data?: unknown };
        };
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        if (msg.id !== id) continue;
        const e = msg.error;
        if (e) {
          const code = typeof e.code === "number" ? e.code : ErrorCodes.InternalError;
          const message = typeof e.message === "string" ? e.message : "unknown error";
          finish(() => reject(new DaemonRpcError(method, code, message, e.data)));
        } else {
          finish(() => resolve(msg.result));
        }
      }
    });
    s.on("error", () => {
      /* handled by close */
    });
    s.on("close", () => {
      if (opts.closeIsAnswer) finish(() => resolve(undefined));
      else
        finish(() =>
          reject(
            new CliError(
              "DAEMON_CLOSED",
              `the daemon closed the connection before answering ${method}; look at \`loxmcp logs -n 50\``,
            ),
          ),
        );
    });
    s.write(encodeFrame(cliHello()) + encodeFrame({ jsonrpc: "2.0", id, method, params }));
  });
}

/**
 * True when something answers on the socket (a connect succeeds). Throws UnsafeSocketError
 * (without connecting) for a socket another user could have put there.
 */
export async function isDaemonListening(socketPath: string, env: Env = process.env): Promise<boolean> {
  checkSocket(socketPath, env);
  if (!existsSync(socketPath)) return false;
  try {
    const s = await openSocket(socketPath, env);
    s.destroy();
    return true;
  } catch {
    return false;
  }
}

/** Resolves after `ms` (used between polls while waiting for a condition with a deadline). */
export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns true or `timeoutMs` passes; resolves with the final outcome. */
export async function pollUntil(fn: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() >= deadline) return false;
    await delay(intervalMs);
  }
}
