/**
 * The emergency stop (loxmcp_emergency_stop, `loxmcp stop-all`): a state that blocks every write
 * until a person resumes, kept in the database (and in memory while the disk refuses), the
 * stopping of every blind and gate, and the MCP tool that any client may call for it.
 */
import { ErrorCodes } from "@loxmcp/common";
import type { Logger } from "pino";
import type { CallToolParams, CallToolResult } from "../contracts.js";
import { ControlError } from "../contracts.js";
import { type AuditEvent, OUTCOME_SENT } from "../store/audit.js";
import { StorageError } from "../store/health.js";
import type { SnapshotStore } from "../store/snapshots.js";
import type { AuditRecorder } from "./audit-log.js";
import { MOTOR_TYPES, type ToolCatalog, type ToolInfo } from "./classify.js";
import { errorText, joinText, pick, resultText, sendFailureOutcome } from "./results.js";
import type { Outcome, Snapshot, SnapshotControl } from "./types.js";

export const EMERGENCY_STOP_TOOL = "loxmcp_emergency_stop";
const ESTOP_KEY = "emergencyStop";

export interface EmergencyStopState {
  active: boolean;
  since: number;
  by: string;
  reason?: string;
}

export interface StopReport {
  uuid: string;
  name: string;
  room: string;
  type: string;
  ok: boolean;
  /** What the Miniserver answered (or the error). */
  answer: string;
}

export interface StopOutcome {
  state: EmergencyStopState;
  stopped: StopReport[];
  warning?: string;
}

/** The tool the daemon adds to every client's tools/list: anyone may stop, only the person resumes. */
export function emergencyStopTool(): Record<string, unknown> {
  return {
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
  };
}

/** The tool's answer: the stop in force and what each blind and gate answered. */
export function stopToolAnswer(out: StopOutcome): CallToolResult {
  const lines = [
    `Emergency stop is ACTIVE (since ${new Date(out.state.since).toISOString()}): every command is refused until the person lifts it (only they can).`,
    ...out.stopped.map(
      (s) => `${s.ok ? "stopped" : "FAILED"}: ${s.name} (${s.room}, ${s.type}): ${s.answer}`,
    ),
  ];
  if (out.warning) lines.push(`warning: ${out.warning}`);
  return {
    content: [{ type: "text", text: lines.join("\n") }],
    structuredContent: {
      emergencyStop: out.state,
      stopped: out.stopped,
      ...(out.warning ? { warning: out.warning } : {}),
    },
  };
}

export class EmergencyStop {
  /** A stop the database could not store: it holds in memory until it can. */
  private unsaved: EmergencyStopState | undefined;
  /** The last state read, for when the database cannot be read. */
  private known: EmergencyStopState | undefined;

  constructor(
    private readonly snapshots: SnapshotStore,
    private readonly recorder: AuditRecorder,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  /** The stop in force (the database first; memory when it cannot be read or written). */
  state(): EmergencyStopState | undefined {
    if (this.unsaved) {
      // Stored in memory only (disk full, …): write it as soon as the database takes it.
      try {
        this.snapshots.setState(ESTOP_KEY, this.unsaved, this.now());
        this.unsaved = undefined;
      } catch {
        return this.unsaved;
      }
    }
    try {
      this.known = this.snapshots.getState<EmergencyStopState>(ESTOP_KEY);
    } catch (err) {
      if (!(err instanceof StorageError)) throw err;
    }
    return this.known;
  }

  /**
   * Blocks every write (stored; held in memory if the disk refuses) and sends "stop" to every
   * blind and gate of the structure `snapshot`, four at a time, each audited before it is sent.
   */
  async stop(
    by: string,
    reason: string | undefined,
    send: (call: CallToolParams) => Promise<CallToolResult>,
    catalog: () => Promise<ToolCatalog>,
    snapshot: Snapshot | undefined,
  ): Promise<StopOutcome> {
    const prev = this.state();
    const state: EmergencyStopState = prev?.active
      ? prev
      : { active: true, since: this.now(), by, ...(reason ? { reason } : {}) };
    let warning: string | undefined;
    try {
      this.snapshots.setState(ESTOP_KEY, state, this.now());
    } catch (err) {
      if (!(err instanceof StorageError)) throw err;
      // Stopping never waits for the disk: the stop holds in memory and is stored when possible.
      this.unsaved = state;
      warning = `the emergency stop could not be stored (${err.message}): it holds until the daemon restarts unless the database can be written again before`;
    }
    this.known = state;
    this.log.warn({ by, reason }, "EMERGENCY STOP: writes blocked; stopping every blind and gate");
    let motors: SnapshotControl[] = [];
    let command: ToolInfo | undefined;
    try {
      command = (await catalog()).command;
    } catch (err) {
      warning = `the tool list is not available (${(err as Error).message})`;
    }
    if (snapshot) motors = snapshot.controls.filter((c) => MOTOR_TYPES.test(c.type));
    else warning = joinText(warning, "no house structure known: could not enumerate blinds and gates");
    const stopped: StopReport[] = [];
    if (command?.uuidArg && command.commandArg) {
      const tool = command;
      const uuidArg = command.uuidArg;
      const commandArg = command.commandArg;
      let next = 0;
      const worker = async () => {
        while (next < motors.length) {
          const c = motors[next++] as SnapshotControl;
          const t0 = this.now();
          const event: AuditEvent = {
            ts: t0,
            client: by,
            tool: tool.name,
            args: { [uuidArg]: c.uuid, [commandArg]: "stop" },
            kind: "write",
            target: c.uuid,
            controlName: c.name,
            controlType: c.type,
            command: "stop",
            tier: "T1",
            decision: "allowed",
            reason: "emergency stop",
            outcome: OUTCOME_SENT,
            latencyMs: 0,
          };
          // Audited before it is sent, like every write; but a stop is never held back for want
          // of an audit row (stopping is the safe direction): then it is logged and queued.
          let auditId: number | undefined;
          try {
            auditId = this.recorder.commitIntent(event);
          } catch (err) {
            this.log.error(
              { device: c.name, err: (err as Error).message },
              "emergency stop: the audit row could not be stored first; sending the stop anyway",
            );
          }
          let report: StopReport;
          let outcome: Outcome;
          try {
            const res = await send({
              name: tool.name,
              arguments: { [uuidArg]: c.uuid, [commandArg]: "stop" },
            });
            report = { ...pick(c), ok: res.isError !== true, answer: resultText(res) };
            outcome = report.ok ? "ok" : "error";
          } catch (err) {
            report = { ...pick(c), ok: false, answer: errorText(err) };
            outcome = sendFailureOutcome(err);
          }
          stopped.push(report);
          const latencyMs = this.now() - t0;
          const why = report.ok ? undefined : report.answer.slice(0, 300);
          if (auditId !== undefined) {
            this.recorder.finish({ id: auditId, outcome, ...(why ? { reason: why } : {}), latencyMs });
          } else {
            this.recorder.insert(
              { ...event, outcome, reason: joinText(event.reason, why) ?? "emergency stop", latencyMs },
              true,
            );
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(4, motors.length) }, worker));
    } else if (!warning) {
      warning = "the relay offers no command tool: blinds and gates were not stopped";
    }
    const out: StopOutcome = { state, stopped };
    if (warning) out.warning = warning;
    return out;
  }

  /** Lifts the stop (only once the database has forgotten it). */
  resume(by: string): { active: false; wasActive: boolean } {
    const prev = this.state();
    try {
      this.snapshots.deleteState(ESTOP_KEY);
    } catch (err) {
      if (!(err instanceof StorageError)) throw err;
      throw new ControlError(
        ErrorCodes.InternalError,
        `the emergency stop was NOT lifted: the database cannot be written (${err.message}); fix that (\`loxmcp doctor\`) and run \`loxmcp resume\` again`,
      );
    }
    this.unsaved = undefined;
    this.known = undefined;
    if (prev?.active) this.log.warn({ by }, "emergency stop lifted: writes allowed again");
    return { active: false, wasActive: prev?.active === true };
  }
}
