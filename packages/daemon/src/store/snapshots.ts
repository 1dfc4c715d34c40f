/**
 * House structure snapshots (history kept) and the policy's small persistent state
 * (the emergency stop, which must survive a daemon restart).
 */
import type Database from "better-sqlite3";
import { guardRead, guardWrite, StorageError } from "./health.js";

export const SNAPSHOTS_SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS structure_snapshots (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  checked_at INTEGER NOT NULL,
  control_count INTEGER NOT NULL,
  controls TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS structure_snapshots_hash ON structure_snapshots(hash);
CREATE TABLE IF NOT EXISTS policy_state (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);
`;

export interface StoredControl {
  uuid: string;
  name: string;
  type: string;
  room: string;
  category: string;
  /** Allowed commands; `{n}` marks a number placeholder (e.g. `manualPosition/{n}`). Empty = unknown. */
  commands: string[];
}

export interface StoredSnapshot {
  id: number;
  hash: string;
  createdAt: number;
  checkedAt: number;
  controls: StoredControl[];
}

interface SnapRow {
  id: number;
  hash: string;
  created_at: number;
  checked_at: number;
  controls: string;
}

export class SnapshotStore {
  /** The last snapshot saved (or, when the database refused it, kept in memory only). */
  private last: StoredSnapshot | undefined;

  constructor(private readonly db: Database.Database) {
    try {
      db.exec(SNAPSHOTS_SCHEMA_SQL);
    } catch {
      // Created by the migrations; a database that cannot be written now must not stop the start.
    }
  }

  /**
   * Stores a snapshot unless the latest one has the same hash, in which case only its
   * `checked_at` moves. Returns the latest snapshot and whether it is new. When the database
   * cannot be written (disk full, …) the snapshot is still returned (`persisted: false`): the
   * policy keeps using it, and the failure shows in the storage health.
   */
  save(
    hash: string,
    controls: StoredControl[],
    now = Date.now(),
  ): { snapshot: StoredSnapshot; changed: boolean; persisted?: false } {
    try {
      const out = guardWrite(this.db, "structure snapshot", () => this.saveTx(hash, controls, now));
      this.last = out.snapshot;
      return out;
    } catch (err) {
      if (!(err instanceof StorageError)) throw err;
      const prev = this.last;
      const snapshot =
        prev && prev.hash === hash
          ? { ...prev, checkedAt: now }
          : { id: prev?.id ?? 0, hash, createdAt: now, checkedAt: now, controls };
      this.last = snapshot;
      return { snapshot, changed: !prev || prev.hash !== hash, persisted: false };
    }
  }

  private saveTx(hash: string, controls: StoredControl[], now: number) {
    return this.db.transaction(() => {
      const last = this.latest();
      if (last && last.hash === hash) {
        this.db.prepare("UPDATE structure_snapshots SET checked_at = ? WHERE id = ?").run(now, last.id);
        return { snapshot: { ...last, checkedAt: now }, changed: false };
      }
      const info = this.db
        .prepare(
          "INSERT INTO structure_snapshots (hash, created_at, checked_at, control_count, controls) VALUES (?, ?, ?, ?, ?)",
        )
        .run(hash, now, now, controls.length, JSON.stringify(controls));
      return {
        snapshot: { id: Number(info.lastInsertRowid), hash, createdAt: now, checkedAt: now, controls },
        changed: true,
      };
    })();
  }

  latest(): StoredSnapshot | undefined {
    const got = this.recent(1)[0];
    if (got) this.last = got;
    return got;
  }

  /** Newest first. */
  recent(n: number): StoredSnapshot[] {
    const rows = guardRead(
      this.db,
      "structure snapshot",
      () =>
        this.db
          .prepare(
            "SELECT id, hash, created_at, checked_at, controls FROM structure_snapshots ORDER BY id DESC LIMIT ?",
          )
          .all(n) as SnapRow[],
    );
    return rows.map((r) => ({
      id: r.id,
      hash: r.hash,
      createdAt: r.created_at,
      checkedAt: r.checked_at,
      controls: JSON.parse(r.controls) as StoredControl[],
    }));
  }

  /** Keeps the newest `keep` snapshots. */
  prune(keep: number): number {
    return guardRead(
      this.db,
      "structure snapshot",
      () =>
        this.db
          .prepare(
            "DELETE FROM structure_snapshots WHERE id NOT IN (SELECT id FROM structure_snapshots ORDER BY id DESC LIMIT ?)",
          )
          .run(keep).changes,
    );
  }

  getState<T>(key: string): T | undefined {
    const row = guardRead(
      this.db,
      "policy state",
      () =>
        this.db.prepare("SELECT value FROM policy_state WHERE key = ?").get(key) as
          | { value: string }
          | undefined,
    );
    return row ? (JSON.parse(row.value) as T) : undefined;
  }

  /** Throws StorageError when the database cannot be written. */
  setState(key: string, value: unknown, now = Date.now()): void {
    guardWrite(this.db, "policy state", () =>
      this.db
        .prepare(
          "INSERT INTO policy_state (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .run(key, JSON.stringify(value), now),
    );
  }

  /** Throws StorageError when the database cannot be written. */
  deleteState(key: string): void {
    guardWrite(this.db, "policy state", () =>
      this.db.prepare("DELETE FROM policy_state WHERE key = ?").run(key),
    );
  }
}
