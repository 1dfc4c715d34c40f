import type { Logger } from "pino";
import type {
  CallContext,
  CallToolParams,
  CallToolResult,
  ClientIdentity,
  ControlContext,
  ControlRegistry,
  ForwardCall,
  PolicyUpstreamPort,
  ToolGate,
} from "../contracts.js";
import { UpstreamError } from "../contracts.js";
import type { AuditEvent } from "../store/audit.js";
import { AuditStore, OUTCOME_SENT } from "../store/audit.js";
import type { Database } from "../store/db.js";
import { StorageError } from "../store/health.js";
import { PinStore } from "../store/person.js";
import { SnapshotStore } from "../store/snapshots.js";
import { TrustedToolStore } from "../store/tools.js";
import { type AuditDraft, AuditRecorder } from "./audit-log.js";
import {
  buildCatalog,
  type Classification,
  canonicalJson,
  classifyWrite,
  describeTool,
  extractTarget,
  type ToolCatalog,
  type ToolInfo,
} from "./classify.js";
import { ApprovalBook, confirmByElicitation, modeForClient, type PendingApproval } from "./confirm.js";
import { displayName, registerPolicyControls } from "./controls.js";
import { EmergencyStop, type EmergencyStopState, type StopReport } from "./estop.js";
import { PersonAuth, type PinStatus } from "./person.js";
import { RateLimiter } from "./ratelimit.js";
import { readBackMismatch } from "./readback.js";
import { redactArgs } from "./redact.js";
import { errorText, joinText, resultText, sendFailureOutcome } from "./results.js";
import { type PolicyConfigInput, resolvePolicyConfig } from "./settings.js";
import {
  type CallTool,
  extractControls,
  fetchStructure,
  resultPayloads,
  structureHash,
} from "./structure.js";
import { describeChange, type ToolChange, ToolTrust } from "./tooltrust.js";
import {
  DAY_MS,
  type PolicyConfig,
  PolicyDenied,
  type PolicyMode,
  type Snapshot,
  type SnapshotControl,
} from "./types.js";
import { isUuid, resolveControl, sanitizeArgs, validateCommand } from "./validate.js";

export { parseSince } from "./controls.js";
export type { EmergencyStopState, StopReport } from "./estop.js";
export { resultText } from "./results.js";
export { type PolicyConfigInput, resolvePolicyConfig } from "./settings.js";
export { DEFAULT_POLICY_CONFIG, POLICY_MODES, type PolicyConfig, type PolicyMode } from "./types.js";

export const EMERGENCY_STOP_TOOL = "loxmcp_emergency_stop";
/** A held call without a checkable target is shown to the person with ALL its arguments, up to this. */
const MAX_SHOWN_ARGS = 4000;

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

export interface PolicyStatus {
  mode: PolicyMode;
  clients: Record<string, PolicyMode>;
  emergencyStop: EmergencyStopState | null;
  pendingApprovals: PendingApproval[];
  pin: PinStatus;
  /** Tool catalogue changes waiting for the person (`loxmcp tools diff`). */
  toolChanges: ToolChange[];
  structure: { id: number; hash: string; controls: number; createdAt: number; checkedAt: number } | null;
  structureError?: string;
}

export interface PolicyGate extends ToolGate {
  visibleTools(
    client: ClientIdentity,
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
  return new PolicyEngine(deps);
}

class PolicyEngine implements PolicyGate {
  readonly cfg: PolicyConfig;
  readonly upstream: PolicyUpstreamPort;
  readonly log: Logger;
  readonly now: () => number;
  readonly audit: AuditStore;
  readonly snapshots: SnapshotStore;
  readonly approvals: ApprovalBook;
  private readonly limiter: RateLimiter;
  catalog: ToolCatalog | undefined;
  /** Names the Miniserver's tools/list offered when the catalogue was built (new tools included). */
  private offered: string[] = [];
  snapshot: Snapshot | undefined;
  private controls = new Map<string, SnapshotControl>();
  private states = new Map<string, Record<string, unknown>>();
  private refreshing: Promise<{ snapshot: Snapshot; changed: boolean }> | undefined;
  private lastOnDemandRefresh = 0;
  /** Batches audit events into few commits; a write's row is stored before it is sent. */
  readonly recorder: AuditRecorder;
  /** The emergency stop: its stored state, stopping every motor, lifting it. */
  private readonly stopper: EmergencyStop;
  readonly person: PersonAuth;
  readonly trust: ToolTrust;
  /** Digest of the tool changes last logged (so a change is logged once, not on every list). */
  private loggedToolChanges = "";
  private structureError: string | undefined;
  private timers: NodeJS.Timeout[] = [];
  private unsubscribe: (() => void) | undefined;
  /** Ends the calls the policy makes itself (structure reads, stop-all) when it stops. */
  private lifetime = new AbortController();
  stopped = false;
  private readonly onState = (s: { state: string }) => {
    if (s.state === "ready" && !this.stopped) this.backgroundRefresh("upstream ready");
  };
  private readonly onToolsChanged = () => {
    this.catalog = undefined;
    if (this.stopped || this.upstream.status().state !== "ready") return;
    // A refresh already running read the old list (single flight would hand back its result):
    // review the new list after it, or a change right after `tools accept` goes unnoticed.
    const running = this.refreshing;
    if (!running) this.backgroundRefresh("tools changed");
    else
      void running
        .catch(() => {})
        .then(() => {
          if (!this.stopped) this.backgroundRefresh("tools changed");
        });
  };

  constructor(deps: PolicyGateDeps) {
    this.cfg = resolvePolicyConfig(deps.config);
    this.upstream = deps.upstream;
    this.log = deps.logger.child({ component: "policy" });
    this.now = deps.now ?? Date.now;
    this.audit = new AuditStore(deps.db);
    this.recorder = new AuditRecorder(this.audit, this.log, () => this.stopped);
    this.snapshots = new SnapshotStore(deps.db);
    this.stopper = new EmergencyStop(this.snapshots, this.recorder, this.log, this.now);
    this.approvals = new ApprovalBook(this.cfg.approvalTtlMs, this.now);
    this.limiter = new RateLimiter(this.cfg.rateLimits, this.now);
    this.person = new PersonAuth(
      new PinStore(deps.db),
      (ctx, what, decision, reason) =>
        this.recordAudit(
          { name: `loxmcp/${what.replace(/ /g, "-")}`, arguments: {} },
          ctx,
          { kind: "control", decision, reason, outcome: decision === "allowed" ? "ok" : "not-sent" },
          this.now(),
        ),
      this.now,
      deps.hardened === true,
    );
    this.trust = new ToolTrust(new TrustedToolStore(deps.db), this.now);
    try {
      const last = this.snapshots.latest();
      if (last) this.useSnapshot(last);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, "the last structure snapshot could not be read");
    }
    this.settleUnfinishedWrites();
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
    this.unsubscribe?.();
    this.unsubscribe = this.upstream.subscribe({ state: this.onState, toolsChanged: this.onToolsChanged });
    const refresh = setInterval(() => {
      if (this.upstream.status().state === "ready") this.backgroundRefresh("periodic", true);
    }, this.cfg.snapshotRefreshMs);
    const prune = setInterval(() => this.pruneAudit(), DAY_MS);
    refresh.unref();
    prune.unref();
    this.timers.push(refresh, prune);
    if (this.upstream.status().state === "ready") this.backgroundRefresh("start");
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
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    // A structure read under way is waited for; then whatever the policy still has in flight (a
    // stop-all's sends) ends.
    await this.refreshing?.catch(() => {});
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
    const s = this.snapshot;
    const out: PolicyStatus = {
      mode: this.cfg.mode,
      clients: { ...this.cfg.clients },
      emergencyStop: this.estop()?.active ? (this.estop() ?? null) : null,
      pendingApprovals: this.approvals.list(),
      pin: this.person.status(),
      toolChanges: this.trust.changes(),
      structure: s
        ? {
            id: s.id,
            hash: s.hash,
            controls: s.controls.length,
            createdAt: s.createdAt,
            checkedAt: s.checkedAt,
          }
        : null,
    };
    if (this.structureError) out.structureError = this.structureError;
    return out;
  }

  pendingApprovals(): PendingApproval[] {
    return this.approvals.list();
  }

  // ------------------------------------------------------------------ structure

  private useSnapshot(s: Snapshot): void {
    this.snapshot = s;
    this.controls = new Map(s.controls.map((c) => [c.uuid.toLowerCase(), c]));
  }

  private async getCatalog(): Promise<ToolCatalog> {
    if (this.catalog) return this.catalog;
    const list = await this.upstream.listTools();
    const review = this.trust.review(list.tools);
    if (review.recordedFirst) {
      this.log.info({ tools: list.tools.length }, "first tool catalogue recorded as trusted");
    }
    const digest = review.changes.length > 0 ? this.trust.digest() : "";
    if (digest !== this.loggedToolChanges) {
      this.loggedToolChanges = digest;
      if (digest)
        this.log.warn(
          { changes: review.changes.map(describeChange) },
          "the Miniserver's tool catalogue changed: new or changed tools are held until the person reviews them (`loxmcp tools diff`, then `loxmcp tools accept`)",
        );
    }
    this.offered = list.tools
      .map((t) => t.name)
      .filter((n): n is string => typeof n === "string" && n !== "");
    this.catalog = buildCatalog(review.effective);
    return this.catalog;
  }

  private upstreamCall: CallTool = (name, args) =>
    this.upstream.read(
      { name, arguments: args },
      { retryable: this.catalog?.tools.get(name)?.readOnlyHint === true, signal: this.signal },
    );

  /** The signal of the calls the policy makes itself: aborted when it stops. */
  get signal(): AbortSignal {
    return this.lifetime.signal;
  }

  backgroundRefresh(why: string, quick = false): void {
    this.refreshStructure({ quick }).then(
      ({ snapshot, changed }) =>
        this.log.info({ why, controls: snapshot.controls.length, changed }, "house structure checked"),
      (err) => this.log.warn({ why, err: (err as Error).message }, "house structure refresh failed"),
    );
  }

  /**
   * Re-reads the structure (single flight). `quick` (the periodic check) describes only controls
   * that are new or changed type; start, reconnects, tools/list changes and `loxmcp structure
   * refresh` describe everything.
   */
  refreshStructure(opts: { quick?: boolean } = {}): Promise<{ snapshot: Snapshot; changed: boolean }> {
    if (this.refreshing) return this.refreshing;
    const run = async () => {
      try {
        this.catalog = undefined;
        const catalog = await this.getCatalog();
        const fetched = await fetchStructure(
          catalog,
          this.upstreamCall,
          4,
          opts.quick ? this.controls : undefined,
        );
        const { snapshot, changed } = this.snapshots.save(
          structureHash(fetched.controls),
          fetched.controls,
          this.now(),
        );
        this.useSnapshot(snapshot);
        for (const [k, v] of fetched.states) this.states.set(k, v);
        this.structureError = undefined;
        return { snapshot, changed };
      } catch (err) {
        this.structureError = (err as Error).message;
        throw err;
      }
    };
    this.refreshing = run().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  /** The snapshot writes are checked against; refreshed once if missing or too old. */
  private async currentSnapshot(): Promise<Snapshot> {
    const fresh = (s: Snapshot | undefined) =>
      s !== undefined && this.now() - s.checkedAt <= this.cfg.snapshotMaxAgeMs;
    if (!fresh(this.snapshot)) {
      try {
        await this.refreshStructure();
      } catch (err) {
        throw new PolicyDenied(
          "NO_STRUCTURE",
          `the house structure is not known (${(err as Error).message}), so no command is sent; try again once \`loxmcp status\` is ready`,
        );
      }
    }
    const s = this.snapshot;
    if (!s || !fresh(s)) {
      throw new PolicyDenied(
        "NO_STRUCTURE",
        "the house structure is not known or out of date, so no command is sent",
      );
    }
    return s;
  }

  // ------------------------------------------------------------------ emergency stop

  estop(): EmergencyStopState | undefined {
    return this.stopper.state();
  }

  emergencyStop(
    by: string,
    reason: string | undefined,
    send: (call: CallToolParams) => Promise<CallToolResult>,
  ): Promise<{ state: EmergencyStopState; stopped: StopReport[]; warning?: string }> {
    return this.stopper.stop(by, reason, send, () => this.getCatalog(), this.snapshot);
  }

  resume(by: string): { active: false; wasActive: boolean } {
    return this.stopper.resume(by);
  }

  // ------------------------------------------------------------------ the gate

  extraTools(): Array<Record<string, unknown>> {
    return [
      {
        name: EMERGENCY_STOP_TOOL,
        title: "Emergency stop (loxmcp)",
        description:
          "Immediately stops every blind and gate and blocks all further commands from AI clients until the person lifts it (only they can). Use when something moves that should not, or when asked to stop everything.",
        inputSchema: {
          type: "object",
          properties: { reason: { type: "string", description: "Why the stop was triggered" } },
        },
        annotations: {
          readOnlyHint: false,
          destructiveHint: false,
          idempotentHint: true,
          openWorldHint: true,
        },
      },
    ];
  }

  /**
   * What tools/list shows a client: everything, except that a read-only client (by its shim's
   * --name rule, else the global mode) sees no write tools — only the reads of the trusted
   * catalogue, and the emergency stop (anyone may stop).
   */
  async visibleTools(
    client: ClientIdentity,
    tools: Array<Record<string, unknown>>,
  ): Promise<Array<Record<string, unknown>>> {
    if (this.modeFor(client) !== "read-only") return tools;
    let isRead: (t: Record<string, unknown>) => boolean;
    try {
      const catalog = await this.getCatalog();
      isRead = (t) => typeof t.name === "string" && catalog.tools.get(t.name)?.read === true;
    } catch {
      // No trusted catalogue to judge by: classify the listed definitions by the same rules.
      isRead = (t) => describeTool(t)?.read === true;
    }
    return tools.filter((t) => t.name === EMERGENCY_STOP_TOOL || isRead(t));
  }

  /** The client's mode: its rule matches the shim's --name (never the clientInfo it chose). */
  private modeFor(client: ClientIdentity): PolicyMode {
    const ruleName = client.ruleName;
    return ruleName ? modeForClient(ruleName, this.cfg.clients, this.cfg.mode) : this.cfg.mode;
  }

  async callTool(call: CallToolParams, ctx: CallContext, forward: ForwardCall): Promise<CallToolResult> {
    const t0 = this.now();
    const args = call.arguments ?? {};
    if (call.name === EMERGENCY_STOP_TOOL) return this.callEmergencyStop(call, ctx, forward, t0);

    let catalog: ToolCatalog | undefined;
    try {
      catalog = await this.getCatalog();
    } catch {
      catalog = undefined;
    }
    const tool = catalog?.tools.get(call.name) ?? describeTool({ name: call.name });
    const write = !tool?.read;
    const draft: AuditDraft = {
      kind: write ? "write" : "read",
      t0,
      decision: "allowed",
      outcome: "not-sent",
    };
    try {
      if (catalog && !this.offered.includes(call.name)) {
        // Not in the Miniserver's tools/list: nothing to classify, hold or send.
        const known = [...this.offered.slice(0, 6), EMERGENCY_STOP_TOOL];
        throw new PolicyDenied(
          "UNKNOWN_TOOL",
          `unknown tool ${call.name}: the Miniserver does not offer it, so nothing was sent. Known tools include ${known.join(", ")}${this.offered.length > 6 ? ` (${this.offered.length + 1} in all; see tools/list)` : ""}`,
          "denied",
          { knownTools: known },
        );
      }
      const held = this.trust.held(call.name);
      if (held) {
        throw new PolicyDenied(
          "TOOL_CHANGED",
          `${describeChange(held)} since the person last accepted the Miniserver's tool list, so calls to it are held and nothing was sent. The person has to review and accept the change first; until then use the other tools`,
          "denied",
          undefined,
          `${describeChange(held)} since the tool list was last accepted (\`loxmcp tools diff\`)`,
        );
      }
      sanitizeArgs(args);
      if (!write && tool) {
        return await this.send(call, forward, tool.readOnlyHint, draft);
      }
      return await this.callWrite(call, ctx, forward, tool, draft);
    } catch (err) {
      if (err instanceof PolicyDenied) {
        draft.decision = err.decision;
        draft.reason = err.auditReason ?? err.message;
        draft.outcome = "not-sent";
        this.log.info(
          { client: ctx.client.name, tool: call.name, code: err.code },
          err.decision === "held"
            ? `held for the person's approval: ${draft.reason}`
            : `refused: ${draft.reason}`,
        );
        return denial(err);
      }
      throw err;
    } finally {
      if (draft.auditId === undefined) {
        this.recordAudit(call, ctx, draft, t0);
      } else if (!draft.finished) {
        // Stored before sending but no answer was recorded (should not happen): settle it.
        this.recorder.finish({ id: draft.auditId, outcome: draft.outcome, latencyMs: this.now() - t0 });
      } else if (draft.note) {
        this.recorder.finish({ id: draft.auditId, reason: draft.note });
      }
    }
  }

  private async send(
    call: CallToolParams,
    forward: ForwardCall,
    retryable: boolean,
    draft: AuditDraft,
  ): Promise<CallToolResult> {
    try {
      const res = await forward(call, { retryable });
      draft.outcome = res.isError ? "error" : "ok";
      this.answered(draft, res.isError ? `upstream: ${resultText(res)}` : undefined);
      return res;
    } catch (err) {
      draft.outcome = sendFailureOutcome(err);
      this.answered(draft, errorText(err));
      throw err;
    }
  }

  /** The answer (or failure) of a sent call: into the draft, and onto the write's stored row. */
  private answered(draft: AuditDraft, why: string | undefined): void {
    const reason = joinText(draft.reason, why);
    if (reason !== undefined) draft.reason = reason;
    if (draft.auditId === undefined) return;
    draft.finished = true;
    this.recorder.finish({
      id: draft.auditId,
      outcome: draft.outcome,
      ...(why ? { reason: why.slice(0, 1000) } : {}),
      latencyMs: this.now() - (draft.t0 ?? this.now()),
    });
  }

  private async callWrite(
    call: CallToolParams,
    ctx: CallContext,
    forward: ForwardCall,
    tool: ToolInfo | undefined,
    draft: AuditDraft,
  ): Promise<CallToolResult> {
    const args = call.arguments ?? {};
    // Rules match the shim's --name (written by the person into the client's config), never the
    // clientInfo.name a client chooses for itself.
    const ruleName = ctx.client.ruleName;
    const mode = this.modeFor(ctx.client);
    const target = extractTarget(tool, args);
    if (target) {
      draft.target = target.uuid;
      draft.command = target.command;
    }
    if (mode === "read-only") {
      throw new PolicyDenied(
        "READ_ONLY",
        `policy mode for client "${ruleName ?? ctx.client.name}" is read-only: no commands are sent`,
      );
    }
    this.assertUpstreamReady();
    await this.currentSnapshot();
    if (!target && tool?.uuidArg && tool.commandArg) {
      throw new PolicyDenied(
        "INVALID_COMMAND",
        `${call.name} needs "${tool.uuidArg}" (a control uuid) and "${tool.commandArg}" (a command) as strings; nothing was sent`,
      );
    }

    let control: SnapshotControl | undefined;
    let cls: Classification;
    if (target) {
      control = await this.resolveTarget(target.uuid);
      draft.controlName = control.name;
      draft.controlType = control.type;
      draft.nfc = /NfcCodeTouch/i.test(control.type);
      cls = classifyWrite(control, target.uuid, target.command, this.cfg, this.currentVolume(control));
      if (cls.tier === "T4") {
        draft.tier = cls.tier;
        throw new PolicyDenied(
          "TIER4",
          `${describeAction(control, target.command)} is never done by an AI (${cls.reason}); a person has to do it on site or in the Loxone app`,
        );
      }
      validateCommand(control, target.command, this.cfg);
    } else {
      // SC-1 cannot be checked without a target: a person decides, in every mode.
      cls = {
        tier: "T3",
        reason: `tool ${call.name} may write and its target cannot be checked`,
        forceConfirm: true,
      };
    }
    if (control && cls.motor && target?.command.toLowerCase() !== "stop" && cls.tier !== "T3") {
      const others = this.limiter.otherMotorsMoved(control.uuid.toLowerCase());
      if (others >= this.cfg.rateLimits.motorBurst) {
        cls = {
          ...cls,
          tier: "T3",
          reason: `${others + 1} different motors within a minute is a bulk movement (blinds/gates must not all close at once)`,
        };
      }
    }
    draft.tier = cls.tier;

    const estop = this.estop();
    const isMotorStop = cls.motor === true && target?.command.toLowerCase() === "stop";
    if (estop?.active && !isMotorStop) {
      throw new PolicyDenied(
        "EMERGENCY_STOP",
        `emergency stop is active since ${new Date(estop.since).toISOString()}: no commands until the person lifts it (only they can)`,
        "emergency-stop",
      );
    }

    const rateKey = {
      ...(control ? { device: control.uuid.toLowerCase() } : {}),
      ...(cls.motor ? { motor: true } : {}),
      ...(cls.direction ? { direction: cls.direction } : {}),
      exempt: isMotorStop,
    };
    const rate = this.limiter.check(rateKey);
    if (!rate.ok) throw new PolicyDenied("RATE_LIMITED", rate.message ?? "rate limited", "rate-limited");

    const needsConfirm = cls.forceConfirm === true || (cls.tier === "T3" && mode === "confirm");
    if (needsConfirm) {
      const what = control
        ? describeAction(control, target?.command ?? "")
        : `call ${call.name} ${briefArgs(args)}`;
      // With a PIN set, the client's own elicitation never approves: a client that accepts its own
      // request is exactly the attacker the PIN is for. T3 then waits for the person's PIN.
      if (ctx.supportsElicitation && !this.person.isSet()) {
        const sentence = `${ctx.client.name} wants to ${what}. ${capitalize(cls.reason)}. Allow it?`;
        const answer = await confirmByElicitation(ctx, sentence);
        if (!answer.ok) {
          throw new PolicyDenied("NOT_CONFIRMED", `not sent: ${answer.message} (${what})`);
        }
        draft.decision = "confirmed";
        draft.reason = "confirmed via elicitation";
      } else {
        // Bound to the shim's --name (the person wrote it), never to a name the client chose: a
        // client without --name holds (and may consume) only its own connection's approvals.
        const holder = ctx.client.ruleName ?? `unnamed:${ctx.client.connId}`;
        const shown =
          ctx.client.ruleName ?? `unnamed client (calls itself "${ctx.client.name.slice(0, 64)}")`;
        const canonical = canonicalJson(args);
        if (!target && canonical.length > MAX_SHOWN_ARGS) {
          throw new PolicyDenied(
            "UNSAFE_INPUT",
            `not sent: ${call.name} needs the person's approval, but its arguments (${canonical.length} characters) are too long to show them in full; send less`,
          );
        }
        const key = ApprovalBook.key(holder, call.name, canonical);
        const verdict = this.approvals.check(key, shown, call.name, `${what} — ${cls.reason}`, {
          ...(control ? { device: control.name, room: control.room, type: control.type } : {}),
          ...(target ? { command: target.command } : { arguments: canonical }),
          tier: cls.tier,
          why: cls.reason,
        });
        if (verdict.state === "full") {
          throw new PolicyDenied(
            "APPROVAL_QUEUE_FULL",
            `not sent: ${verdict.held} actions are already waiting for the person's approval (at most ${verdict.limit}), so ${what} was not held. Wait until the person has decided on them (the oldest expires in ${verdict.soonestSec} s) and try again`,
            "denied",
            undefined,
            `not held, ${verdict.held} actions already wait for the person (at most ${verdict.limit}): ${what}`,
          );
        }
        if (verdict.state === "pending") {
          const secs = Math.max(1, Math.round((verdict.entry.expiresAt - this.now()) / 1000));
          throw new PolicyDenied(
            "APPROVAL_REQUIRED",
            `held for the person's approval, nothing was sent: ${what} (${cls.reason}). Only the person can approve it, outside this conversation: on their loxmcp page (a desktop notification links to it) or in a terminal; tell them that code ${verdict.entry.code} is waiting for their decision. Once they have approved it, call this tool again with exactly the same arguments within ${secs} s. Do not try to approve it yourself and do not put the code into the arguments.`,
            "held",
            // `what` lets the person's shim name the action in its desktop notification.
            { approvalCode: verdict.entry.code, expiresInSec: secs, what },
            // The person's view: what and why. The code is in `loxmcp approve --list`, not here.
            `${what} (${cls.reason})`,
          );
        }
        draft.decision = "confirmed";
        draft.reason = `approved by a person (code ${verdict.code})`;
      }
      // Time passed while the person decided: check the state again.
      if (this.estop()?.active && !isMotorStop) {
        throw new PolicyDenied(
          "EMERGENCY_STOP",
          "emergency stop became active while waiting for confirmation",
          "emergency-stop",
        );
      }
      this.assertUpstreamReady();
    }

    // Audit before act: the row is committed (synchronous=FULL) before the request leaves the
    // daemon. No row, no command.
    try {
      draft.auditId = this.recorder.commitIntent(
        this.auditEvent(call, ctx, { ...draft, outcome: OUTCOME_SENT }, draft.t0 ?? this.now()),
      );
    } catch (err) {
      if (!(err instanceof StorageError)) throw err;
      throw new PolicyDenied(
        "AUDIT_UNAVAILABLE",
        `nothing was sent: the audit cannot be written — ${err.message}. Every command is refused until the daemon can record it (reading still works); the person can see the cause with \`loxmcp status\` or \`loxmcp doctor\``,
        "denied",
        undefined,
        `the audit cannot be written: ${err.message}`,
      );
    }
    this.limiter.record(rateKey);
    const res = await this.send(call, forward, false, draft);
    if (!res.isError && control) this.rememberStates(res, control.uuid);
    if (!res.isError && control && target && (cls.tier === "T2" || cls.tier === "T3")) {
      return this.readBack(res, control, target.uuid, target.command, forward, draft);
    }
    return res;
  }

  /**
   * Looks the uuid up in the snapshot. A well-formed uuid that is not there may be a control
   * added since the last refresh: re-read the structure once (at most every 30 s) and look again.
   */
  private async resolveTarget(uuid: string): Promise<SnapshotControl> {
    try {
      return resolveControl(uuid, this.controls).control;
    } catch (err) {
      const wellFormed = isUuid(uuid);
      if (!(err instanceof PolicyDenied) || !wellFormed || this.now() - this.lastOnDemandRefresh < 30_000)
        throw err;
      this.lastOnDemandRefresh = this.now();
      try {
        await this.refreshStructure();
      } catch {
        throw err;
      }
      return resolveControl(uuid, this.controls).control;
    }
  }

  /** Keeps the last state the Miniserver reported for a control (volume jumps are judged against it). */
  private rememberStates(res: CallToolResult, uuid: string): void {
    const mine = resultPayloads(res)
      .flatMap((p) => extractControls(p))
      .find((c) => c.uuid.toLowerCase() === uuid.toLowerCase() && c.states);
    if (mine?.states) {
      this.states.set(uuid.toLowerCase(), mine.states);
      return;
    }
    for (const p of resultPayloads(res)) {
      if (p && typeof p === "object" && !Array.isArray(p)) {
        const st = (p as Record<string, unknown>).states;
        if (st && typeof st === "object" && !Array.isArray(st))
          this.states.set(uuid.toLowerCase(), st as Record<string, unknown>);
      }
    }
  }

  private assertUpstreamReady(): void {
    const st = this.upstream.status();
    if (st.state !== "ready") {
      throw new PolicyDenied(
        "UPSTREAM_NOT_READY",
        `the Miniserver session is ${st.state}${st.reason ? ` (${st.reason})` : ""}: no command is sent while the connection is not healthy; check \`loxmcp status\` and try again`,
      );
    }
  }

  private currentVolume(control: SnapshotControl): number | undefined {
    const v = this.states.get(control.uuid.toLowerCase())?.volume;
    return typeof v === "number" ? v : undefined;
  }

  private async readBack(
    res: CallToolResult,
    control: SnapshotControl,
    uuid: string,
    command: string,
    forward: ForwardCall,
    draft: AuditDraft,
  ): Promise<CallToolResult> {
    const describe = this.catalog?.describe;
    let note: string;
    if (!describe?.uuidArg) {
      note = `loxmcp warning: the state of "${control.name}" could not be read back (no describe tool); check it before assuming it changed`;
    } else {
      try {
        const back = await forward(
          { name: describe.name, arguments: { [describe.uuidArg]: uuid } },
          { retryable: describe.readOnlyHint },
        );
        if (back.isError) {
          note = `loxmcp warning: reading back "${control.name}" failed: ${resultText(back)}`;
        } else {
          const text = resultText(back);
          note = `loxmcp read-back of "${control.name}" (${control.room}) after the command: ${text}`;
          this.rememberStates(back, control.uuid);
          const states = this.states.get(control.uuid.toLowerCase());
          const differs = states ? readBackMismatch(control, command, states) : undefined;
          if (differs)
            note += `\nloxmcp warning: the state differs from what was asked: ${differs}; check it before assuming the command worked`;
        }
      } catch (err) {
        note = `loxmcp warning: the state of "${control.name}" could not be read back (${errorText(err)}); check it before assuming it changed`;
      }
    }
    // The read-back is a read: its gist goes onto the write's row with the batched reads.
    draft.note = note
      .replace(/^loxmcp /, "")
      .replace(/\s+/g, " ")
      .slice(0, 300);
    return { ...res, content: [...(res.content ?? []), { type: "text", text: note }] };
  }

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
      const lines = [
        `Emergency stop is ACTIVE (since ${new Date(out.state.since).toISOString()}): every command is refused until the person lifts it (only they can).`,
        ...out.stopped.map(
          (s) => `${s.ok ? "stopped" : "FAILED"}: ${s.name} (${s.room}, ${s.type}): ${s.answer}`,
        ),
      ];
      if (out.warning) lines.push(`warning: ${out.warning}`);
      if (out.stopped.some((s) => !s.ok)) draft.outcome = "error";
      return {
        content: [{ type: "text", text: lines.join("\n") }],
        structuredContent: {
          emergencyStop: out.state,
          stopped: out.stopped,
          ...(out.warning ? { warning: out.warning } : {}),
        },
      };
    } finally {
      this.recordAudit(call, ctx, draft, t0);
    }
  }

  private auditEvent(
    call: CallToolParams,
    ctx: CallContext | ControlContext,
    d: AuditDraft,
    t0: number,
  ): AuditEvent {
    return {
      ts: t0,
      connId: ctx.client.connId,
      client: displayName(ctx),
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

  recordAudit(call: CallToolParams, ctx: CallContext | ControlContext, d: AuditDraft, t0: number): void {
    try {
      this.recorder.insert(this.auditEvent(call, ctx, d, t0), d.kind !== "read");
    } catch (err) {
      this.log.error({ err: (err as Error).message, tool: call.name }, "could not write the audit event");
    }
  }

  recordRefusal(client: ClientIdentity, what: string, reason: string): void {
    this.recordAudit(
      { name: what, arguments: {} },
      { client },
      { kind: "control", decision: "denied", reason, outcome: "not-sent" },
      this.now(),
    );
  }

  // ------------------------------------------------------------------ control methods (CLI)

  register(control: ControlRegistry): void {
    registerPolicyControls(control, this);
  }
}

// ------------------------------------------------------------------ helpers

function describeAction(c: SnapshotControl, command: string): string {
  return `send "${command}" to ${c.type} "${c.name}"${c.room ? ` in ${c.room}` : ""}`;
}

function briefArgs(args: Record<string, unknown>): string {
  const s = JSON.stringify(redactArgs(args));
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

function denial(err: PolicyDenied): CallToolResult {
  return {
    content: [{ type: "text", text: `loxmcp policy: ${err.message}` }],
    isError: true,
    _meta: { "loxmcp/policy": { code: err.code, decision: err.decision, ...(err.data ?? {}) } },
  };
}
