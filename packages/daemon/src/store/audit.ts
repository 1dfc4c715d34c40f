/**
 * Audit trail of every tools/call (reads and writes) and every policy control action.
 * Arguments arrive already redacted (policy/redact.ts); this module only stores and queries.
 *
 * A write is stored BEFORE it is sent, with outcome "sent" (`commit(…, intent)`), and updated
 * to ok / error / unknown once its answer is known (`finish`). Rows still "sent" when the daemon
 * starts belong to a daemon that died before the answer came: `settleUnfinished` marks them
 * "unknown".
 */
import type Database from "better-sqlite3";
import { guardRead, guardWrite, statement } from "./health.js";

export const AUDIT_SCHEMA_SQL = `
CREATE TABLE IF NOT EXISTS audit_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts INTEGER NOT NULL,
  conn_id TEXT,
  client TEXT NOT NULL,
  client_pid INTEGER,
  tool TEXT NOT NULL,
  args TEXT NOT NULL,
  kind TEXT NOT NULL,
  target TEXT,
  control_name TEXT,
  control_type TEXT,
  command TEXT,
  tier TEXT,
  decision TEXT NOT NULL,
  reason TEXT,
  outcome TEXT NOT NULL,
  latency_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_ts ON audit_events(ts);
CREATE INDEX IF NOT EXISTS audit_events_client ON audit_events(client, ts);
`;

export interface AuditEvent {
  ts: number;
  connId?: string;
  client: string;
  clientPid?: number;
  tool: string;
  /** Redacted arguments (JSON-serialisable). */
  args: unknown;
  kind: "read" | "write" | "control";
  target?: string;
  controlName?: string;
  controlType?: string;
  command?: string;
  tier?: string;
  decision: string;
  reason?: string;
  outcome: string;
  latencyMs: number;
}

export interface AuditRow extends AuditEvent {
  id: number;
}

/** Outcome of a write that has been stored and is being sent. */
export const OUTCOME_SENT = "sent";

/** The answer to a stored write (or a note added to it). */
export interface AuditFinish {
  id: number;
  outcome?: string;
  /** Appended to the row's reason. */
  reason?: string;
  latencyMs?: number;
}

/** One pending change for `commit`: a new row or the answer to a stored write. */
export type AuditOp = { insert: AuditEvent } | { finish: AuditFinish };

export interface AuditQuery {
  /** Epoch ms. */
  since?: number;
  client?: string;
  /** Only refusals (denied, rate-limited, emergency-stop); calls held for the person are not refusals. */
  denied?: boolean;
  /** Only calls held for the person's approval. With `denied`: both. */
  held?: boolean;
  limit?: number;
}

interface DbRow {
  id: number;
  ts: number;
  conn_id: string | null;
  client: string;
  client_pid: number | null;
  tool: string;
  args: string;
  kind: string;
  target: string | null;
  control_name: string | null;
  control_type: string | null;
  command: string | null;
  tier: string | null;
  decision: string;
  reason: string | null;
  outcome: string;
  latency_ms: number;
}

const INSERT_SQL = `INSERT INTO audit_events (ts, conn_id, client, client_pid, tool, args, kind, target, control_name,
    control_type, command, tier, decision, reason, outcome, latency_ms)
   VALUES (@ts, @conn_id, @client, @client_pid, @tool, @args, @kind, @target, @control_name,
    @control_type, @command, @tier, @decision, @reason, @outcome, @latency_ms)`;

const FINISH_SQL = `UPDATE audit_events SET
    outcome = coalesce(@outcome, outcome),
    reason = CASE WHEN @reason IS NULL THEN reason
                  WHEN reason IS NULL OR reason = '' THEN @reason
                  ELSE reason || '; ' || @reason END,
    latency_ms = coalesce(@latency_ms, latency_ms)
  WHERE id = @id`;

/**
 * What one row may hold of what a client chose (a client must not fill the disk through the
 * audit, nor make its rows too large to answer): longer text is cut and says by how much.
 */
export const MAX_ARGS_CHARS = 2048;
export const MAX_NAME_CHARS = 128;

export function capText(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}…[truncated ${s.length - max} chars]`;
}

export class AuditStore {
  constructor(private readonly db: Database.Database) {
    try {
      db.exec(AUDIT_SCHEMA_SQL);
    } catch {
      // The migrations created the table; a database that cannot be written right now (disk
      // full) must not stop the daemon from starting. Every store call reports the cause.
    }
  }

  private insertRow(e: AuditEvent): number {
    const info = statement(this.db, INSERT_SQL).run({
      ts: e.ts,
      conn_id: e.connId ?? null,
      client: capText(e.client, MAX_NAME_CHARS),
      client_pid: e.clientPid ?? null,
      tool: capText(e.tool, MAX_NAME_CHARS),
      args: capText(JSON.stringify(e.args ?? {}), MAX_ARGS_CHARS),
      kind: e.kind,
      target: e.target ?? null,
      control_name: e.controlName ?? null,
      control_type: e.controlType ?? null,
      command: e.command ?? null,
      tier: e.tier ?? null,
      decision: e.decision,
      reason: e.reason === undefined ? null : capText(e.reason, MAX_ARGS_CHARS),
      outcome: e.outcome,
      latency_ms: Math.max(0, Math.round(e.latencyMs)),
    });
    return Number(info.lastInsertRowid);
  }

  private finishRow(f: AuditFinish): void {
    statement(this.db, FINISH_SQL).run({
      id: f.id,
      outcome: f.outcome ?? null,
      reason: f.reason ?? null,
      latency_ms: f.latencyMs === undefined ? null : Math.max(0, Math.round(f.latencyMs)),
    });
  }

  /** Stores one event (its own commit); returns its id. Throws StorageError when it cannot. */
  record(e: AuditEvent): number {
    return guardWrite(this.db, "audit", () => this.insertRow(e));
  }

  /** Stores several events in one transaction (one fsync). */
  recordMany(events: readonly AuditEvent[]): void {
    if (events.length === 0) return;
    this.commit(events.map((e) => ({ insert: e })));
  }

  /**
   * Applies `ops` in order and then inserts `intent` (a write about to be sent, outcome "sent"),
   * all in ONE transaction: one fsync, and the write's row is durable before the call returns.
   * Returns the intent's id. Throws StorageError (nothing applied) when the database refuses.
   */
  commit(ops: readonly AuditOp[], intent?: AuditEvent): number | undefined {
    if (ops.length === 0 && !intent) return undefined;
    return guardWrite(this.db, "audit", () =>
      this.db.transaction(() => {
        for (const op of ops) {
          if ("insert" in op) this.insertRow(op.insert);
          else this.finishRow(op.finish);
        }
        return intent ? this.insertRow(intent) : undefined;
      })(),
    );
  }

  /** Records the answer to a stored write (its own commit). */
  finish(f: AuditFinish): void {
    guardWrite(this.db, "audit", () => this.finishRow(f));
  }

  /**
   * Rows still "sent" (or "pending") belong to a daemon that stopped before their answer came:
   * they become "unknown" (the write may or may not have run). Returns how many.
   */
  settleUnfinished(reason = "the daemon stopped before the answer came; check the device"): number {
    // guardRead: an UPDATE that matches nothing proves nothing about the disk.
    return guardRead(
      this.db,
      "audit",
      () =>
        statement(
          this.db,
          `UPDATE audit_events SET outcome = 'unknown',
             reason = CASE WHEN reason IS NULL OR reason = '' THEN @reason ELSE reason || '; ' || @reason END
           WHERE outcome IN ('sent', 'pending')`,
        ).run({ reason }).changes,
    );
  }

  query(q: AuditQuery = {}): AuditRow[] {
    const where: string[] = [];
    const params: Record<string, unknown> = {};
    if (q.since !== undefined) {
      where.push("ts >= @since");
      params.since = q.since;
    }
    if (q.client) {
      where.push("lower(client) LIKE @client");
      params.client = `${q.client.toLowerCase().replace(/[%_]/g, "")}%`;
    }
    const decisions = [
      ...(q.denied ? ["'denied'", "'rate-limited'", "'emergency-stop'"] : []),
      ...(q.held ? ["'held'"] : []),
    ];
    if (decisions.length > 0) where.push(`decision IN (${decisions.join(", ")})`);
    params.limit = Math.min(Math.max(1, Math.floor(q.limit ?? 100)), 10_000);
    const sql = `SELECT * FROM audit_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY id DESC LIMIT @limit`;
    const rows = guardRead(this.db, "audit", () => this.db.prepare(sql).all(params) as DbRow[]);
    return rows.reverse().map(toRow);
  }

  /** Deletes events older than `days`; returns how many. */
  prune(days: number, now = Date.now()): number {
    const cutoff = now - days * 86_400_000;
    return guardRead(
      this.db,
      "audit",
      () => statement(this.db, "DELETE FROM audit_events WHERE ts < ?").run(cutoff).changes,
    );
  }
}

function toRow(r: DbRow): AuditRow {
  let args: unknown;
  try {
    args = JSON.parse(r.args);
  } catch {
    args = r.args;
  }
  const row: AuditRow = {
    id: r.id,
    ts: r.ts,
    client: r.client,
    tool: r.tool,
    args,
    kind: r.kind as AuditRow["kind"],
    decision: r.decision,
    outcome: r.outcome,
    latencyMs: r.latency_ms,
  };
  if (r.conn_id !== null) row.connId = r.conn_id;
  if (r.client_pid !== null) row.clientPid = r.client_pid;
  if (r.target !== null) row.target = r.target;
  if (r.control_name !== null) row.controlName = r.control_name;
  if (r.control_type !== null) row.controlType = r.control_type;
  if (r.command !== null) row.command = r.command;
  if (r.tier !== null) row.tier = r.tier;
  if (r.reason !== null) row.reason = r.reason;
  return row;
}
