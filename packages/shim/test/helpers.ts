/**
 * Shim test helpers: spawn the real shim (`node packages/shim/bin/loxmcp-shim.js`) over stdio
 * like an MCP client does, and a bare Unix-socket listener speaking the daemon framing (a real
 * socket; used where a test needs to control exactly what "the daemon" sends or when it drops).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createServer, type Server, type Socket } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { waitFor } from "../../../test-support/wait.js";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const SHIM_BIN = join(REPO_ROOT, "packages/shim/bin/loxmcp-shim.js");

export type Msg = Record<string, unknown> & { id?: unknown; method?: string };

/** Only PATH/HOME from the test process, plus `env`. */
export function baseEnv(env: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ["PATH", "HOME", "TMPDIR", "LANG"]) {
    const v = process.env[k];
    if (v !== undefined) out[k] = v;
  }
  return { ...out, ...env };
}

export interface ShimProcess {
  child: ChildProcess;
  /** Parsed stdout lines so far. */
  messages: Msg[];
  /** Raw stdout text so far. */
  stdout(): string;
  stderr(): string;
  send(msg: unknown): void;
  sendRaw(text: string): void;
  waitMessage(pred: (m: Msg) => boolean, what: string, timeoutMs?: number): Promise<Msg>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(): Promise<void>;
}

export function spawnShim(env: Record<string, string>, args: string[] = []): ShimProcess {
  const child = spawn(process.execPath, [SHIM_BIN, ...args], {
    env: baseEnv(env),
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  let partial = "";
  const messages: Msg[] = [];
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
    partial += d;
    let nl = partial.indexOf("\n");
    while (nl >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      try {
        messages.push(JSON.parse(line) as Msg);
      } catch {
        messages.push({ __notJson: line });
      }
      nl = partial.indexOf("\n");
    }
  });
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  child.stdin?.on("error", () => {});
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once("exit", (code, signal) => r({ code, signal })),
  );
  return {
    child,
    messages,
    stdout: () => out,
    stderr: () => err,
    send: (msg) => child.stdin?.write(`${JSON.stringify(msg)}\n`),
    sendRaw: (text) => child.stdin?.write(text),
    waitMessage: (pred, what, timeoutMs = 10_000) =>
      waitFor(() => messages.find(pred), { timeoutMs, what: `${what}; stderr: ${err}` }),
    exited,
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/** One accepted connection on the listener: parsed frames in, `send` frames out. */
export interface SocketPeer {
  socket: Socket;
  frames: Msg[];
  rawLines: string[];
  send(msg: unknown): void;
}

/** A Unix-socket listener speaking newline-delimited JSON-RPC (stand-in for "a daemon that is up"). */
export class FrameListener {
  readonly peers: SocketPeer[] = [];
  private readonly server: Server;
  onFrame: ((peer: SocketPeer, msg: Msg) => void) | undefined;
  /** false: a listener that accepts but never answers (a dying or hung daemon). */
  answerReadyPing = true;

  private constructor(readonly path: string) {
    this.server = createServer((socket) => {
      const peer: SocketPeer = {
        socket,
        frames: [],
        rawLines: [],
        send: (msg) => socket.write(`${typeof msg === "string" ? msg : JSON.stringify(msg)}\n`),
      };
      this.peers.push(peer);
      let buf = "";
      socket.setEncoding("utf8");
      socket.on("error", () => {});
      socket.on("data", (d: string) => {
        buf += d;
        let nl = buf.indexOf("\n");
        while (nl >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          peer.rawLines.push(line);
          const msg = JSON.parse(line) as Msg;
          peer.frames.push(msg);
          // Like the real daemon: the shim's readiness ping is answered at once (see bridge.ts).
          if (
            this.answerReadyPing &&
            msg.method === "ping" &&
            String(msg.id).startsWith("loxmcp-shim-ready-")
          )
            peer.send({ jsonrpc: "2.0", id: msg.id, result: {} });
          this.onFrame?.(peer, msg);
          nl = buf.indexOf("\n");
        }
      });
    });
  }

  static async listen(path: string): Promise<FrameListener> {
    const l = new FrameListener(path);
    await new Promise<void>((resolve, reject) => {
      l.server.once("error", reject);
      l.server.listen(path, () => resolve());
    });
    return l;
  }

  /** All frames received on every connection, in order. */
  allFrames(): Msg[] {
    return this.peers.flatMap((p) => p.frames);
  }

  async close(): Promise<void> {
    for (const p of this.peers) p.socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export function isJsonRpcLine(m: Msg): boolean {
  return m.jsonrpc === "2.0" && ("method" in m || "result" in m || "error" in m);
}
