/**
 * Finding and starting the daemon: connect to its socket, or start it (service manager if one
 * is installed, else a detached `node loxmcpd.js`) and wait for the socket with a deadline.
 * Used by the shim (and reusable by the CLI). Several callers racing start ONE daemon: a short
 * start lock (`paths.startLock`) lets one of them spawn while the others wait; the daemon's own
 * single-instance check is the final guard. A socket whose directory (or LOXMCP_HOME) another
 * user could write to is refused before anything is connected or started (checkSocketPath).
 * The start lock is in start-lock.ts, which daemon to run in daemon-command.ts, starting it (its
 * service, or a detached process) in daemon-start.ts.
 */
import type { ChildProcess } from "node:child_process";
import { createConnection, type Socket } from "node:net";
import { resolveDaemonCommand } from "./daemon-command.js";
import {
  fileSize,
  findInstalledService,
  lastDaemonLine,
  spawnDetached,
  startService,
} from "./daemon-start.js";
import {
  asPathAccessError,
  checkSocketPath,
  type Env,
  ensurePrivateDir,
  isUnsafePathError,
  type LoxmcpPaths,
  resolvePaths,
} from "./paths.js";
import { readStartError, type StartProblem } from "./start-error.js";
import { type StartLock, tryStartLock } from "./start-lock.js";
import { type SystemLayout, systemStartHint, systemUserName } from "./system.js";

/** How the person gets into the system daemon's group (the socket is 0660). */
function systemGroupHint(layout: SystemLayout): string {
  const group = systemUserName(layout);
  return layout.platform === "darwin"
    ? `sudo dseditgroup -o edit -a "$USER" -t user ${group}, then log in again`
    : `sudo usermod -a -G ${group} "$USER", then log in again (or \`newgrp ${group}\`)`;
}

export const DEFAULT_START_TIMEOUT_MS = 15_000;

/** How the daemon was (or was not) started by this call. */
export type StartMethod = "systemd" | "launchd" | "spawn" | "other-starter";

export class DaemonUnreachableError extends Error {
  readonly code = "DAEMON_UNREACHABLE";
  constructor(
    message: string,
    /** What was tried (for the error's data). */
    readonly detail: {
      socket: string;
      logFile: string;
      started?: StartMethod;
      exitCode?: number | null;
      /** The `code` of the UnsafeSocketDirError / UnsafeHomeError that refused the socket. */
      refused?: string;
      /** The system daemon (hardened mode) is installed but not running: nothing was started. */
      system?: boolean;
      /**
       * Why the daemon cannot start, in its own words (one line naming the key and the fix, e.g.
       * from <state>/last-start-error.json); the message is then "loxmcpd cannot start: …".
       */
      startError?: { message: string; exitCode?: number; problems?: StartProblem[] };
    },
  ) {
    super(message);
    this.name = "DaemonUnreachableError";
  }
}

/** Errors of `connect()` meaning "no daemon listening here (yet)". */
const NOT_LISTENING = new Set(["ENOENT", "ECONNREFUSED", "EAGAIN", "ETIMEDOUT"]);

/** One connection attempt to the socket. Rejects with the errno error (code ENOENT, ECONNREFUSED …). */
export function connectSocket(path: string, timeoutMs = 2_000): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = createConnection({ path });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(Object.assign(new Error(`connect to ${path} timed out`), { code: "ETIMEDOUT" }));
    }, timeoutMs);
    sock.once("connect", () => {
      clearTimeout(timer);
      sock.removeAllListeners("error");
      resolve(sock);
    });
    sock.once("error", (err) => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    });
  });
}

export interface ConnectOrStartOptions {
  env?: Env;
  paths?: LoxmcpPaths;
  /** Deadline for the socket to answer after a start (default LOXMCP_START_TIMEOUT_MS or 15 s). */
  timeoutMs?: number;
  /** false: only connect, never start a daemon. */
  allowStart?: boolean;
  /** Diagnostics (never to stdout in the shim). */
  log?: (msg: string) => void;
  signal?: AbortSignal;
}

export interface ConnectedDaemon {
  socket: Socket;
  /** How the daemon was started by this call; undefined when it was already running. */
  started?: StartMethod;
}

export function startTimeoutFromEnv(env: Env = process.env): number {
  const v = Number(env.LOXMCP_START_TIMEOUT_MS);
  return Number.isFinite(v) && v > 0 ? v : DEFAULT_START_TIMEOUT_MS;
}

/**
 * Connects to the daemon socket; when nothing listens, starts the daemon (installed service
 * first, else a detached process logging to the daemon log) unless another caller holds the
 * start lock, then polls the socket until `timeoutMs`. Throws DaemonUnreachableError.
 */
export async function connectOrStartDaemon(opts: ConnectOrStartOptions = {}): Promise<ConnectedDaemon> {
  const env = opts.env ?? process.env;
  const paths = opts.paths ?? resolvePaths(env);
  const timeoutMs = opts.timeoutMs ?? startTimeoutFromEnv(env);
  const log = opts.log ?? (() => {});
  const startedWaiting = Date.now();
  const deadline = startedWaiting + timeoutMs;
  const detail = { socket: paths.socket, logFile: paths.logFile } as DaemonUnreachableError["detail"];
  /** The daemon's own reason, once a start since this call began failed: ends the wait at once. */
  const cannotStart = (startError: NonNullable<DaemonUnreachableError["detail"]["startError"]>) => {
    detail.startError = startError;
    if (startError.exitCode !== undefined) detail.exitCode = startError.exitCode;
    return new DaemonUnreachableError(`loxmcpd cannot start: ${startError.message}`, detail);
  };
  /** A start error written by a daemon that failed after this call began (ours, a service's, a racer's). */
  const freshStartError = () => {
    const rec = readStartError(paths);
    if (!rec || !(Date.parse(rec.at) >= startedWaiting)) return undefined;
    const out: NonNullable<DaemonUnreachableError["detail"]["startError"]> = {
      message: rec.message,
      exitCode: rec.exitCode,
    };
    if (rec.problems) out.problems = rec.problems;
    return out;
  };
  let logOffset: number | undefined;

  let lock: StartLock | undefined;
  let started: StartMethod | undefined;
  let child: ChildProcess | undefined;
  let childExit: number | null | undefined;
  let childError: Error | undefined;
  let serviceStartedAt = 0;
  let interval = 20;
  try {
    for (;;) {
      if (opts.signal?.aborted)
        throw new DaemonUnreachableError("stopped while waiting for the daemon", detail);
      // Before every connect (a missing directory may appear meanwhile) and before any start:
      // never talk to, nor start a daemon behind, a socket another user could have planted.
      try {
        checkSocketPath(paths, env);
      } catch (e) {
        if (!isUnsafePathError(e)) throw e;
        throw new DaemonUnreachableError(e.message, { ...detail, refused: e.code });
      }
      try {
        const socket = await connectSocket(paths.socket);
        return started ? { socket, started } : { socket };
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? "";
        if (!NOT_LISTENING.has(code)) {
          const fix =
            paths.system && (code === "EACCES" || code === "EPERM")
              ? `only members of the system daemon's group may connect: ${systemGroupHint(paths.system)}`
              : "run `loxmcp doctor`";
          throw new DaemonUnreachableError(
            `cannot connect to the loxmcp daemon socket ${paths.socket}: ${(e as Error).message}; ${fix}`,
            detail,
          );
        }
      }
      // Hardened mode: the system daemon is started by its service manager only. A per-user daemon
      // in its place would hold the tokens in the person's account again: say so, start nothing.
      if (paths.system) {
        throw new DaemonUnreachableError(
          `system daemon not running: ${systemStartHint(paths.system.platform)}`,
          {
            ...detail,
            system: true,
          },
        );
      }
      if (opts.allowStart === false) {
        throw new DaemonUnreachableError(`no loxmcp daemon is listening on ${paths.socket}`, detail);
      }

      // A spawned daemon that failed (config error, crash) ends the wait early. Exit 0 means
      // "another instance is live": keep waiting for its socket.
      if (childError) {
        throw new DaemonUnreachableError(
          `could not start the loxmcp daemon (${childError.message}); install it or set LOXMCP_DAEMON_BIN`,
          detail,
        );
      }
      if (started !== undefined) {
        const fresh = freshStartError();
        if (fresh) throw cannotStart(fresh);
      }
      if (childExit !== undefined && childExit !== 0) {
        detail.exitCode = childExit;
        // No record (e.g. its state dir is unusable): its last words in the log, this start's only.
        const said = lastDaemonLine(paths.logFile, logOffset);
        if (said)
          throw cannotStart(childExit === null ? { message: said } : { message: said, exitCode: childExit });
        throw new DaemonUnreachableError(
          `the loxmcp daemon exited with code ${childExit} before opening its socket${childExit === 78 ? " (configuration error)" : ""}; see ${paths.logFile} or run \`loxmcp doctor\``,
          detail,
        );
      }

      const serviceSlow =
        started !== undefined &&
        started !== "spawn" &&
        started !== "other-starter" &&
        Date.now() - serviceStartedAt > timeoutMs / 3;
      if (started === undefined || started === "other-starter" || serviceSlow) {
        if (!lock) {
          try {
            ensurePrivateDir(paths.state);
            lock = tryStartLock(paths.startLock, timeoutMs + 5_000);
          } catch (e) {
            // A LOXMCP_HOME / state dir we cannot write: say which and what to do.
            const access = asPathAccessError(e, paths.state);
            if (!access) throw e;
            throw cannotStart({ message: access.message });
          }
        }
        if (lock) {
          const unit = serviceSlow ? undefined : findInstalledService(env);
          if (unit && !env.LOXMCP_DAEMON_BIN && !env.LOXMCP_NO_SERVICE && startService(unit)) {
            started = unit.kind;
            serviceStartedAt = Date.now();
            log(`started the ${unit.kind} service ${unit.name}; waiting for ${paths.socket}`);
          } else {
            const cmd = resolveDaemonCommand(env);
            logOffset = fileSize(paths.logFile);
            child = spawnDetached(cmd, env, paths, log);
            started = "spawn";
            detail.started = started;
            log(
              `started the daemon (${[cmd.command, ...cmd.args].join(" ")}, pid ${child.pid}); waiting for ${paths.socket}`,
            );
            child.once("exit", (code) => {
              childExit = code;
            });
            child.once("error", (err) => {
              childError = err;
            });
          }
          detail.started = started;
        } else if (started === undefined) {
          started = "other-starter";
          log(`another process is starting the daemon; waiting for ${paths.socket}`);
        }
      }

      if (Date.now() >= deadline) {
        throw new DaemonUnreachableError(
          `the loxmcp daemon did not open ${paths.socket} within ${timeoutMs} ms; see ${paths.logFile} or run \`loxmcp status\``,
          detail,
        );
      }
      await new Promise((r) => setTimeout(r, Math.min(interval, Math.max(1, deadline - Date.now()))));
      interval = Math.min(interval * 1.5, 250);
    }
  } finally {
    lock?.release();
  }
}
