/**
 * Schema migrations, applied in order by `openDatabase` and tracked with `PRAGMA user_version`.
 * Migration N (1-based) brings the schema from version N-1 to N, each in its own transaction.
 *
 * APPEND ONLY: never edit or reorder an entry that has shipped; add a new one at the end.
 * (The policy engineer appends audit_events / structure_snapshots here.)
 */
import type { Database } from "better-sqlite3";
import { AUDIT_SCHEMA_SQL } from "./audit.js";
import { PERSON_SCHEMA_SQL } from "./person.js";
import { SNAPSHOTS_SCHEMA_SQL } from "./snapshots.js";
import { TOOLS_SCHEMA_SQL } from "./tools.js";

/** One step: SQL run with `db.exec`, or a function for steps that need logic. */
export type Migration = string | ((db: Database) => void);

export const migrations: Migration[] = [
  // 1: OAuth state (per upstream key: the Loxone serial, or the MCP URL in direct mode) and relay cache.
  `
  CREATE TABLE oauth_tokens (
    upstream_key      TEXT PRIMARY KEY,
    tokens_json       TEXT NOT NULL,
    access_expires_at INTEGER,
    obtained_at       INTEGER NOT NULL
  );
  CREATE TABLE oauth_clients (
    upstream_key TEXT PRIMARY KEY,
    client_json  TEXT NOT NULL,
    saved_at     INTEGER NOT NULL
  );
  CREATE TABLE oauth_discovery (
    upstream_key TEXT PRIMARY KEY,
    state_json   TEXT NOT NULL,
    saved_at     INTEGER NOT NULL
  );
  CREATE TABLE oauth_pkce (
    upstream_key  TEXT PRIMARY KEY,
    code_verifier TEXT NOT NULL,
    saved_at      INTEGER NOT NULL
  );
  CREATE TABLE relay_cache (
    serial      TEXT PRIMARY KEY,
    entry       TEXT NOT NULL,
    resolved_at INTEGER NOT NULL
  );
  `,
  // 2: policy: audit events, structure snapshots (history), policy state (emergency stop).
  AUDIT_SCHEMA_SQL + SNAPSHOTS_SCHEMA_SQL,
  // 3: the person's approval PIN (scrypt hash, wrong-PIN lockout) and the trusted tool catalogue.
  PERSON_SCHEMA_SQL + TOOLS_SCHEMA_SQL,
];
