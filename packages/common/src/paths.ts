import { accessSync, chmodSync, constants, lstatSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import envPaths from "env-paths";
import { type SystemLayout, systemLayout, systemSelected, systemUserName, uidOf } from "./system.js";

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
  /**
   * Set when these are the system daemon's paths (hardened mode: it runs as its own user, see
   * system.ts): nothing here is the caller's, and nobody but its service manager starts it.
   */
  system?: SystemLayout;
}

export type Env = Record<string, string | undefined>;

/**
 * Resolves every path from the environment (the socket lookup order of DESIGN.md).
 * - `LOXMCP_HOME` set: everything lives under it (config/, state/, log/, run/).
 * - else, unless `LOXMCP_SOCKET` names another socket, the system daemon's layout (hardened mode,
 *   system.ts) when it is selected: `LOXMCP_SYSTEM=1`, or its socket (`/run/loxmcp/daemon.sock`)
 *   or its service file exists — installed but stopped still counts, so nobody starts a per-user
 *   daemon in its place.
 * - else `env-paths('loxmcp')`; the socket goes to `$XDG_RUNTIME_DIR/loxmcp/` when that
 *   directory is set and owned by us, else to `<state>/run/`.
 * `LOXMCP_SOCKET` always wins for the socket itself.
 */
export function resolvePaths(env: Env = process.env): LoxmcpPaths {
  const home = env.LOXMCP_HOME;
  let config: string;
  let state: string;
  let log: string;
  let runtime: string;
  const layout = home || env.LOXMCP_SOCKET ? undefined : systemLayout(env);
  const system = layout && systemSelected(env, layout) ? layout : undefined;
  if (home) {
    config = join(home, "config");
    state = join(home, "state");
    log = join(home, "log");
    runtime = join(home, "run");
  } else if (system) {
    ({ config, state, log, runtime } = system);
  } else {
    const p = envPaths("loxmcp", { suffix: "" });
    config = p.config;
    state = p.data;
    log = p.log;
    runtime = runtimeDirFromXdg(env.XDG_RUNTIME_DIR) ?? join(state, "run");
  }
  const paths: LoxmcpPaths = {
    config,
    state,
    log,
    runtime,
    socket: env.LOXMCP_SOCKET ?? join(runtime, "daemon.sock"),
    db: join(state, "loxmcp.db"),
    logFile: join(log, "daemon.log"),
    startLock: join(state, "daemon.start.lock"),
  };
  if (system) paths.system = system;
  return paths;
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
 * symlink), owned by us, mode 0700. Checked with lstat, as ssh-agent does. `mode` other than
 * 0700: the system daemon's socket directory, 0750 so that its group (the person) may reach the
 * socket; the group and other bits are then set to exactly that.
 */
export function ensurePrivateDir(dir: string, mode = 0o700): void {
  let st: ReturnType<typeof lstatSync>;
  try {
    mkdirSync(dir, { recursive: true, mode });
    st = lstatSync(dir);
  } catch (e) {
    throw asPathAccessError(e, dir, "create") ?? e;
  }
  if (st.isSymbolicLink() || !st.isDirectory()) throw new UnsafeDirectoryError(dir, "it is not a directory");
  if (typeof process.getuid === "function" && st.uid !== process.getuid()) {
    throw new UnsafeDirectoryError(dir, `it is owned by uid ${st.uid}, not by us`);
  }
  // Writable by others (beyond what `mode` allows): files may have been planted in it while it was
  // open, and they would be trusted (config, policy). Refuse it rather than quietly chmod it.
  const foreignWrite = st.mode & 0o022 & ~mode;
  if (foreignWrite !== 0) {
    throw new UnsafeDirectoryError(
      dir,
      `it is writable by ${foreignWrite & 0o002 ? "all users" : "its group"} (mode ${(st.mode & 0o7777).toString(8)}), so files in it may have been planted; check what is inside, then chmod ${mode.toString(8)} ${dir}`,
    );
  }
  if ((st.mode & 0o077) !== (mode & 0o077)) chmodSync(dir, mode);
}

/** Errors meaning "this path cannot be created or written by us" (not: disk full, I/O error). */
const ACCESS_ERRNOS = new Set(["EACCES", "EPERM", "EROFS", "ENOENT", "ENOTDIR"]);

/**
 * A loxmcp directory or file cannot be created or written (permissions, a read-only file system,
 * a missing or non-directory parent): one line naming the path, why, and the fix — instead of
 * "EACCES: permission denied, mkdir …" surfacing as an unexpected error.
 */
export class PathAccessError extends Error {
  readonly code = "PATH_NOT_WRITABLE";
  constructor(
    readonly path: string,
    /** The errno code behind it (EACCES, EROFS …). */
    readonly errno: string,
    message: string,
  ) {
    super(message);
    this.name = "PathAccessError";
  }
}

/**
 * Turns an errno error about `path` into a PathAccessError (or undefined for other errors, e.g.
 * ENOSPC): it names the nearest existing directory that blocks it and what to do.
 */
export function asPathAccessError(
  err: unknown,
  path: string,
  verb: "create" | "write" | "open" = "create",
): PathAccessError | undefined {
  if (err instanceof PathAccessError) return err;
  const errno = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof errno !== "string" || !ACCESS_ERRNOS.has(errno)) return undefined;
  const where =
    typeof (err as NodeJS.ErrnoException).path === "string" ? (err as NodeJS.ErrnoException).path! : path;
  // The nearest part of the path that exists: the directory we could not write to.
  let blocker = where;
  for (let i = 0; i < 64; i++) {
    try {
      lstatSync(blocker);
      break;
    } catch {
      const up = dirname(blocker);
      if (up === blocker) break;
      blocker = up;
    }
  }
  const uid = typeof process.getuid === "function" ? ` (uid ${process.getuid()})` : "";
  const elsewhere = "or set LOXMCP_HOME to a directory you own";
  let why: string;
  let fix: string;
  if (errno === "EROFS") {
    why = `${blocker} is on a read-only file system`;
    fix = `set LOXMCP_HOME to a directory on a writable file system`;
  } else if (errno === "ENOENT" || errno === "ENOTDIR") {
    why = `a part of it is missing or not a directory (${blocker} is where it stops)`;
    fix = `create the directory (mkdir -p ${dirname(path)}) or remove what is in the way, ${elsewhere}`;
  } else {
    let owner: number | undefined;
    try {
      owner = lstatSync(blocker).uid;
    } catch {
      // gone meanwhile
    }
    const mine = owner === undefined || typeof process.getuid !== "function" || owner === process.getuid();
    why = `permission denied: ${blocker} is not writable for you${uid}`;
    fix = mine
      ? `chmod u+rwx ${blocker}, ${elsewhere}`
      : `it belongs to uid ${owner}: set LOXMCP_HOME to a directory you own (e.g. mkdir -m 700 ~/.loxmcp and LOXMCP_HOME=~/.loxmcp), or ask its owner`;
  }
  return new PathAccessError(path, errno, `cannot ${verb} ${path}: ${why} — ${fix}`);
}

/**
 * Whether `dir` can be used by us: created (its nearest existing parent writable) or, when it
 * exists, written. A PathAccessError naming the path and the fix, or undefined when it can.
 * (Root passes every mode check: this only finds what the kernel would refuse.)
 */
export function dirWritableProblem(dir: string): PathAccessError | undefined {
  let at = dir;
  for (let i = 0; i < 64; i++) {
    try {
      const st = lstatSync(at);
      if (!st.isDirectory()) {
        return asPathAccessError(
          Object.assign(new Error("not a directory"), { code: "ENOTDIR", path: at }),
          dir,
        );
      }
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "ENOENT") return asPathAccessError(e, dir);
      const up = dirname(at);
      if (up === at) break;
      at = up;
    }
  }
  try {
    accessSync(at, constants.W_OK | constants.X_OK);
    return undefined;
  } catch (e) {
    return asPathAccessError(Object.assign(e as Error, { path: at }), dir, at === dir ? "write" : "create");
  }
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
 * it 0700), or a real directory owned by us (or by root when `allowRoot`, or by one of
 * `otherOwners`: the system daemon's user for its /run/loxmcp) that neither group nor others may
 * write to.
 */
function inspectDir(
  dir: string,
  allowRoot: boolean,
  otherOwners: () => number[] = () => [],
): DirVerdict | undefined {
  let st: ReturnType<typeof lstatSync>;
  try {
    st = lstatSync(dir);
  } catch {
    return undefined; // missing (or unreadable: then connecting fails on its own)
  }
  if (st.isSymbolicLink()) return { problem: "symlink", text: "is a symbolic link" };
  if (!st.isDirectory()) return { problem: "not-dir", text: "is not a directory" };
  const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
  if (
    uid !== undefined &&
    st.uid !== uid &&
    !(allowRoot && st.uid === 0) &&
    !otherOwners().includes(st.uid)
  ) {
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
 * that is a link, not ours (root's is accepted, and the system daemon's user's for its own
 * /run/loxmcp) or writable by group/others.
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
  // The system daemon's socket directory belongs to its own user (hardened mode): only root could
  // have made that user its owner, so it is accepted like root's.
  const system = systemLayout(env);
  const v = inspectDir(dir, true, () => {
    if (dir !== system.runtime) return [];
    const uid = uidOf(systemUserName(system));
    return uid === undefined ? [] : [uid];
  });
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
