/**
 * The policy's control methods for the CLI (over the control socket): loxmcp/approve, deny, pin,
 * tools, stop-all, resume, audit, structure. Each asks the person where it must (PersonAuth) and
 * is audited; the engine (engine.ts) decides calls, these only expose it to the person.
 */
import { ErrorCodes } from "@loxmcp/common";
import type { Logger } from "pino";
import type { CallToolParams, CallToolResult, ControlRegistry, PolicyUpstreamPort } from "../contracts.js";
import { ControlError } from "../contracts.js";
import type { AuditQuery, AuditRow, AuditStore } from "../store/audit.js";
import type { SnapshotStore } from "../store/snapshots.js";
import type { AuditRecorder } from "./audit-log.js";
import { classifyControl } from "./classify.js";
import type { ApprovalBook } from "./confirm.js";
import type { EmergencyStopState, StopOutcome } from "./estop.js";
import { type HouseModel, snapshotMeta } from "./house.js";
import type { PersonAuth } from "./person.js";
import { diffControls, type StructureDiff } from "./structure.js";
import { describeChange, type ToolTrust } from "./tooltrust.js";
import { DAY_MS, type PolicyConfig, type Snapshot } from "./types.js";
import { allowedCommands } from "./validate.js";

/** What the control methods use of the engine (the gate, gate.ts, implements it). */
export interface PolicyControlHost {
  readonly cfg: PolicyConfig;
  readonly upstream: PolicyUpstreamPort;
  /** Ends the calls the policy makes itself (aborted when it stops). */
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly now: () => number;
  readonly audit: AuditStore;
  readonly recorder: AuditRecorder;
  readonly snapshots: SnapshotStore;
  readonly approvals: ApprovalBook;
  readonly person: PersonAuth;
  readonly trust: ToolTrust;
  /** The tool catalogue and the structure snapshot. */
  readonly house: HouseModel;
  readonly stopped: boolean;
  estop(): EmergencyStopState | undefined;
  emergencyStop(
    by: string,
    reason: string | undefined,
    send: (call: CallToolParams) => Promise<CallToolResult>,
  ): Promise<StopOutcome>;
  resume(by: string): { active: false; wasActive: boolean };
}

export function registerPolicyControls(control: ControlRegistry, h: PolicyControlHost): void {
  control.register("loxmcp/approve", async (params, ctx) => {
    if (params.list === true || params.code === undefined) return { pending: h.approvals.list() };
    const code = codeParam(params.code, "approve");
    const t0 = h.now();
    const held = h.approvals.get(code);
    if (!held) {
      h.recorder.record(
        { name: "loxmcp/approve", arguments: { code } },
        ctx,
        { kind: "control", decision: "denied", reason: "unknown or expired code", outcome: "error" },
        t0,
      );
      throw new ControlError(
        ErrorCodes.InvalidParams,
        `no pending approval with code ${code} (wrong or expired); list them with \`loxmcp approve --list\``,
      );
    }
    // The person's proof (PIN, or the terminal when no PIN is set); wrong PINs are audited there.
    const proof = await h.person.authorize(params, ctx, "approve");
    const entry = h.approvals.approve(code);
    h.recorder.record(
      { name: "loxmcp/approve", arguments: { code } },
      ctx,
      {
        kind: "control",
        decision: entry ? "allowed" : "denied",
        reason: entry
          ? `approved by the person (${proof === "pin" ? "PIN" : "terminal"}): ${entry.summary}`
          : "the code expired while the person was asked",
        outcome: entry ? "ok" : "error",
      },
      t0,
    );
    if (!entry) {
      throw new ControlError(ErrorCodes.InvalidParams, `code ${code} expired before it was approved`);
    }
    return { approved: entry };
  });

  control.register("loxmcp/deny", (params, ctx) => {
    const code = codeParam(params.code, "deny");
    const entry = h.approvals.deny(code);
    h.recorder.record(
      { name: "loxmcp/deny", arguments: { code } },
      ctx,
      {
        kind: "control",
        decision: "allowed",
        reason: entry ? `denied by the person: ${entry.summary}` : "unknown or expired code",
        outcome: entry ? "ok" : "error",
      },
      h.now(),
    );
    if (!entry) {
      throw new ControlError(
        ErrorCodes.InvalidParams,
        `no pending approval with code ${code} (wrong or expired); list them with \`loxmcp approve --list\``,
      );
    }
    return { denied: entry };
  });

  control.register("loxmcp/pin", async (params, ctx) => {
    const action = params.action ?? "status";
    if (action === "status") return h.person.status();
    if (action === "set") {
      const r = await h.person.setPin({ ...params, newPin: params.newPin }, ctx);
      return { ...r, ...h.person.status() };
    }
    if (action === "remove") {
      const r = await h.person.setPin({ ...params, newPin: null }, ctx);
      return { ...r, ...h.person.status() };
    }
    if (action === "reset") {
      // hardened mode: root sets a new PIN without the forgotten one (person.ts refuses otherwise)
      const r = await h.person.setPin({ ...params, newPin: params.newPin, reset: true }, ctx);
      return { ...r, ...h.person.status() };
    }
    throw new ControlError(
      ErrorCodes.InvalidParams,
      `unknown pin action "${String(action)}": use status, set, reset or remove`,
    );
  });

  control.register("loxmcp/tools", async (params, ctx) => {
    const action = params.action ?? "diff";
    if (action !== "diff" && action !== "accept") {
      throw new ControlError(
        ErrorCodes.InvalidParams,
        `unknown tools action "${String(action)}": use diff or accept`,
      );
    }
    // Always compare against what the Miniserver offers now.
    h.house.forgetCatalog();
    let list: { tools: Array<Record<string, unknown>> };
    try {
      list = await h.upstream.listTools();
    } catch (err) {
      throw new ControlError(
        ErrorCodes.UpstreamUnavailable,
        `the Miniserver's tool list is not available (${(err as Error).message}); try again once \`loxmcp status\` is ready`,
      );
    }
    // The diff, its digest and what `accept` stores all come from this one list: the person
    // accepts exactly what was reviewed, even if the Miniserver's list changes meanwhile.
    const changes = h.trust.review(list.tools).changes;
    const digest = h.trust.digest();
    if (action === "diff") return { changes, digest, tools: list.tools.length };
    if (changes.length === 0) return { accepted: 0, changes: [] };
    if (typeof params.digest === "string" && params.digest !== digest) {
      throw new ControlError(
        ErrorCodes.InvalidParams,
        "the tool list changed again since you looked at it: nothing was accepted; run `loxmcp tools diff` and decide again",
      );
    }
    await h.person.authorize(params, ctx, "tools accept");
    const accepted = h.trust.accept(list.tools);
    h.house.forgetCatalog();
    h.recorder.record(
      { name: "loxmcp/tools-accept", arguments: {} },
      ctx,
      {
        kind: "control",
        decision: "allowed",
        reason: `tool changes accepted by the person: ${changes.map(describeChange).join("; ")}`.slice(
          0,
          1000,
        ),
        outcome: "ok",
      },
      h.now(),
    );
    h.log.warn({ changes: changes.map(describeChange) }, "the person accepted the tool catalogue changes");
    if (!h.stopped && h.upstream.status().state === "ready") h.house.backgroundRefresh("tools accepted");
    return { accepted, changes };
  });

  control.register("loxmcp/stop-all", async (params, ctx) => {
    const t0 = h.now();
    const reason = typeof params.reason === "string" ? params.reason.slice(0, 200) : undefined;
    // The path of every client's tools/call (a relay slot in this connection's share). The
    // policy's signal, not the connection's: the person's terminal going away must not cut the
    // stop short.
    const forward = h.upstream.forward(ctx.client.connId, h.signal);
    const out = await h.emergencyStop(`${ctx.client.name} (control socket)`, reason, (c) =>
      forward(c, { retryable: false }),
    );
    h.recorder.record(
      { name: "loxmcp/stop-all", arguments: reason ? { reason } : {} },
      ctx,
      {
        kind: "control",
        decision: "allowed",
        reason: "emergency stop",
        outcome: out.stopped.every((s) => s.ok) ? "ok" : "error",
      },
      t0,
    );
    return {
      active: true,
      since: out.state.since,
      stopped: out.stopped,
      ...(out.warning ? { warning: out.warning } : {}),
    };
  });

  control.register("loxmcp/resume", async (params, ctx) => {
    const t0 = h.now();
    if (!h.estop()?.active) return { active: false, wasActive: false };
    await h.person.authorize(params, ctx, "resume");
    const out = h.resume(ctx.client.name);
    h.recorder.record(
      { name: "loxmcp/resume", arguments: {} },
      ctx,
      { kind: "control", decision: "allowed", outcome: "ok" },
      t0,
    );
    return out;
  });

  control.register("loxmcp/audit", (params) => {
    const q: AuditQuery = {};
    const since = parseSince(params.since, h.now());
    if (since !== undefined) q.since = since;
    if (typeof params.client === "string" && params.client) q.client = params.client;
    if (params.denied === true) q.denied = true;
    if (params.held === true) q.held = true;
    if (params.limit !== undefined) {
      const n = Number(params.limit);
      if (!Number.isFinite(n) || n < 1)
        throw new ControlError(ErrorCodes.InvalidParams, "limit must be a positive number");
      q.limit = n;
    }
    h.recorder.flush();
    const events: AuditRow[] = h.audit.query(q);
    return { events };
  });

  control.register("loxmcp/structure", async (params) => {
    const action = params.action ?? "show";
    if (action === "refresh") {
      const before = h.house.snapshot;
      let result: { snapshot: Snapshot; changed: boolean };
      try {
        result = await h.house.refreshStructure();
      } catch (err) {
        throw new ControlError(
          ErrorCodes.UpstreamUnavailable,
          `structure refresh failed: ${(err as Error).message}; check \`loxmcp status\``,
        );
      }
      const s = result.snapshot;
      return {
        changed: result.changed,
        snapshot: snapshotMeta(s),
        ...(result.changed && before ? { diff: diffControls(before.controls, s.controls) } : {}),
      };
    }
    if (action === "show") {
      const s = h.house.snapshot;
      if (!s)
        throw new ControlError(
          ErrorCodes.UpstreamUnavailable,
          "no structure snapshot yet; run `loxmcp structure refresh` once the daemon is ready",
        );
      const room = typeof params.room === "string" ? params.room.toLowerCase() : undefined;
      const type = typeof params.type === "string" ? params.type.toLowerCase() : undefined;
      const controls = s.controls
        .filter((c) => (!room || c.room.toLowerCase() === room) && (!type || c.type.toLowerCase() === type))
        // the tier each command would get as a write, by the same classifier and T4 list
        .map((c) => ({ ...c, ...classifyControl(c, allowedCommands(c), h.cfg) }));
      return { snapshot: snapshotMeta(s), controls };
    }
    if (action === "diff") {
      const [to, from] = h.snapshots.recent(2);
      const out: StructureDiff = {
        ...(from ? { from: metaShort(from) } : {}),
        ...(to ? { to: metaShort(to) } : {}),
        ...diffControls(from?.controls ?? to?.controls ?? [], to?.controls ?? []),
      };
      return out;
    }
    throw new ControlError(
      ErrorCodes.InvalidParams,
      `unknown structure action "${String(action)}": use refresh, show or diff`,
    );
  });
}

function codeParam(v: unknown, what: string): string {
  if (typeof v !== "string" || !/^[A-Za-z0-9]{4,12}$/.test(v.trim())) {
    throw new ControlError(
      ErrorCodes.InvalidParams,
      `${what} needs the 6-character code of the held action, e.g. \`loxmcp ${what} K7Q2XM\` (\`loxmcp approve --list\` shows them)`,
    );
  }
  return v.trim().toUpperCase();
}

function metaShort(s: Snapshot) {
  return { id: s.id, createdAt: s.createdAt, hash: s.hash };
}

/** `since`: epoch ms, ISO date, or a duration like 30m / 2h / 7d. */
export function parseSince(v: unknown, now: number): number | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v === "number" && Number.isFinite(v)) return v;
  if (typeof v === "string") {
    const m = /^(\d+)\s*(s|m|h|d)$/i.exec(v.trim());
    if (m) {
      const n = Number(m[1]);
      const unit = { s: 1000, m: 60_000, h: 3_600_000, d: DAY_MS }[
        (m[2] ?? "s").toLowerCase() as "s" | "m" | "h" | "d"
      ];
      return now - n * unit;
    }
    if (/^\d+$/.test(v.trim())) return Number(v);
    const t = Date.parse(v);
    if (Number.isFinite(t)) return t;
  }
  throw new ControlError(
    ErrorCodes.InvalidParams,
    `since "${String(v)}" is not a date, epoch ms or duration like 2h / 7d`,
  );
}
