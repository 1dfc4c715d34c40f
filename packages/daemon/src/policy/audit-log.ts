/**
 * The audit as the policy writes it: one row per call, control action and refusal (`record`,
 * `event`), named by who called (the principal's name, set by the mux), secrets redacted. Batching: read events (and the answers to stored writes) wait here up to AUDIT_FLUSH_MS
 * and go to SQLite in one transaction: with synchronous=FULL every commit is an fsync (~3 ms), too
 * slow for every read. A write is stored (with everything queued before it) BEFORE it is sent
 * (`commitIntent`); control actions before their answer goes out (`insert(…, true)`). While the
 * database refuses writes the queue is kept (bounded) and retried.
 */
import type { Logger } from "pino";
import type { CallContext, CallToolParams, ControlContext } from "../contracts.js";
import {
  type AuditEvent,
  type AuditFinish,
  type AuditOp,
  type AuditStore,
  OUTCOME_SENT,
} from "../store/audit.js";
import { StorageError } from "../store/health.js";
import { redactArgs } from "./redact.js";
import type { Decision, Outcome, Tier } from "./types.js";

const AUDIT_FLUSH_MS = 50;
const AUDIT_BATCH = 200;
/** While the database refuses writes, queued audit changes are retried this often… */
const AUDIT_RETRY_MS = 1_000;
/** …and at most this many are kept (the oldest go first; counted in the log). */
const AUDIT_MAX_QUEUED = 5_000;

/** What the engine knows of one call while deciding it; becomes an AuditEvent. */
export interface AuditDraft {
  kind: "read" | "write" | "control";
  /** Epoch ms when the call arrived. */
  t0?: number;
  /** The write's row, stored before it was sent (audit before act). */
  auditId?: number;
  /** Its answer has been queued for the row. */
  finished?: boolean;
  /** Added to the row after the answer (the read-back). */
  note?: string;
  target?: string;
  controlName?: string;
  controlType?: string;
  command?: string;
  tier?: Tier;
  decision: Decision;
  reason?: string;
  outcome: Outcome;
  nfc?: boolean;
}

export class AuditRecorder {
  private queue: AuditOp[] = [];
  private timer: NodeJS.Timeout | undefined;
  private dropped = 0;
  /** The last commit was refused by the database: only the retry timer (and writes) try again. */
  private blocked = false;

  constructor(
    private readonly store: AuditStore,
    private readonly log: Logger,
    /** No retries are scheduled once the owner has stopped. */
    private readonly stopped: () => boolean,
    private readonly now: () => number,
  ) {}

  /** The row for a call (or control action) from what was decided about it. */
  event(call: CallToolParams, ctx: CallContext | ControlContext, d: AuditDraft, t0: number): AuditEvent {
    return {
      ts: t0,
      connId: ctx.client.connId,
      client: ctx.client.name,
      ...(ctx.client.pid !== undefined ? { clientPid: ctx.client.pid } : {}),
      tool: call.name,
      args: redactArgs(call.arguments ?? {}, { nfc: d.nfc === true }),
      kind: d.kind,
      ...(d.target !== undefined ? { target: d.target } : {}),
      ...(d.controlName !== undefined ? { controlName: d.controlName } : {}),
      ...(d.controlType !== undefined ? { controlType: d.controlType } : {}),
      ...(d.command !== undefined
        ? { command: d.nfc ? String(redactArgs(d.command, { nfc: true })) : d.command }
        : {}),
      ...(d.tier !== undefined ? { tier: d.tier } : {}),
      decision: d.decision,
      ...(d.reason !== undefined ? { reason: String(redactArgs(d.reason)).slice(0, 1000) } : {}),
      outcome: d.outcome,
      latencyMs: d.outcome === OUTCOME_SENT ? 0 : this.now() - t0,
    };
  }

  /** Audits a call that was not stored before sending (reads, refusals, control actions). */
  record(call: CallToolParams, ctx: CallContext | ControlContext, d: AuditDraft, t0: number): void {
    try {
      this.insert(this.event(call, ctx, d, t0), d.kind !== "read");
    } catch (err) {
      this.log.error({ err: (err as Error).message, tool: call.name }, "could not write the audit event");
    }
  }

  /** Events not yet stored. */
  get pending(): number {
    return this.queue.length;
  }

  /** Queues an event; `now`: store it (and everything before it) right away. */
  insert(e: AuditEvent, now: boolean): void {
    this.enqueue({ insert: e }, now);
  }

  /** The answer to a stored write: batched like reads (the row is already durable). */
  finish(f: AuditFinish): void {
    this.enqueue({ finish: f }, false);
  }

  private enqueue(op: AuditOp, now: boolean): void {
    this.queue.push(op);
    if (this.queue.length > AUDIT_MAX_QUEUED) {
      const drop = this.queue.length - AUDIT_MAX_QUEUED;
      this.queue.splice(0, drop);
      this.dropped += drop;
      if (this.dropped === drop || this.dropped % 1000 < drop)
        this.log.error(
          { dropped: this.dropped },
          "the database has refused audit events for a long time: the oldest queued ones are dropped",
        );
    }
    if ((now || this.queue.length >= AUDIT_BATCH) && !this.blocked) {
      this.flush();
    } else if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), AUDIT_FLUSH_MS);
    }
  }

  /**
   * Stores a write that is about to be sent (outcome "sent"), together with everything queued,
   * in ONE commit. Returns its row id; throws StorageError when the database refuses (then
   * nothing may be sent).
   */
  commitIntent(e: AuditEvent): number {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.queue;
    try {
      const id = this.store.commit(batch, e) as number;
      this.queue = this.queue.slice(batch.length);
      this.blocked = false;
      return id;
    } catch (err) {
      if (err instanceof StorageError) this.blocked = true;
      if (this.queue.length > 0) this.scheduleRetry();
      throw err;
    }
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.queue;
    if (batch.length === 0) return;
    try {
      this.store.commit(batch);
      this.queue = this.queue.slice(batch.length);
      this.blocked = false;
    } catch (err) {
      if (err instanceof StorageError) {
        // Kept and retried: the storage health says why (status, log).
        this.blocked = true;
        this.scheduleRetry();
        return;
      }
      this.queue = this.queue.slice(batch.length);
      this.log.error({ err: (err as Error).message, events: batch.length }, "could not write audit events");
    }
  }

  private scheduleRetry(): void {
    if (this.timer || this.stopped()) return;
    this.timer = setTimeout(() => this.flush(), AUDIT_RETRY_MS);
    this.timer.unref();
  }
}
