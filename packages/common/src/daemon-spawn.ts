/**
 * Finding and starting the daemon: connect to its socket, or start it (service manager if one
 * is installed, else a detached `node loxmcpd.js`) and wait for the socket with a deadline.
 * Used by the shim (and reusable by the CLI). Several callers racing start ONE daemon: a short
 * start lock (`paths.startLock`) lets one of them spawn while the others wait; the daemon's own
 * single-instance check is the final guard. A socket whose directory (or LOXMCP_HOME) another
 * user could write to is refused before anything is connected or started (checkSocketPath).
 */
import type { ChildProcess } from "node:child_process";
import {
  closeSync,
  existsSync,
  linkSync,
  readdirSync,
  readFileSync,
  realpathSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { createConnection, type Socket } from "node:net";
import { homedir } from "node:os";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  asPathAccessError,
  checkSocketPath,
  type Env,
  ensurePrivateDir,
  isUnsafePathError,
  type LoxmcpPaths,
  resolvePaths,
} from "./paths.js";
import { openPrivateAppend } from "./private-file.js";
import { readStartError, type StartProblem } from "./start-error.js";
import { type SystemLayout, systemStartHint, systemUserName } from "./system.js";

/** How the person gets into the system daemon's group (the socket is 0660). */
function systemGroupHint(layout: SystemLayout): string {
  const group = systemUserName(layout);
  return layout.platform === "darwin"
    ? `sudo dseditgroup -o edit -a "$USER" -t user ${group}, then log in again`
    : `sudo usermod -a -G ${group} "$USER", then log in again (or \`newgrp ${group}\`)`;
}

export const DEFAULT_START_TIMEOUT_MS = 15_000;

/**
 * `node:child_process`, loaded only when a daemon has to be started. Every MCP client start runs
 * the shim, and the shim's normal path (daemon already listening) never spawns: loading the
 * module up front cost ~4 ms of each start (bench start).
 */
let lazyRequire: NodeJS.Require | undefined;
const childProcess = (): typeof import("node:child_process") => {
  lazyRequire ??= createRequire(import.meta.url);
  return lazyRequire("node:child_process");
};

/**
 * V8 flags for a daemon run by this node (`node <flags> loxmcpd.js`). The daemon is a long-lived
 * I/O relay whose young objects are small JSON frames: a 1 MiB semi-space (default 16 MiB on
 * 64-bit) keeps ~17 MB less resident after a burst of calls (bench memory: 119 → 102 MB after
 * 200 calls, idle 99 → 92 MB) for slightly more frequent scavenges, which cost microseconds at
 * this heap size and did not move the added latency measurably. Flags cannot be set from inside
 * the process once V8 is up, so every starter passes them (this spawner; the bench mirrors it).
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=1"];

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

export interface DaemonCommand {
  command: string;
  args: string[];
  /**
   * Where it came from (for diagnostics): LOXMCP_DAEMON_BIN, the npm package `loxmcp` this code
   * runs from, a checkout's packages/daemon, `@loxmcp/daemon` as resolvable, or PATH.
   */
  source: "env" | "installed" | "workspace" | "package" | "path";
}

/** A daemon entry file runs with this node (so DAEMON_NODE_FLAGS apply); anything else runs as is. */
function daemonCommandFor(bin: string, source: DaemonCommand["source"]): DaemonCommand {
  return /\.[cm]?js$/.test(bin)
    ? { command: process.execPath, args: [bin], source }
    : { command: bin, args: [], source };
}

/** The first `name` on env.PATH that is a file, as an absolute path (not resolved further). */
export function findOnPath(name: string, env: Env = process.env): string | undefined {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!isAbsolute(dir)) continue;
    const p = join(dir, name);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * How to run the daemon, first match wins:
 * 1. `LOXMCP_DAEMON_BIN` (a .js file runs with this node);
 * 2. the installed npm package `loxmcp` (scripts/pack.mjs): this module is bundled into
 *    `<package>/dist/`, the daemon's launcher is `<package>/bin/loxmcpd.js`;
 * 3. the daemon package next to this one (`packages/daemon/bin/loxmcpd.js` in a checkout, also
 *    what the workspace's shim bundle in packages/shim/dist finds);
 * 4. `@loxmcp/daemon` as resolvable from here;
 * 5. `loxmcpd` on PATH (run with this node when it links to a .js file).
 * Entry files run as `node DAEMON_NODE_FLAGS <file>` (spawnDetached, and the service files).
 */
export function resolveDaemonCommand(env: Env = process.env): DaemonCommand {
  const fromEnv = env.LOXMCP_DAEMON_BIN;
  if (fromEnv) return daemonCommandFor(fromEnv, "env");
  const installed = fileURLToPath(new URL("../bin/loxmcpd.js", import.meta.url));
  if (existsSync(installed)) return daemonCommandFor(installed, "installed");
  // dist/daemon-spawn.js → ../../daemon/bin/loxmcpd.js (sibling package, workspace or node_modules/@loxmcp).
  const sibling = fileURLToPath(new URL("../../daemon/bin/loxmcpd.js", import.meta.url));
  if (existsSync(sibling)) return daemonCommandFor(sibling, "workspace");
  try {
    const pkg = fileURLToPath(import.meta.resolve("@loxmcp/daemon/package.json"));
    const bin = join(dirname(pkg), "bin", "loxmcpd.js");
    if (existsSync(bin)) return daemonCommandFor(bin, "package");
  } catch {
    // not resolvable from here
  }
  const onPath = findOnPath("loxmcpd", env);
  if (onPath) {
    let real = onPath;
    try {
      real = realpathSync(onPath);
    } catch {
      // a dangling link: run it as it is and let the spawn say what is wrong
    }
    return /\.[cm]?js$/.test(real)
      ? { command: process.execPath, args: [onPath], source: "path" }
      : { command: onPath, args: [], source: "path" };
  }
  return { command: "loxmcpd", args: [], source: "path" };
}

export interface ServiceUnit {
  kind: "systemd" | "launchd";
  /** systemd unit name or launchd label. */
  name: string;
  file: string;
}

/** The installed user service for the daemon, if any (systemd user unit or LaunchAgent). */
export function findInstalledService(env: Env = process.env): ServiceUnit | undefined {
  const home = env.HOME ?? homedir();
  if (process.platform === "linux") {
    const configHome = env.XDG_CONFIG_HOME || join(home, ".config");
    const file = join(configHome, "systemd", "user", "loxmcpd.service");
    if (existsSync(file)) return { kind: "systemd", name: "loxmcpd.service", file };
  } else if (process.platform === "darwin") {
    const dir = join(home, "Library", "LaunchAgents");
    try {
      const plist = readdirSync(dir).find((f) => /loxmcp/i.test(f) && f.endsWith(".plist"));
      if (plist) return { kind: "launchd", name: plist.slice(0, -".plist".length), file: join(dir, plist) };
    } catch {
      // no LaunchAgents dir
    }
  }
  return undefined;
}

function startService(unit: ServiceUnit): boolean {
  const r =
    unit.kind === "systemd"
      ? childProcess().spawnSync("systemctl", ["--user", "start", "--no-block", unit.name], {
          stdio: "ignore",
          timeout: 5_000,
        })
      : childProcess().spawnSync("launchctl", ["kickstart", `gui/${process.getuid?.() ?? 0}/${unit.name}`], {
          stdio: "ignore",
          timeout: 5_000,
        });
  return r.status === 0;
}

/** A held start lock; `release()` removes the file if it is still ours. */
interface StartLock {
  release(): void;
}

/** True when a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes the start lock (O_EXCL create). A lock whose owner pid is dead, or older than
 * `staleMs`, is removed and taken over. Returns undefined when another live starter holds it.
 */
export function tryStartLock(file: string, staleMs: number): StartLock | undefined {
  const token = `${process.pid}:${Date.now()}:${Math.random()}`;
  const content = JSON.stringify({ pid: process.pid, token, at: new Date().toISOString() });
  for (let attempt = 0; attempt < 3; attempt++) {
    if (createComplete(file, content)) {
      const release = () => {
        process.off("exit", release);
        try {
          if (readFileSync(file, "utf8").includes(token)) unlinkSync(file);
        } catch {
          // already gone
        }
      };
      // A caller that exits while starting (SIGTERM → process.exit) must not leave the lock behind.
      process.once("exit", release);
      return { release };
    }
    let seen: string;
    try {
      seen = readFileSync(file, "utf8");
    } catch {
      continue; // vanished meanwhile: try again
    }
    let stale: boolean;
    try {
      const age = Date.now() - statSync(file).mtimeMs;
      const owner = (JSON.parse(seen) as { pid?: unknown }).pid;
      stale = age > staleMs || typeof owner !== "number" || !pidAlive(owner);
    } catch {
      stale = true; // corrupt (locks are written complete, see createComplete)
    }
    if (!stale) return undefined;
    try {
      // Only remove the very lock we judged stale, not one a racer just took over.
      if (readFileSync(file, "utf8") === seen) unlinkSync(file);
    } catch {
      // someone else removed it
    }
  }
  return undefined;
}

/**
 * Creates `file` with `content` only if it does not exist, atomically WITH its content (write a
 * private temp file, then hard-link it into place), so a racer never reads a half-written lock.
 */
function createComplete(file: string, content: string): boolean {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  writeFileSync(tmp, content, { mode: 0o600, flag: "wx" });
  try {
    linkSync(tmp, file);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    // No hard links on this filesystem: fall back to an exclusive create.
    try {
      writeFileSync(file, content, { mode: 0o600, flag: "wx" });
      return true;
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw e2;
    }
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // ignore
    }
  }
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

function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/**
 * The last line a daemon wrote on stderr (`loxmcpd: …`) into the log since `offset` (the log's
 * size when it was spawned), without the prefix: this start's words, never an older one's.
 */
export function lastDaemonLine(logFile: string, offset: number | undefined): string | undefined {
  if (offset === undefined) return undefined;
  let text: string;
  try {
    const buf = readFileSync(logFile);
    if (buf.length <= offset) return undefined;
    text = buf.subarray(Math.max(offset, buf.length - 64 * 1024)).toString("utf8");
  } catch {
    return undefined;
  }
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => /^loxmcpd(: |\[)/.test(l) && !/already running/.test(l));
  const last = lines[lines.length - 1];
  return last?.replace(/^loxmcpd: (config error: )?/, "");
}

function spawnDetached(
  cmd: DaemonCommand,
  env: Env,
  paths: LoxmcpPaths,
  log: (msg: string) => void,
): ChildProcess {
  let out: number | "ignore" = "ignore";
  try {
    ensurePrivateDir(paths.log);
    // Not followed if it is a link (the daemon then refuses to start and says so).
    out = openPrivateAppend(paths.logFile);
  } catch (e) {
    log(`the daemon's output goes nowhere: ${(e as Error).message}`);
    out = "ignore";
  }
  try {
    const args = cmd.command === process.execPath ? [...DAEMON_NODE_FLAGS, ...cmd.args] : cmd.args;
    const child = childProcess().spawn(cmd.command, args, {
      detached: true,
      stdio: ["ignore", out, out],
      env: env as NodeJS.ProcessEnv,
      cwd: paths.state,
    });
    child.unref();
    return child;
  } finally {
    if (typeof out === "number") closeSync(out);
  }
}
