/**
 * Opens the daemon's SQLite database: private file (0600), WAL, synchronous=FULL, foreign keys,
 * busy timeout, schema migrations by `PRAGMA user_version`, and on request `PRAGMA quick_check`
 * (a corrupt file is reported as StoreError DB_CORRUPT; storage.ts sets it aside). Only store/
 * runs SQL.
 */
import { chmodSync, closeSync, existsSync, lstatSync, mkdirSync, openSync } from "node:fs";
import { dirname } from "node:path";
import type { Database } from "better-sqlite3";
import BetterSqlite3 from "better-sqlite3";
import { migrations as defaultMigrations, type Migration } from "./migrations.js";

export type { Database } from "better-sqlite3";

export class StoreError extends Error {
  constructor(
    readonly code: "UNSAFE_DB_FILE" | "DB_TOO_NEW" | "MIGRATION_FAILED" | "DB_CORRUPT",
    message: string,
  ) {
    super(message);
    this.name = "StoreError";
  }
}

const FILE_MODE = 0o600;

export interface OpenDatabaseOptions {
  /** Migrations to apply (default: the product's list). Tests may pass their own. */
  migrations?: readonly Migration[];
  busyTimeoutMs?: number;
  /**
   * Run `PRAGMA quick_check` before the migrations (the daemon does at start): a damaged file
   * throws StoreError DB_CORRUPT instead of failing later, at some query.
   */
  check?: boolean;
}

/**
 * Opens (creating if needed) the database at `file`. The file and its WAL/SHM companions are
 * mode 0600; a symlink or a file owned by someone else is refused.
 */
export function openDatabase(file: string, options: OpenDatabaseOptions = {}): Database {
  const migrations = options.migrations ?? defaultMigrations;
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  if (existsSync(file)) {
    checkFile(file);
  } else {
    // Create it ourselves with 0600 so there is no window where SQLite made it 0644.
    closeSync(openSync(file, "a", FILE_MODE));
  }
  makePrivate(file);

  const db = new BetterSqlite3(file);
  try {
    applyPragmas(db, options.busyTimeoutMs ?? 5000);
    if (options.check) quickCheck(db, file);
    migrate(db, migrations, file);
    // WAL and SHM files appear on first write; SQLite gives them the main file's mode, make sure.
    for (const extra of [`${file}-wal`, `${file}-shm`]) {
      if (existsSync(extra)) makePrivate(extra);
    }
  } catch (err) {
    try {
      db.close();
    } catch {
      // a corrupt file may refuse even that
    }
    throw isCorruption(err)
      ? new StoreError(
          "DB_CORRUPT",
          `database ${file} is damaged (${(err as Error).message}; ${(err as { code?: string }).code})`,
        )
      : err;
  }
  return db;
}

/**
 * Opens the database another process (the daemon) owns and keeps migrated: no creation, no
 * migration, no repair; refused like `openDatabase` when it is a symlink or someone else's file.
 * For the OAuth helper child (relay/auth/flight-helper.ts), which writes the tokens of one flight.
 */
export function openOwnedDatabase(file: string, busyTimeoutMs = 5000): Database {
  checkFile(file);
  const db = new BetterSqlite3(file, { fileMustExist: true });
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    db.pragma("synchronous = FULL");
    db.pragma("foreign_keys = ON");
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}

/** SQLITE_CORRUPT* or SQLITE_NOTADB (also when wrapped as StoreError DB_CORRUPT). */
export function isCorruption(err: unknown): boolean {
  if (err instanceof StoreError) return err.code === "DB_CORRUPT";
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB");
}

function quickCheck(db: Database, file: string): void {
  const rows = db.pragma("quick_check(5)") as Array<{ quick_check: string }>;
  const problems = rows.map((r) => r.quick_check).filter((m) => m !== "ok");
  if (problems.length > 0) {
    throw new StoreError("DB_CORRUPT", `database ${file} is damaged (quick_check: ${problems.join("; ")})`);
  }
}

function applyPragmas(db: Database, busyTimeoutMs: number): void {
  db.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = ON");
}

function migrate(db: Database, migrations: readonly Migration[], file: string): void {
  const current = db.pragma("user_version", { simple: true }) as number;
  if (current > migrations.length) {
    throw new StoreError(
      "DB_TOO_NEW",
      `database ${file} has schema version ${current}, newer than this loxmcpd knows (${migrations.length}); upgrade loxmcp or move the file away`,
    );
  }
  for (let version = current + 1; version <= migrations.length; version++) {
    const step = migrations[version - 1]!;
    const run = db.transaction(() => {
      if (typeof step === "string") db.exec(step);
      else step(db);
      db.pragma(`user_version = ${version}`);
    });
    try {
      run.immediate();
    } catch (err) {
      if (isCorruption(err)) throw err;
      throw new StoreError(
        "MIGRATION_FAILED",
        `database ${file}: migration to schema version ${version} failed (${(err as Error).message}); the file was left at version ${version - 1}`,
      );
    }
  }
}

function checkFile(file: string): void {
  const st = lstatSync(file);
  if (st.isSymbolicLink() || !st.isFile()) {
    throw new StoreError("UNSAFE_DB_FILE", `refusing to open ${file}: it is not a regular file; remove it`);
  }
  if (typeof process.getuid === "function" && st.uid !== process.getuid()) {
    throw new StoreError(
      "UNSAFE_DB_FILE",
      `refusing to open ${file}: it is owned by uid ${st.uid}, not by us; remove it or fix its owner`,
    );
  }
}

function makePrivate(file: string): void {
  chmodSync(file, FILE_MODE);
  const mode = lstatSync(file).mode & 0o777;
  if (mode !== FILE_MODE) {
    throw new StoreError(
      "UNSAFE_DB_FILE",
      `could not make ${file} private (mode is ${mode.toString(8)}, want 600); check the file system`,
    );
  }
}
