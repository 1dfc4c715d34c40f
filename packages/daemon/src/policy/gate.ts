/**
 * The policy's `ToolGate`: builds the parts (audit recorder, house model, emergency stop, the
 * person's proof, approvals, tool trust) and the decision engine (engine.ts), starts and stops
 * them, reports their status, and runs the emergency stop — the MCP tool through the calling
 * client's forward, `loxmcp stop-all` (controls.ts) through the wiring's.
 */
import type { Logger } from "pino";
import type {
  CallContext,
  CallToolParams,
  CallToolResult,
  ControlRegistry,
  ForwardCall,
  GateStatusSection,
  PolicyUpstreamPort,
  Principal,
  ToolGate,
} from "../contracts.js";
import { UpstreamError } from "../contracts.js";
import { AuditStore } from "../store/audit.js";
import type { Database } from "../store/db.js";
import { PinStore } from "../store/person.js";
import { SnapshotStore } from "../store/snapshots.js";
import { TrustedToolStore } from "../store/tools.js";
import { type AuditDraft, AuditRecorder } from "./audit-log.js";
import { ApprovalBook, type PendingApproval } from "./confirm.js";
import { registerPolicyControls } from "./controls.js";
import { DecisionEngine } from "./engine.js";
import {
  EMERGENCY_STOP_TOOL,
  EmergencyStop,
  type EmergencyStopState,
  emergencyStopTool,
  type StopOutcome,
  stopToolAnswer,
} from "./estop.js";
import { HouseModel, type StructureStatus } from "./house.js";
import { PersonAuth, type PinStatus } from "./person.js";
import { type PolicyConfigInput, resolvePolicyConfig } from "./settings.js";
import { describeChange, type ToolChange, ToolTrust } from "./tooltrust.js";
import { DAY_MS, type PolicyConfig, type PolicyMode, type Snapshot } from "./types.js";

export interface PolicyGateDeps {
  /** The policy's view of the upstream (built by the wiring): it never holds the `Upstream`. */
  upstream: PolicyUpstreamPort;
  db: Database;
  logger: Logger;
  config: PolicyConfigInput;
  now?: () => number;
  /** Hardened mode (the system daemon): PIN changes come from root's admin socket only. */
  hardened?: boolean;
}

export interface PolicyStatus extends StructureStatus {
  mode: PolicyMode;
  clients: Record<string, PolicyMode>;
  emergencyStop: EmergencyStopState | null;
  pendingApprovals: PendingApproval[];
  pin: PinStatus;
  /** Tool catalogue changes waiting for the person (`loxmcp tools diff`). */
  toolChanges: ToolChange[];
}

export interface PolicyGate extends ToolGate {
  visibleTools(
    client: Principal,
    tools: Array<Record<string, unknown>>,
  ): Promise<Array<Record<string, unknown>>>;
  register(control: ControlRegistry): void;
  start(): void;
  stop(): Promise<void>;
  /** For loxmcp/status. */
  status(): PolicyStatus;
  pendingApprovals(): PendingApproval[];
  /** Re-reads the house structure now (single flight). */
  refreshStructure(opts?: { quick?: boolean }): Promise<{ snapshot: Snapshot; changed: boolean }>;
}

export function createPolicyGate(deps: PolicyGateDeps): PolicyGate {
  return new Policy(deps);
}

class Policy implements PolicyGate {
  readonly cfg: PolicyConfig;
  readonly upstream: PolicyUpstreamPort;
  readonly log: Logger;
  readonly now: () => number;
  readonly audit: AuditStore;
  readonly snapshots: SnapshotStore;
  readonly approvals: ApprovalBook;
  /** Batches audit events into few commits; a write's row is stored before it is sent. */
  readonly recorder: AuditRecorder;
  /** The emergency stop: its stored state, stopping every motor, lifting it. */
  private readonly stopper: EmergencyStop;
  readonly person: PersonAuth;
  readonly trust: ToolTrust;
  /** The tool catalogue, the structure snapshot and the last reported states. */
  readonly house: HouseModel;
  private readonly engine: DecisionEngine;
  private pruneTimer: NodeJS.Timeout | undefined;
  /** Ends the calls the policy makes itself (structure reads, stop-all) when it stops. */
  private lifetime = new AbortController();
  stopped = false;

  constructor(deps: PolicyGateDeps) {
    this.cfg = resolvePolicyConfig(deps.config);
    this.upstream = deps.upstream;
    this.log = deps.logger.child({ component: "policy" });
    this.now = deps.now ?? Date.now;
    this.audit = new AuditStore(deps.db);
    this.recorder = new AuditRecorder(this.audit, this.log, () => this.stopped, this.now);
    this.snapshots = new SnapshotStore(deps.db);
    this.stopper = new EmergencyStop(this.snapshots, this.recorder, this.log, this.now);
    this.approvals = new ApprovalBook(this.cfg.approvalTtlMs, this.now);
    this.person = new PersonAuth(
      new PinStore(deps.db),
      (ctx, what, decision, reason) =>
        this.recorder.record(
          { name: `loxmcp/${what.replace(/ /g, "-")}`, arguments: {} },
          ctx,
          { kind: "control", decision, reason, outcome: decision === "allowed" ? "ok" : "not-sent" },
          this.now(),
        ),
      this.now,
      deps.hardened === true,
    );
    this.trust = new ToolTrust(new TrustedToolStore(deps.db), this.now);
    this.house = new HouseModel({
      upstream: this.upstream,
      snapshots: this.snapshots,
      trust: this.trust,
      log: this.log,
      now: this.now,
      refreshMs: this.cfg.snapshotRefreshMs,
      maxAgeMs: this.cfg.snapshotMaxAgeMs,
      signal: () => this.signal,
      stopped: () => this.stopped,
    });
    this.engine = new DecisionEngine({
      cfg: this.cfg,
      upstream: this.upstream,
      house: this.house,
      recorder: this.recorder,
      approvals: this.approvals,
      person: this.person,
      trust: this.trust,
      estop: () => this.estop(),
      log: this.log,
      now: this.now,
    });
    this.settleUnfinishedWrites();
  }

  /** The signal of the calls the policy makes itself: aborted when it stops. */
  get signal(): AbortSignal {
    return this.lifetime.signal;
  }

  /** Writes a previous daemon stored as "sent" but never saw answered: their outcome is unknown. */
  private settleUnfinishedWrites(): void {
    try {
      const n = this.audit.settleUnfinished();
      if (n > 0)
        this.log.warn(
          { writes: n },
          "writes were sent before the daemon stopped and their answers never came: audited as outcome unknown (check those devices)",
        );
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "could not settle unanswered writes in the audit");
    }
  }

  // ------------------------------------------------------------------ lifecycle

  start(): void {
    this.stopped = false;
    if (this.lifetime.signal.aborted) this.lifetime = new AbortController();
    this.pruneAudit();
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.pruneTimer = setInterval(() => this.pruneAudit(), DAY_MS);
    this.pruneTimer.unref();
    this.house.start();
    const estop = this.estop();
    if (estop?.active) {
      this.log.warn(
        { since: new Date(estop.since).toISOString(), by: estop.by },
        "emergency stop is active: every write is refused until a person runs `loxmcp resume`",
      );
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.pruneTimer = undefined;
    // A structure read under way is waited for; then whatever the policy still has in flight (a
    // stop-all's sends) ends.
    await this.house.stop();
    this.lifetime.abort(new UpstreamError("CANCELLED", "the policy stopped"));
    this.recorder.flush();
    if (this.recorder.pending > 0)
      this.log.error(
        { events: this.recorder.pending },
        "audit events could not be stored before stopping (the database refuses writes); they are lost",
      );
  }

  private pruneAudit(): void {
    try {
      const n = this.audit.prune(this.cfg.auditRetentionDays, this.now());
      if (n > 0) this.log.info({ deleted: n, days: this.cfg.auditRetentionDays }, "pruned old audit events");
      this.snapshots.prune(200);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "audit pruning failed; will try again tomorrow");
    }
  }

  status(): PolicyStatus {
    return {
      mode: this.cfg.mode,
      clients: { ...this.cfg.clients },
      emergencyStop: this.estop()?.active ? (this.estop() ?? null) : null,
      pendingApprovals: this.approvals.list(),
      pin: this.person.status(),
      toolChanges: this.trust.changes(),
      ...this.house.status(),
    };
  }

  /** Its part of `loxmcp/status`. */
  statusSection(): GateStatusSection {
    const s = this.status();
    const policy: GateStatusSection["policy"] = { mode: s.mode };
    if (Object.keys(s.clients).length > 0) policy.clients = s.clients;
    if (s.emergencyStop) policy.emergencyStop = s.emergencyStop;
    if (s.structure) policy.structure = s.structure;
    if (s.structureError) policy.structureError = s.structureError;
    policy.pin = s.pin;
    if (s.toolChanges.length > 0) policy.toolChanges = s.toolChanges.map(describeChange);
    return {
      policy,
      // Codes are not shown here (status is for anyone at the socket): `loxmcp approve --list`.
      pendingApprovals: s.pendingApprovals.map((p) => ({
        client: p.client,
        tool: p.tool,
        summary: p.summary,
        approved: p.approved,
        expiresInSec: Math.max(0, Math.round((p.expiresAt - Date.now()) / 1000)),
      })),
    };
  }

  pendingApprovals(): PendingApproval[] {
    return this.approvals.list();
  }

  refreshStructure(opts?: { quick?: boolean }): Promise<{ snapshot: Snapshot; changed: boolean }> {
    return this.house.refreshStructure(opts);
  }

  register(control: ControlRegistry): void {
    registerPolicyControls(control, this);
  }

  recordRefusal(client: Principal, what: string, reason: string): void {
    this.recorder.record(
      { name: what, arguments: {} },
      { client },
      { kind: "control", decision: "denied", reason, outcome: "not-sent" },
      this.now(),
    );
  }

  // ------------------------------------------------------------------ emergency stop

  estop(): EmergencyStopState | undefined {
    return this.stopper.state();
  }

  emergencyStop(
    by: string,
    reason: string | undefined,
    send: (call: CallToolParams) => Promise<CallToolResult>,
  ): Promise<StopOutcome> {
    return this.stopper.stop(by, reason, send, () => this.house.getCatalog(), this.house.snapshot);
  }

  resume(by: string): { active: false; wasActive: boolean } {
    return this.stopper.resume(by);
  }

  /** The MCP tool: stops through the client's own forward (its call, its signal). */
  private async callEmergencyStop(
    call: CallToolParams,
    ctx: CallContext,
    forward: ForwardCall,
    t0: number,
  ): Promise<CallToolResult> {
    const reason =
      typeof call.arguments?.reason === "string" ? call.arguments.reason.slice(0, 200) : undefined;
    const draft: AuditDraft = {
      kind: "control",
      decision: "allowed",
      outcome: "ok",
      reason: "emergency stop via MCP",
    };
    try {
      const out = await this.emergencyStop(`${ctx.client.name} (MCP)`, reason, (c) =>
        forward(c, { retryable: false }),
      );
      if (out.stopped.some((s) => !s.ok)) draft.outcome = "error";
      return stopToolAnswer(out);
    } finally {
      this.recorder.record(call, ctx, draft, t0);
    }
  }

  // ------------------------------------------------------------------ the gate

  extraTools(): Array<Record<string, unknown>> {
    return [emergencyStopTool()];
  }

  visibleTools(
    client: Principal,
    tools: Array<Record<string, unknown>>,
  ): Promise<Array<Record<string, unknown>>> {
    return this.engine.visibleTools(client, tools);
  }

  callTool(call: CallToolParams, ctx: CallContext, forward: ForwardCall): Promise<CallToolResult> {
    if (call.name === EMERGENCY_STOP_TOOL) return this.callEmergencyStop(call, ctx, forward, this.now());
    return this.engine.callTool(call, ctx, forward);
  }
}
