/** Shared types of the safety policy (policy/ decides; it never talks SQL itself). */
import type { Infer } from "../config/rules.js";
import type { StoredControl } from "../store/snapshots.js";
import type { RateLimitsSchema, TemperatureSchema, VolumeSchema } from "./settings.js";

/** T1 comfort, T2 motion (crush/pinch), T3 security/bulk (needs a person), T4 never via AI. */
export type Tier = "T1" | "T2" | "T3" | "T4";

/** One day in ms (audit retention and pruning, `loxmcp audit --since 7d`). */
export const DAY_MS = 86_400_000;

/** The policy modes, most restrictive first (config.json's policy.mode, LOXMCP_POLICY, per client). */
export const POLICY_MODES = ["read-only", "confirm", "full"] as const;
export type PolicyMode = (typeof POLICY_MODES)[number];

/** One control as the structure snapshot knows it (the store's row type). */
export type SnapshotControl = StoredControl;

export interface Snapshot {
  id: number;
  hash: string;
  createdAt: number;
  checkedAt: number;
  controls: SnapshotControl[];
}

/** Rate limits (the shape of config.json's `policy.rateLimits`, every field set). */
export type RateLimitConfig = Infer<typeof RateLimitsSchema>;

/**
 * The engine's configuration: config.json's `policy` section (settings.ts) with every default
 * filled in and its times in ms.
 */
export interface PolicyConfig {
  mode: PolicyMode;
  /** Per-client mode by client name (case-insensitive; exact match first, then the longest prefix). */
  clients: Record<string, PolicyMode>;
  /**
   * Never via AI. Entries: a control type (`SmokeAlarm`), `Type:command` (`Alarm:off`, command
   * prefix before `/`), a uuid, or `uuid:command`. Merged with the built-in defaults.
   */
  t4: string[];
  rateLimits: RateLimitConfig;
  temperature: Infer<typeof TemperatureSchema>;
  volume: Infer<typeof VolumeSchema>;
  /** Two-phase approval code lifetime. */
  approvalTtlMs: number;
  /** Structure refresh period. */
  snapshotRefreshMs: number;
  /** Writes are refused when the snapshot was last confirmed longer ago than this. */
  snapshotMaxAgeMs: number;
  /** Audit retention in days. */
  auditRetentionDays: number;
}

export const DEFAULT_POLICY_CONFIG: PolicyConfig = {
  mode: "confirm",
  clients: {},
  t4: [],
  rateLimits: { motorPerMinute: 6, reversalCooldownMs: 2000, globalPerMinute: 30, motorBurst: 4 },
  temperature: { min: 16, max: 28, hardMin: 5, hardMax: 35 },
  volume: { max: 70, jump: 30 },
  approvalTtlMs: 120_000,
  snapshotRefreshMs: 15 * 60_000,
  snapshotMaxAgeMs: 60 * 60_000,
  auditRetentionDays: 90,
};

/**
 * "held": waiting for the person's approval (two-phase; the identical repeat runs once approved) —
 * not a refusal. "denied" / "rate-limited" / "emergency-stop" are refusals.
 */
export type Decision = "allowed" | "confirmed" | "held" | "denied" | "rate-limited" | "emergency-stop";
/** "sent": stored before sending, answer not known yet (a daemon that dies leaves it; the next start makes it "unknown"). */
export type Outcome = "ok" | "error" | "unknown" | "not-sent" | "sent";

/** Error raised inside the policy for a refusal; becomes a tool error result for the AI. */
export class PolicyDenied extends Error {
  constructor(
    readonly code:
      | "READ_ONLY"
      | "TIER4"
      | "INVALID_TARGET"
      | "INVALID_COMMAND"
      | "OUT_OF_RANGE"
      | "UNSAFE_INPUT"
      | "NO_STRUCTURE"
      | "UPSTREAM_NOT_READY"
      | "RATE_LIMITED"
      | "EMERGENCY_STOP"
      | "NOT_CONFIRMED"
      | "APPROVAL_REQUIRED"
      | "APPROVAL_QUEUE_FULL"
      | "TOOL_CHANGED"
      | "UNKNOWN_TOOL"
      | "AUDIT_UNAVAILABLE",
    message: string,
    readonly decision: Decision = "denied",
    /** Extra fields for the tool result's `_meta["loxmcp/policy"]` (e.g. the held call's code). */
    readonly data?: Record<string, unknown>,
    /**
     * The reason stored in the audit when the message is written for the AI (what to tell the
     * person, what to try next): what and why, short, for the person reading `loxmcp audit`.
     */
    readonly auditReason?: string,
  ) {
    super(message);
    this.name = "PolicyDenied";
  }
}
