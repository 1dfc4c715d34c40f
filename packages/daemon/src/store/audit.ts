/**
 * Audit trail of every tools/call (reads and writes) and every policy control action.
 * Arguments arrive already redacted (policy/redact.ts); this module only stores and queries.
 */
import type Database from "better-sqlite3";

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

export interface AuditQuery {
  /** Epoch ms. */
  since?: number;
  client?: string;
  /** Only refusals (denied, rate-limited, emergency-stop). */
  denied?: boolean;
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

export class AuditStore {
  private readonly insert: Database.Statement;

  constructor(private readonly db: Database.Database) {
    db.exec(AUDIT_SCHEMA_SQL);
    this.insert = db.prepare(
      `INSERT INTO audit_events (ts, conn_id, client, client_pid, tool, args, kind, target, control_name,
        control_type, command, tier, decision, reason, outcome, latency_ms)
       VALUES (@ts, @conn_id, @client, @client_pid, @tool, @args, @kind, @target, @control_name,
        @control_type, @command, @tier, @decision, @reason, @outcome, @latency_ms)`,
    );
  }

  record(e: AuditEvent): number {
    const info = this.insert.run({
      ts: e.ts,
      conn_id: e.connId ?? null,
      client: e.client,
      client_pid: e.clientPid ?? null,
      tool: e.tool,
      args: JSON.stringify(e.args ?? {}),
      kind: e.kind,
      target: e.target ?? null,
      control_name: e.controlName ?? null,
      control_type: e.controlType ?? null,
      command: e.command ?? null,
      tier: e.tier ?? null,
      decision: e.decision,
      reason: e.reason ?? null,
      outcome: e.outcome,
      latency_ms: Math.max(0, Math.round(e.latencyMs)),
    });
    return Number(info.lastInsertRowid);
  }

  /** Stores several events in one transaction (one fsync). */
  recordMany(events: readonly AuditEvent[]): void {
    if (events.length === 0) return;
    this.db.transaction(() => {
      for (const e of events) this.record(e);
    })();
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
    if (q.denied) where.push("decision IN ('denied', 'rate-limited', 'emergency-stop')");
    params.limit = Math.min(Math.max(1, Math.floor(q.limit ?? 100)), 10_000);
    const sql = `SELECT * FROM audit_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY id DESC LIMIT @limit`;
    const rows = this.db.prepare(sql).all(params) as DbRow[];
    return rows.reverse().map(toRow);
  }

  /** Deletes events older than `days`; returns how many. */
  prune(days: number, now = Date.now()): number {
    const cutoff = now - days * 86_400_000;
    return this.db.prepare("DELETE FROM audit_events WHERE ts < ?").run(cutoff).changes;
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
