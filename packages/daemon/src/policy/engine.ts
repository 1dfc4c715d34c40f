/**
 * The decision engine: decides one tools/call. A read passes (audited). A write is resolved to
 * (control, command) in the house model, validated, tiered, rate-limited, confirmed by a person
 * where its tier needs it, audited BEFORE it is sent, sent once through the caller's `forward`,
 * read back, and its answer audited. Refusals become tool errors that say what to do next.
 */
import type { Logger } from "pino";
import type {
  CallContext,
  CallToolParams,
  CallToolResult,
  ForwardCall,
  PolicyUpstreamPort,
  Principal,
} from "../contracts.js";
import { OUTCOME_SENT } from "../store/audit.js";
import { StorageError } from "../store/health.js";
import type { AuditDraft, AuditRecorder } from "./audit-log.js";
import {
  type Classification,
  classifyWrite,
  describeTool,
  extractTarget,
  type ToolCatalog,
  type ToolInfo,
} from "./classify.js";
import { type ApprovalBook, confirmWrite, modeForClient } from "./confirm.js";
import { EMERGENCY_STOP_TOOL, type EmergencyStopState } from "./estop.js";
import type { HouseModel } from "./house.js";
import type { PersonAuth } from "./person.js";
import { RateLimiter } from "./ratelimit.js";
import { readBack } from "./readback.js";
import { redactArgs } from "./redact.js";
import { errorText, joinText, resultText, sendFailureOutcome } from "./results.js";
import { describeChange, type ToolTrust } from "./tooltrust.js";
import { type PolicyConfig, PolicyDenied, type PolicyMode, type SnapshotControl } from "./types.js";
import { sanitizeArgs, validateCommand } from "./validate.js";

/** What the engine decides with (built and owned by the gate, gate.ts). */
export interface EngineParts {
  cfg: PolicyConfig;
  upstream: PolicyUpstreamPort;
  house: HouseModel;
  recorder: AuditRecorder;
  approvals: ApprovalBook;
  person: PersonAuth;
  trust: ToolTrust;
  /** The emergency stop in force, if any. */
  estop: () => EmergencyStopState | undefined;
  log: Logger;
  now: () => number;
}

export class DecisionEngine {
  private readonly limiter: RateLimiter;

  constructor(private readonly p: EngineParts) {
    this.limiter = new RateLimiter(p.cfg.rateLimits, p.now);
  }

  /**
   * What tools/list shows a client: everything, except that a read-only client (by its shim's
   * --name rule, else the global mode) sees no write tools — only the reads of the trusted
   * catalogue, and the emergency stop (anyone may stop).
   */
  async visibleTools(
    client: Principal,
    tools: Array<Record<string, unknown>>,
  ): Promise<Array<Record<string, unknown>>> {
    if (this.modeFor(client) !== "read-only") return tools;
    let isRead: (t: Record<string, unknown>) => boolean;
    try {
      const catalog = await this.p.house.getCatalog();
      isRead = (t) => typeof t.name === "string" && catalog.tools.get(t.name)?.read === true;
    } catch {
      // No trusted catalogue to judge by: classify the listed definitions by the same rules.
      isRead = (t) => describeTool(t)?.read === true;
    }
    return tools.filter((t) => t.name === EMERGENCY_STOP_TOOL || isRead(t));
  }

  /** The client's mode: its rule matches the shim's --name (never the clientInfo it chose). */
  private modeFor(client: Principal): PolicyMode {
    const ruleName = client.ruleName;
    return ruleName ? modeForClient(ruleName, this.p.cfg.clients, this.p.cfg.mode) : this.p.cfg.mode;
  }

  /** Decides one tools/call (not the emergency stop: the gate runs that) and audits it. */
  async callTool(call: CallToolParams, ctx: CallContext, forward: ForwardCall): Promise<CallToolResult> {
    const t0 = this.p.now();
    const args = call.arguments ?? {};

    let catalog: ToolCatalog | undefined;
    try {
      catalog = await this.p.house.getCatalog();
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
      const offered = this.p.house.offered;
      if (catalog && !offered.includes(call.name)) {
        // Not in the Miniserver's tools/list: nothing to classify, hold or send.
        const known = [...offered.slice(0, 6), EMERGENCY_STOP_TOOL];
        throw new PolicyDenied(
          "UNKNOWN_TOOL",
          `unknown tool ${call.name}: the Miniserver does not offer it, so nothing was sent. Known tools include ${known.join(", ")}${offered.length > 6 ? ` (${offered.length + 1} in all; see tools/list)` : ""}`,
          "denied",
          { knownTools: known },
        );
      }
      const held = this.p.trust.held(call.name);
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
        this.p.log.info(
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
        this.p.recorder.record(call, ctx, draft, t0);
      } else if (!draft.finished) {
        // Stored before sending but no answer was recorded (should not happen): settle it.
        this.p.recorder.finish({ id: draft.auditId, outcome: draft.outcome, latencyMs: this.p.now() - t0 });
      } else if (draft.note) {
        this.p.recorder.finish({ id: draft.auditId, reason: draft.note });
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
    this.p.recorder.finish({
      id: draft.auditId,
      outcome: draft.outcome,
      ...(why ? { reason: why.slice(0, 1000) } : {}),
      latencyMs: this.p.now() - (draft.t0 ?? this.p.now()),
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
    await this.p.house.currentSnapshot();
    if (!target && tool?.uuidArg && tool.commandArg) {
      throw new PolicyDenied(
        "INVALID_COMMAND",
        `${call.name} needs "${tool.uuidArg}" (a control uuid) and "${tool.commandArg}" (a command) as strings; nothing was sent`,
      );
    }

    let control: SnapshotControl | undefined;
    let cls: Classification;
    if (target) {
      control = await this.p.house.resolveTarget(target.uuid);
      draft.controlName = control.name;
      draft.controlType = control.type;
      draft.nfc = /NfcCodeTouch/i.test(control.type);
      cls = classifyWrite(
        control,
        target.uuid,
        target.command,
        this.p.cfg,
        this.p.house.currentVolume(control),
      );
      if (cls.tier === "T4") {
        draft.tier = cls.tier;
        throw new PolicyDenied(
          "TIER4",
          `${describeAction(control, target.command)} is never done by an AI (${cls.reason}); a person has to do it on site or in the Loxone app`,
        );
      }
      validateCommand(control, target.command, this.p.cfg);
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
      if (others >= this.p.cfg.rateLimits.motorBurst) {
        cls = {
          ...cls,
          tier: "T3",
          reason: `${others + 1} different motors within a minute is a bulk movement (blinds/gates must not all close at once)`,
        };
      }
    }
    draft.tier = cls.tier;

    const estop = this.p.estop();
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
      await confirmWrite({
        call,
        ctx,
        what,
        cls,
        control,
        target,
        draft,
        person: this.p.person,
        approvals: this.p.approvals,
        now: this.p.now,
      });
      // Time passed while the person decided: check the state again.
      if (this.p.estop()?.active && !isMotorStop) {
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
      draft.auditId = this.p.recorder.commitIntent(
        this.p.recorder.event(call, ctx, { ...draft, outcome: OUTCOME_SENT }, draft.t0 ?? this.p.now()),
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
    if (!res.isError && control) this.p.house.rememberStates(res, control.uuid);
    if (!res.isError && control && target && (cls.tier === "T2" || cls.tier === "T3")) {
      return readBack(res, control, target.uuid, target.command, forward, this.p.house, draft);
    }
    return res;
  }

  private assertUpstreamReady(): void {
    const st = this.p.upstream.status();
    if (st.state !== "ready") {
      throw new PolicyDenied(
        "UPSTREAM_NOT_READY",
        `the Miniserver session is ${st.state}${st.reason ? ` (${st.reason})` : ""}: no command is sent while the connection is not healthy; check \`loxmcp status\` and try again`,
      );
    }
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

function denial(err: PolicyDenied): CallToolResult {
  return {
    content: [{ type: "text", text: `loxmcp policy: ${err.message}` }],
    isError: true,
    _meta: { "loxmcp/policy": { code: err.code, decision: err.decision, ...(err.data ?? {}) } },
  };
}
