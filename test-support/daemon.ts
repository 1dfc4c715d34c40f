/**
 * Spawning the REAL daemon (`node packages/daemon/bin/loxmcpd.js`, after `pnpm build`) as a
 * child process for tests, with helpers to wait for readiness, read status and stop it.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type LoxmcpPaths, resolvePaths } from "@loxmcp/common";
import { controlCall } from "./socket-client.js";
import { waitFor } from "./wait.js";

/** Absolute path of the repository root. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Absolute path of the daemon's bin entry. */
export const DAEMON_BIN = join(REPO_ROOT, "packages/daemon/bin/loxmcpd.js");

export interface DaemonExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The `loxmcp/status` result (see TEAM-BRIEF); loose on purpose. */
export interface DaemonStatus {
  pid: number;
  state: string;
  reason?: string;
  entry?: string;
  clients: Array<Record<string, unknown>>;
  [k: string]: unknown;
}

export interface SpawnDaemonOptions {
  /** Extra CLI arguments, e.g. ["--insecure-tls"]. */
  args?: string[];
  /** Inherit the test process environment too (default false: only PATH, HOME + `env`). */
  inheritEnv?: boolean;
}

export interface DaemonProcess {
  child: ChildProcess;
  pid: number;
  /** Paths the daemon uses (from the LOXMCP_HOME in env). */
  paths: LoxmcpPaths;
  socketPath: string;
  /** Everything the daemon wrote to stderr so far. */
  stderr(): string;
  /** Everything the daemon wrote to stdout so far. */
  stdout(): string;
  /** Resolves once the process has exited. */
  exited: Promise<DaemonExit>;
  /** Exit info once exited, else undefined. */
  exitInfo(): DaemonExit | undefined;
  /** One `loxmcp/status` call. */
  status(): Promise<DaemonStatus>;
  /** Polls status until `pred` holds (throws early with stderr if the daemon exits). */
  waitStatus(pred: (s: DaemonStatus) => boolean, timeoutMs?: number, what?: string): Promise<DaemonStatus>;
  /** Polls status until state === "ready". */
  waitReady(timeoutMs?: number): Promise<DaemonStatus>;
  /** Waits for the exit (rejects after timeoutMs). */
  waitExit(timeoutMs?: number): Promise<DaemonExit>;
  /** SIGTERM, then waits for the exit (SIGKILL if it does not exit within timeoutMs). */
  stop(timeoutMs?: number): Promise<DaemonExit>;
  /** SIGKILL and wait for the exit. */
  kill9(): Promise<DaemonExit>;
}

/**
 * Spawns `node packages/daemon/bin/loxmcpd.js`. `env` should hold at least LOXMCP_HOME
 * (plus the LOXONE_* variables, see `withSimulator().env`). Always `stop()` it in afterEach.
 */
export function spawnDaemon(env: Record<string, string>, opts: SpawnDaemonOptions = {}): DaemonProcess {
  const base: Record<string, string> = {};
  if (opts.inheritEnv) {
    for (const [k, v] of Object.entries(process.env)) if (v !== undefined) base[k] = v;
  } else {
    for (const k of ["PATH", "HOME", "TMPDIR", "LANG", "SYSTEMROOT"]) {
      const v = process.env[k];
      if (v !== undefined) base[k] = v;
    }
  }
  const fullEnv = { ...base, ...env };
  const paths = resolvePaths(fullEnv);
  const child = spawn(process.execPath, [DAEMON_BIN, ...(opts.args ?? [])], {
    cwd: REPO_ROOT,
    env: fullEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  let out = "";
  child.stderr?.setEncoding("utf8").on("data", (d: string) => {
    err += d;
  });
  child.stdout?.setEncoding("utf8").on("data", (d: string) => {
    out += d;
  });
  let exitInfo: DaemonExit | undefined;
  const exited = new Promise<DaemonExit>((resolveExit) => {
    child.once("exit", (code, signal) => {
      exitInfo = { code, signal };
      resolveExit(exitInfo);
    });
  });
  if (child.pid === undefined) throw new Error(`could not spawn ${DAEMON_BIN}`);

  const status = async () => (await controlCall(paths.socket, "loxmcp/status")) as DaemonStatus;

  const waitStatus = async (
    pred: (s: DaemonStatus) => boolean,
    timeoutMs = 20_000,
    what = "daemon status",
  ) => {
    let last: DaemonStatus | undefined;
    try {
      return await waitFor(
        async () => {
          if (exitInfo) {
            throw new DaemonExitedError(exitInfo, err);
          }
          last = await status();
          return pred(last) ? last : undefined;
        },
        { timeoutMs, intervalMs: 50, what },
      );
    } catch (e) {
      if (exitInfo) throw new DaemonExitedError(exitInfo, err);
      const lastText = last ? ` last status: ${JSON.stringify(last)}` : "";
      throw new Error(`${(e as Error).message}.${lastText}\n--- daemon stderr ---\n${err}`);
    }
  };

  const waitExit = async (timeoutMs = 10_000) => {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`daemon did not exit within ${timeoutMs} ms\n--- stderr ---\n${err}`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      if (timer) clearTimeout(timer);
    }
  };

  return {
    child,
    pid: child.pid,
    paths,
    socketPath: paths.socket,
    stderr: () => err,
    stdout: () => out,
    exited,
    exitInfo: () => exitInfo,
    status,
    waitStatus,
    waitReady: (timeoutMs = 20_000) => waitStatus((s) => s.state === "ready", timeoutMs, 'state "ready"'),
    waitExit,
    async stop(timeoutMs = 10_000) {
      if (exitInfo) return exitInfo;
      child.kill("SIGTERM");
      try {
        return await waitExit(timeoutMs);
      } catch (e) {
        child.kill("SIGKILL");
        await exited;
        throw e;
      }
    },
    async kill9() {
      if (exitInfo) return exitInfo;
      child.kill("SIGKILL");
      return exited;
    },
  };
}

export class DaemonExitedError extends Error {
  constructor(
    readonly exit: DaemonExit,
    readonly stderr: string,
  ) {
    super(`daemon exited (code ${exit.code}, signal ${exit.signal})\n--- daemon stderr ---\n${stderr}`);
    this.name = "DaemonExitedError";
  }
}
