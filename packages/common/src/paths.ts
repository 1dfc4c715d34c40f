import { chmodSync, lstatSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
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

/**
 * The daemon socket lives in a directory that another local user could write to (or own, or
 * swap through a link): whoever can put a socket there can play the daemon and read every
 * request of ours. Shim and CLI refuse to connect, and never start a daemon for it.
 */
export class UnsafeSocketDirError extends Error {
  readonly code = "UNSAFE_SOCKET_DIR";
  constructor(
    readonly socket: string,
    readonly dir: string,
    problem: string,
    fix: string,
  ) {
    super(`refusing the daemon socket ${socket}: its directory ${dir} ${problem}; ${fix}`);
    this.name = "UnsafeSocketDirError";
  }
}

/** `LOXMCP_HOME` is not ours alone: its config, state and socket could be swapped by someone else. */
export class UnsafeHomeError extends Error {
  readonly code = "UNSAFE_HOME";
  constructor(
    readonly home: string,
    problem: string,
    fix: string,
  ) {
    super(`refusing LOXMCP_HOME ${home}: it ${problem}; ${fix}`);
    this.name = "UnsafeHomeError";
  }
}

export type UnsafePathError = UnsafeSocketDirError | UnsafeHomeError;

export function isUnsafePathError(e: unknown): e is UnsafePathError {
  return e instanceof UnsafeSocketDirError || e instanceof UnsafeHomeError;
}

type DirProblem = "symlink" | "not-dir" | "owner" | "writable";

interface DirVerdict {
  problem: DirProblem;
  /** Words after "it is …" / "its directory … is …". */
  text: string;
  /** The sticky bit is set (a shared directory such as /tmp). */
  sticky?: boolean;
}

/**
 * Looks at `dir` itself (lstat: a link is not followed). Fine when missing (the daemon creates
 * it 0700), or a real directory owned by us (or by root when `allowRoot`: a system daemon's
 * /run/loxmcp) that neither group nor others may write to.
 */
function inspectDir(dir: string, allowRoot: boolean): DirVerdict | undefined {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(dir);
  } catch {
    return undefined; // missing (or unreadable: then connecting fails on its own)
  }
  if (st.isSymbolicLink()) return { problem: "symlink", text: "is a symbolic link" };
  if (!st.isDirectory()) return { problem: "not-dir", text: "is not a directory" };
  const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
  if (uid !== undefined && st.uid !== uid && !(allowRoot && st.uid === 0)) {
    return { problem: "owner", text: `is owned by uid ${st.uid}, not by you (uid ${uid})` };
  }
  if ((st.mode & 0o022) !== 0) {
    const mode = (st.mode & 0o7777).toString(8).padStart(4, "0");
    return {
      problem: "writable",
      text: `is writable by other users (mode ${mode})`,
      sticky: (st.mode & 0o1000) !== 0,
    };
  }
  return undefined;
}

/**
 * Refuses (throws UnsafeHomeError / UnsafeSocketDirError, one line naming the path and the fix)
 * to talk to a daemon socket that another user could have put there: a `LOXMCP_HOME` (when set)
 * that is not a real directory of ours or is writable by group/others, and a socket directory
 * that is a link, not ours (root is accepted, for a system daemon) or writable by group/others.
 * Missing directories are fine. Shim and CLI call it before every connect or daemon start.
 */
export function checkSocketPath(paths: Pick<LoxmcpPaths, "socket">, env: Env = process.env): void {
  const home = env.LOXMCP_HOME;
  if (home) {
    const v = inspectDir(home, false);
    if (v) {
      // [consequence, fix] per problem
      const why: Record<DirProblem, [string, string]> = {
        symlink: [
          ", so whoever controls the link decides where config, state and socket are",
          "set LOXMCP_HOME to the real directory",
        ],
        "not-dir": ["", "set LOXMCP_HOME to a directory (it is created when missing)"],
        owner: [", so that user controls its config, state and socket", "use a directory of your own"],
        writable: [
          ", so another user could replace its config, state or socket",
          `chmod 700 ${home} or use another LOXMCP_HOME`,
        ],
      };
      const [consequence, fix] = why[v.problem];
      throw new UnsafeHomeError(home, `${v.text}${consequence}`, fix);
    }
  }
  const dir = dirname(paths.socket);
  const v = inspectDir(dir, true);
  if (v) {
    const orUnset = env.LOXMCP_SOCKET ? " or unset LOXMCP_SOCKET" : "";
    const why: Record<DirProblem, [string, string]> = {
      symlink: [
        ", so whoever controls the link decides which daemon you talk to",
        `use the real directory${orUnset}`,
      ],
      "not-dir": ["", `remove ${dir} (the daemon creates the directory)${orUnset}`],
      owner: [", so that user could run a fake daemon there", `use a directory of your own${orUnset}`],
      writable: [
        ", so another user could put a fake daemon there",
        // A sticky directory is a shared one like /tmp: tightening it would break everyone else.
        v.sticky
          ? `use a private directory instead (e.g. mkdir -m 700 ${join(dir, "loxmcp")} and put the socket there)${orUnset}`
          : `use a private directory (chmod 700 ${dir})${orUnset}`,
      ],
    };
    const [consequence, fix] = why[v.problem];
    throw new UnsafeSocketDirError(paths.socket, dir, `${v.text}${consequence}`, fix);
  }
}
