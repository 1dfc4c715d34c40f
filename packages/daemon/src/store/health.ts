/**
 * Is the database writable right now, and if not, why? Every store reports the SQLite errors it
 * meets here (disk full, read-only, I/O error, corruption) and every successful write clears
 * them, so `loxmcp/status` can say what is wrong and the daemon recovers by itself once it is
 * fixed. Also the per-handle statement cache the stores share (the handle can be replaced when a
 * corrupt database is set aside at run time, see storage.ts).
 */
import { EventEmitter } from "node:events";
import type { Database, Statement } from "better-sqlite3";

/** What went wrong, in words a person can act on. */
export type StorageCause = "disk full" | "read-only" | "I/O error" | "corrupt" | "busy" | "SQLite error";

export interface StorageProblem {
  cause: StorageCause;
  /** The SQLite (extended) result code, e.g. SQLITE_FULL, SQLITE_IOERR_WRITE. */
  code: string;
  /** One line: cause, code and SQLite's message. */
  error: string;
  /** What the daemon was doing (e.g. "audit", "tokens"). */
  what: string;
  /** Epoch ms of the first failure since the storage was last fine. */
  since: number;
}

/** A store operation failed because of the database; `message` names the cause and the code. */
export class StorageError extends Error {
  readonly code = "STORAGE_UNAVAILABLE";
  constructor(
    readonly storageCause: StorageCause,
    readonly sqliteCode: string,
    message: string,
  ) {
    super(message);
    this.name = "StorageError";
  }
}

/** Classifies a thrown value; undefined when it is not a SQLite error. */
export function classifySqliteError(err: unknown): { cause: StorageCause; code: string } | undefined {
  if (err instanceof StorageError) return { cause: err.storageCause, code: err.sqliteCode };
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !code.startsWith("SQLITE_")) return undefined;
  if (code === "SQLITE_FULL") return { cause: "disk full", code };
  if (code.startsWith("SQLITE_READONLY")) return { cause: "read-only", code };
  if (code.startsWith("SQLITE_IOERR") || code.startsWith("SQLITE_CANTOPEN"))
    return { cause: "I/O error", code };
  if (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB") return { cause: "corrupt", code };
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) return { cause: "busy", code };
  return { cause: "SQLite error", code };
}

/** What a person should do about a cause (for messages, the log and `loxmcp doctor`). */
export function storageFix(cause: StorageCause, file?: string): string {
  const where = file ? ` holding ${file}` : "";
  switch (cause) {
    case "disk full":
      return `free space on the file system${where} (the daemon recovers by itself once there is room)`;
    case "read-only":
      return `make the database${file ? ` ${file}` : ""}, its -wal/-shm files and its directory writable by the daemon's user, and the file system read-write`;
    case "I/O error":
      return `check the disk${where} (dmesg, SMART); free space or move the state directory to a healthy disk`;
    case "corrupt":
      return "the daemon sets the corrupt file aside and starts a fresh database; see `loxmcp status`";
    case "busy":
      return "another process holds the database locked; stop it (only loxmcpd should open the file)";
    default:
      return "see `loxmcp logs -n 50`";
  }
}

export interface StorageHealthEvents {
  /** The first failure after a good state (or a change of cause). */
  failed: [StorageProblem];
  /** A write succeeded after failures. */
  recovered: [StorageProblem];
  /** SQLITE_CORRUPT / SQLITE_NOTADB met at run time: the storage owner sets the file aside. */
  corrupt: [StorageProblem];
}

export class StorageHealth extends EventEmitter<StorageHealthEvents> {
  private problem_: StorageProblem | undefined;
  /** Failures since the storage was last fine. */
  failures = 0;

  constructor(private readonly now: () => number = Date.now) {
    super();
  }

  get ok(): boolean {
    return this.problem_ === undefined;
  }

  get problem(): StorageProblem | undefined {
    return this.problem_;
  }

  /**
   * Records a failed operation. Returns a StorageError whose message names the cause (throw it),
   * or undefined when `err` is not a SQLite error (rethrow the original).
   */
  fail(err: unknown, what: string): StorageError | undefined {
    const c = classifySqliteError(err);
    if (!c) return undefined;
    const detail = err instanceof Error ? err.message : String(err);
    const error = `${c.cause} (${c.code}${detail && !detail.includes(c.code) ? `: ${detail}` : ""})`;
    this.failures += 1;
    const prev = this.problem_;
    // "busy" is transient contention, not a storage fault worth a status line of its own.
    if (c.cause !== "busy") {
      if (!prev || prev.cause !== c.cause) {
        this.problem_ = { cause: c.cause, code: c.code, error, what, since: prev?.since ?? this.now() };
        this.emit("failed", this.problem_);
      } else {
        this.problem_ = { ...prev, code: c.code, error, what };
      }
      if (c.cause === "corrupt") this.emit("corrupt", this.problem_);
    }
    return err instanceof StorageError ? err : new StorageError(c.cause, c.code, error);
  }

  /** Records a successful write: the storage is fine again. */
  succeed(): void {
    const prev = this.problem_;
    if (!prev) return;
    this.problem_ = undefined;
    this.failures = 0;
    this.emit("recovered", prev);
  }

  /** Forgets the problem without a write (after a corrupt file was replaced by a fresh one). */
  reset(): void {
    this.problem_ = undefined;
    this.failures = 0;
  }
}

// ------------------------------------------------------------------ registry (per database object)

const healths = new WeakMap<object, StorageHealth>();
/** For a database proxy (storage.ts): the real handle it currently forwards to. */
const currentHandles = new WeakMap<object, () => Database>();
const statements = new WeakMap<object, Map<string, Statement>>();

/** The health record of `db` (created on first use). */
export function healthOf(db: Database): StorageHealth {
  let h = healths.get(db);
  if (!h) {
    h = new StorageHealth();
    healths.set(db, h);
  }
  return h;
}

/** Used by storage.ts: `db` is a proxy that shares `health` and forwards to `current()`. */
export function registerHandle(db: Database, health: StorageHealth, current: () => Database): void {
  healths.set(db, health);
  currentHandles.set(db, current);
}

/** A prepared statement for `sql` on the handle `db` currently uses (cached per handle). */
export function statement(db: Database, sql: string): Statement {
  const handle = currentHandles.get(db)?.() ?? db;
  let cache = statements.get(handle);
  if (!cache) {
    cache = new Map();
    statements.set(handle, cache);
  }
  let st = cache.get(sql);
  if (!st) {
    st = handle.prepare(sql);
    cache.set(sql, st);
  }
  return st;
}

/**
 * Runs a store operation that writes. Success marks the storage fine; a SQLite error is
 * recorded and rethrown as a StorageError naming the cause (other errors pass unchanged).
 */
export function guardWrite<T>(db: Database, what: string, fn: () => T): T {
  const health = healthOf(db);
  let out: T;
  try {
    out = fn();
  } catch (err) {
    throw health.fail(err, what) ?? err;
  }
  health.succeed();
  return out;
}

/**
 * Runs a store operation whose success does not show that the file can be written (a read, or
 * a DELETE/UPDATE that may match nothing): errors are recorded, success clears nothing.
 */
export function guardRead<T>(db: Database, what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw healthOf(db).fail(err, what) ?? err;
  }
}
