import { chmodSync, lstatSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import envPaths from "env-paths";

/** Where loxmcp keeps its files. One implementation, used by daemon, shim and CLI alike. */
export interface LoxmcpPaths {
  /** Config dir: `.env`, `config.json`, password file. */
  config: string;
  /** Private state dir: SQLite database, start lock. */
  state: string;
  /** Log dir: `daemon.log`. */
  log: string;
  /** Runtime dir holding the socket (0700). */
  runtime: string;
  /** The daemon's Unix socket. */
  socket: string;
  /** The SQLite database file. */
  db: string;
  /** The daemon log file. */
  logFile: string;
  /** Lock file used so racing shims start only one daemon. */
  startLock: string;
}

export type Env = Record<string, string | undefined>;

/**
 * Resolves every path from the environment.
 * - `LOXMCP_HOME` set: everything lives under it (config/, state/, log/, run/).
 * - else `env-paths('loxmcp')`; the socket goes to `$XDG_RUNTIME_DIR/loxmcp/` when that
 *   directory is set and owned by us, else to `<state>/run/`.
 */
export function resolvePaths(env: Env = process.env): LoxmcpPaths {
  const home = env.LOXMCP_HOME;
  let config: string;
  let state: string;
  let log: string;
  let runtime: string;
  if (home) {
    config = join(home, "config");
    state = join(home, "state");
    log = join(home, "log");
    runtime = join(home, "run");
  } else {
    const p = envPaths("loxmcp", { suffix: "" });
    config = p.config;
    state = p.data;
    log = p.log;
    runtime = runtimeDirFromXdg(env.XDG_RUNTIME_DIR) ?? join(state, "run");
  }
  return {
    config,
    state,
    log,
    runtime,
    socket: env.LOXMCP_SOCKET ?? join(runtime, "daemon.sock"),
    db: join(state, "loxmcp.db"),
    logFile: join(log, "daemon.log"),
    startLock: join(state, "daemon.start.lock"),
  };
}

function runtimeDirFromXdg(xdg: string | undefined): string | undefined {
  if (!xdg) return undefined;
  try {
    const st = lstatSync(xdg);
    if (!st.isDirectory() || st.isSymbolicLink()) return undefined;
    if (typeof process.getuid === "function" && st.uid !== process.getuid()) return undefined;
    return join(xdg, "loxmcp");
  } catch {
    return undefined;
  }
}

export class UnsafeDirectoryError extends Error {
  readonly code = "UNSAFE_DIRECTORY";
  constructor(
    readonly path: string,
    reason: string,
  ) {
    super(`refusing to use ${path}: ${reason}. Remove it or fix its owner/mode (chmod 700) and try again.`);
    this.name = "UnsafeDirectoryError";
  }
}

/**
 * Creates `dir` (and parents) if missing and makes sure it is a real directory (not a
 * symlink), owned by us, mode 0700. Checked with lstat, as ssh-agent does.
 */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (st.isSymbolicLink() || !st.isDirectory()) throw new UnsafeDirectoryError(dir, "it is not a directory");
  if (typeof process.getuid === "function" && st.uid !== process.getuid()) {
    throw new UnsafeDirectoryError(dir, `it is owned by uid ${st.uid}, not by us`);
  }
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
}
