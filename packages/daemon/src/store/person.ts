/**
 * The person's approval PIN (a salted scrypt hash, never the PIN) and the wrong-PIN counter with
 * its lockout, kept across daemon restarts. One row; only this module runs its SQL. A wrong PIN
 * that cannot be counted (disk full) throws StorageError, so the attempt fails closed.
 */
import type Database from "better-sqlite3";
import { guardRead, guardWrite } from "./health.js";

export const PERSON_SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS person_pin (
  id           INTEGER PRIMARY KEY CHECK (id = 1),
  pin_hash     TEXT,
  set_at       INTEGER,
  failures     INTEGER NOT NULL DEFAULT 0,
  locked_until INTEGER NOT NULL DEFAULT 0,
  last_failure INTEGER
);
`;

export interface PinRecord {
  /** `scrypt$N$r$p$salt$hash` (base64), or null when no PIN is set. */
  hash: string | null;
  setAt: number | null;
  /** Wrong PINs in a row. */
  failures: number;
  /** Epoch ms until which every attempt is refused (0: not locked). */
  lockedUntil: number;
  lastFailure: number | null;
}

interface Row {
  pin_hash: string | null;
  set_at: number | null;
  failures: number;
  locked_until: number;
  last_failure: number | null;
}

export class PinStore {
  constructor(private readonly db: Database.Database) {}

  get(): PinRecord {
    const row = guardRead(
      this.db,
      "approval PIN",
      () =>
        this.db
          .prepare(
            "SELECT pin_hash, set_at, failures, locked_until, last_failure FROM person_pin WHERE id = 1",
          )
          .get() as Row | undefined,
    );
    if (!row) return { hash: null, setAt: null, failures: 0, lockedUntil: 0, lastFailure: null };
    return {
      hash: row.pin_hash,
      setAt: row.set_at,
      failures: row.failures,
      lockedUntil: row.locked_until,
      lastFailure: row.last_failure,
    };
  }

  /** Stores a new hash (null removes the PIN) and clears the failure counter. */
  setHash(hash: string | null, now: number): void {
    guardWrite(this.db, "approval PIN", () => this.setHashRow(hash, now));
  }

  private setHashRow(hash: string | null, now: number): void {
    this.db
      .prepare(
        `INSERT INTO person_pin (id, pin_hash, set_at, failures, locked_until, last_failure)
         VALUES (1, ?, ?, 0, 0, NULL)
         ON CONFLICT(id) DO UPDATE SET pin_hash = excluded.pin_hash, set_at = excluded.set_at,
           failures = 0, locked_until = 0, last_failure = NULL`,
      )
      .run(hash, hash === null ? null : now);
  }

  /** Records one wrong PIN: the new counter and lockout. */
  recordFailure(failures: number, lockedUntil: number, now: number): void {
    guardWrite(this.db, "approval PIN", () => this.recordFailureRow(failures, lockedUntil, now));
  }

  private recordFailureRow(failures: number, lockedUntil: number, now: number): void {
    this.db
      .prepare(
        `INSERT INTO person_pin (id, failures, locked_until, last_failure) VALUES (1, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET failures = excluded.failures,
           locked_until = excluded.locked_until, last_failure = excluded.last_failure`,
      )
      .run(failures, lockedUntil, now);
  }

  clearFailures(): void {
    guardWrite(this.db, "approval PIN", () =>
      this.db.prepare("UPDATE person_pin SET failures = 0, locked_until = 0 WHERE id = 1").run(),
    );
  }
}
