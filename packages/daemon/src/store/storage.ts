/**
 * The daemon's database as one object: opens it (with `PRAGMA quick_check`), sets a corrupt file
 * aside as `loxmcp.db.corrupt-<time>` (never deleted) and starts a fresh one, at start and when
 * SQLITE_CORRUPT / SQLITE_NOTADB shows up at run time, and tracks whether the file can be written
 * (disk full, read-only, I/O error) for `loxmcp/status`.
 *
 * `storage.db` is a stand-in that always forwards to the current SQLite handle, so the stores
 * built on it keep working after a corrupt file was replaced (they fetch statements with
 * `statement()`, which caches per handle).
 */
import { EventEmitter } from "node:events";
import { copyFileSync, existsSync, mkdtempSync, renameSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import BetterSqlite3 from "better-sqlite3";
import type { Logger } from "pino";
import { type Database, isCorruption, openDatabase } from "./db.js";
import {
  classifySqliteError,
  registerHandle,
  type StorageCause,
  StorageError,
  StorageHealth,
  storageFix,
} from "./health.js";
import type { Migration } from "./migrations.js";

/** Tables whose rows are copied from a corrupt file into the fresh one when they can be read. */
const SALVAGE = [
  { table: "policy_state", what: "emergency stop state" },
  { table: "person_pin", what: "approval PIN" },
  { table: "trusted_tools", what: "trusted tool list" },
] as const;

/** At most one run-time replacement per this long (a failing disk must not spin). */
const RECOVER_MIN_INTERVAL_MS = 60_000;

export interface RecoveryInfo {
  /** Where the damaged file is now. */
  from: string;
  /** Epoch ms. */
  at: number;
  /** What SQLite said. */
  reason: string;
  /** When it was found: opening the database at start, or a query at run time. */
  when: "start" | "runtime";
  /** What was copied over from the damaged file. */
  salvaged: string[];
  /** What could not be read from it (if it existed: an emergency stop or a PIN must be set again). */
  unreadable: string[];
}

export interface StorageStatus {
  ok: boolean;
  path: string;
  cause?: StorageCause;
  code?: string;
  error?: string;
  /** ISO time of the first failure. */
  since?: string;
  /** What failed (audit, tokens, …). */
  what?: string;
  fix?: string;
  recovered?: {
    from: string;
    at: string;
    reason: string;
    when: "start" | "runtime";
    salvaged: string[];
    unreadable: string[];
  };
}

export interface OpenStorageOptions {
  logger?: Logger;
  migrations?: readonly Migration[];
  now?: () => number;
}

export interface StorageEvents {
  /** A corrupt file was set aside and a fresh database is in use. */
  replaced: [RecoveryInfo];
}

export class Storage extends EventEmitter<StorageEvents> {
  /** Forwards to the current SQLite handle; give this to the stores. */
  readonly db: Database;
  readonly health: StorageHealth;
  private handle: Database;
  private recovered_: RecoveryInfo | undefined;
  private recovering = false;
  private lastRuntimeRecovery = 0;
  private closed = false;

  private constructor(
    readonly file: string,
    handle: Database,
    private readonly opts: OpenStorageOptions,
  ) {
    super();
    this.handle = handle;
    const now = opts.now ?? Date.now;
    this.health = new StorageHealth(now);
    const target = () => this.handle;
    this.db = new Proxy(Object.create(null) as object, {
      get: (_t, prop) => {
        const h = target();
        const v = Reflect.get(h, prop, h) as unknown;
        return typeof v === "function" ? (v as (...a: unknown[]) => unknown).bind(h) : v;
      },
      has: (_t, prop) => Reflect.has(target(), prop),
    }) as Database;
    registerHandle(this.db, this.health, target);
    this.health.on("failed", (p) =>
      this.opts.logger?.error(
        { db: this.file, cause: p.cause, code: p.code, what: p.what },
        `the database cannot be written: ${p.error}; writes are refused until it can (reads go on); ${storageFix(p.cause, dirname(this.file))}`,
      ),
    );
    this.health.on("recovered", (p) =>
      this.opts.logger?.warn(
        { db: this.file, was: p.cause, since: new Date(p.since).toISOString() },
        "the database can be written again: writes are allowed",
      ),
    );
    this.health.on("corrupt", (p) => {
      if (this.recovering || this.closed) return;
      this.recovering = true;
      setImmediate(() => {
        try {
          this.replaceCorrupt(p.error);
        } finally {
          this.recovering = false;
        }
      });
    });
  }

  /**
   * Opens `file` (creating it if needed) after checking it. A damaged file is set aside as
   * `<file>.corrupt-<time>` (with its -wal/-shm) and a fresh database takes its place.
   */
  static open(file: string, opts: OpenStorageOptions = {}): Storage {
    const now = opts.now ?? Date.now;
    const openOpts = { check: true, ...(opts.migrations ? { migrations: opts.migrations } : {}) };
    try {
      return new Storage(file, openDatabase(file, openOpts), opts);
    } catch (err) {
      if (!isCorruption(err)) {
        const c = classifySqliteError(err);
        if (!c) throw err;
        // Disk full, read-only, I/O error at start: one line that names the file, cause and fix.
        throw new StorageError(
          c.cause,
          c.code,
          `cannot open the database ${file}: ${c.cause} (${c.code}: ${(err as Error).message}); ${storageFix(c.cause, dirname(file))}`,
        );
      }
      const reason = (err as Error).message;
      const at = now();
      const from = setAside(file, at);
      const fresh = openDatabase(file, openOpts);
      const { salvaged, unreadable } = salvage(from, fresh);
      const s = new Storage(file, fresh, opts);
      s.recovered_ = { from, at, reason, when: "start", salvaged, unreadable };
      s.logRecovery(s.recovered_);
      return s;
    }
  }

  get recovered(): RecoveryInfo | undefined {
    return this.recovered_;
  }

  status(): StorageStatus {
    const out: StorageStatus = { ok: this.health.ok, path: this.file };
    const p = this.health.problem;
    if (p) {
      out.cause = p.cause;
      out.code = p.code;
      out.error = p.error;
      out.since = new Date(p.since).toISOString();
      out.what = p.what;
      out.fix = storageFix(p.cause, dirname(this.file));
    }
    const r = this.recovered_;
    if (r) {
      out.recovered = {
        from: r.from,
        at: new Date(r.at).toISOString(),
        reason: r.reason,
        when: r.when,
        salvaged: r.salvaged,
        unreadable: r.unreadable,
      };
    }
    return out;
  }

  /**
   * Run time: the current file turned out corrupt. Close it, set it aside, open a fresh one
   * (the stores follow through `db`). Returns false when it could not be done (then the
   * problem stays in status and writes keep being refused).
   */
  replaceCorrupt(reason: string): boolean {
    if (this.closed) return false;
    const now = (this.opts.now ?? Date.now)();
    if (now - this.lastRuntimeRecovery < RECOVER_MIN_INTERVAL_MS) return false;
    this.lastRuntimeRecovery = now;
    const log = this.opts.logger;
    try {
      this.handle.close();
    } catch {
      // a damaged file may refuse even that
    }
    let from: string;
    try {
      from = setAside(this.file, now);
    } catch (err) {
      log?.error(
        { db: this.file, err: (err as Error).message },
        "the database is corrupt and could not be moved aside: writes stay refused; stop the daemon and move the file away by hand",
      );
      this.handle = reopenOrMemory(this.file);
      return false;
    }
    let fresh: Database;
    try {
      fresh = openDatabase(this.file, this.opts.migrations ? { migrations: this.opts.migrations } : {});
    } catch (err) {
      log?.error(
        { db: this.file, err: (err as Error).message },
        "a fresh database could not be created after setting the corrupt one aside: writes stay refused",
      );
      this.handle = new BetterSqlite3(":memory:");
      return false;
    }
    const { salvaged, unreadable } = salvage(from, fresh);
    try {
      // Answers to writes stored in the old file may still be queued by id: new rows must not
      // reuse those ids.
      fresh.prepare("INSERT OR REPLACE INTO sqlite_sequence (name, seq) VALUES ('audit_events', ?)").run(now);
    } catch {
      // no audit table in this schema
    }
    this.handle = fresh;
    this.health.reset();
    this.recovered_ = { from, at: now, reason, when: "runtime", salvaged, unreadable };
    this.logRecovery(this.recovered_);
    this.emit("replaced", this.recovered_);
    return true;
  }

  close(): void {
    this.closed = true;
    this.handle.close();
  }

  private logRecovery(r: RecoveryInfo): void {
    this.opts.logger?.error(
      { db: this.file, movedTo: r.from, reason: r.reason, salvaged: r.salvaged, unreadable: r.unreadable },
      `the database was corrupt (${r.reason}): it was moved aside to ${r.from} (kept, not deleted) and a fresh database was created; the daemon logs in to the Miniserver again${r.unreadable.length > 0 ? `; could not be read from the old file: ${r.unreadable.join(", ")} (if you had set them, set them again)` : ""}`,
    );
  }
}

/** `loxmcp.db` → `loxmcp.db.corrupt-2026-11-23T11-00-00-000Z` (its -wal/-shm alongside). Returns the new path. */
export function setAside(file: string, at: number): string {
  const stamp = new Date(at).toISOString().replace(/[:.]/g, "-");
  let target = `${file}.corrupt-${stamp}`;
  for (let n = 2; existsSync(target); n++) target = `${file}.corrupt-${stamp}-${n}`;
  renameSync(file, target);
  for (const suffix of ["-wal", "-shm"]) {
    if (existsSync(file + suffix)) {
      try {
        renameSync(file + suffix, target + suffix);
      } catch {
        // the main file is aside; a stale -wal/-shm left behind would be applied to the fresh
        // database, so it must not stay: fall through to the check below
      }
      if (existsSync(file + suffix)) {
        throw new Error(`could not move ${basename(file + suffix)} aside`);
      }
    }
  }
  return target;
}

/** Copies the small safety-relevant tables from the damaged file, where they can still be read. */
function salvage(from: string, fresh: Database): { salvaged: string[]; unreadable: string[] } {
  const salvaged: string[] = [];
  const unreadable: string[] = [];
  // Read a private copy (with its -wal): opening the damaged file itself would add -wal/-shm
  // files next to it, and it stays exactly as it was found.
  let copyDir: string | undefined;
  let old: Database | undefined;
  try {
    copyDir = mkdtempSync(join(dirname(from), ".salvage-"));
    const copy = join(copyDir, "old.db");
    copyFileSync(from, copy);
    if (existsSync(`${from}-wal`)) copyFileSync(`${from}-wal`, `${copy}-wal`);
    old = new BetterSqlite3(copy, { fileMustExist: true });
  } catch {
    if (copyDir) rmSync(copyDir, { recursive: true, force: true });
    return { salvaged, unreadable: SALVAGE.map((s) => s.what) };
  }
  try {
    for (const { table, what } of SALVAGE) {
      try {
        const rows = old.prepare(`SELECT * FROM ${table}`).all() as Array<Record<string, unknown>>;
        const cols = new Set(
          (fresh.pragma(`table_info(${table})`) as Array<{ name: string }>).map((c) => c.name),
        );
        fresh.transaction(() => {
          for (const row of rows) {
            const keys = Object.keys(row).filter((k) => cols.has(k));
            if (keys.length === 0) continue;
            fresh
              .prepare(
                `INSERT OR REPLACE INTO ${table} (${keys.join(", ")}) VALUES (${keys.map(() => "?").join(", ")})`,
              )
              .run(...keys.map((k) => row[k]));
          }
        })();
        if (rows.length > 0) salvaged.push(what);
      } catch (err) {
        // A table that never existed in the old file (older schema) is not a loss.
        if (!/no such table/i.test((err as Error).message)) unreadable.push(what);
      }
    }
  } finally {
    try {
      old.close();
    } catch {
      // damaged
    }
    rmSync(copyDir, { recursive: true, force: true });
  }
  return { salvaged, unreadable };
}

function reopenOrMemory(file: string): Database {
  try {
    return openDatabase(file);
  } catch {
    return new BetterSqlite3(":memory:");
  }
}
