/**
 * The `policy` section of config.json: its schema (validated at load time by config.ts, which
 * nests `PolicySectionSchema` into the file's schema), its type (inferred from the schema, never
 * copied by hand), and its mapping to the engine's configuration.
 */
import { z } from "zod";
import type { PolicyConfigInput } from "./index.js";
import { POLICY_MODES, type PolicyMode } from "./types.js";

const num = (min: number, max: number) => z.number().min(min).max(max).optional();

export const policySettingsShape = {
  /** Never-via-AI list: `Type`, `Type:command`, `uuid`, `uuid:command` (added to the built-in list). */
  t4: z.array(z.string().min(1).max(200)).max(500).optional(),
  rateLimits: z
    .object({
      motorPerMinute: num(1, 600),
      reversalCooldownMs: num(0, 600_000),
      globalPerMinute: num(1, 10_000),
      motorBurst: num(1, 1000),
    })
    .optional(),
  temperature: z
    .object({ min: num(-20, 60), max: num(-20, 60), hardMin: num(-20, 60), hardMax: num(-20, 60) })
    .optional(),
  volume: z.object({ max: num(0, 100), jump: num(0, 100) }).optional(),
  approvalTtlSec: num(10, 3600),
  snapshotRefreshMin: num(1, 1440),
  snapshotMaxAgeMin: num(1, 7 * 1440),
  auditRetentionDays: num(1, 3650),
};

/** The `policy` section of config.json. Passthrough: unknown keys are warned about, not refused. */
export const PolicySectionSchema = z
  .object({
    mode: z.enum(POLICY_MODES).optional(),
    clients: z.record(z.string(), z.enum(POLICY_MODES)).optional(),
    ...policySettingsShape,
  })
  .passthrough();
export type PolicySection = z.infer<typeof PolicySectionSchema>;

/** The section after loading: the mode is always decided (LOXMCP_POLICY, config.json or the default). */
export type PolicySectionInput = PolicySection & { mode: PolicyMode };

function defined<T extends object>(o: T | undefined): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o ?? {}).filter(([, v]) => v !== undefined)) as {
    [K in keyof T]?: Exclude<T[K], undefined>;
  };
}

/** Maps the validated config section to the engine's input (units converted to ms). */
export function policyConfigFromSection(p: PolicySectionInput): PolicyConfigInput {
  const out: PolicyConfigInput = { mode: p.mode };
  if (p.clients) out.clients = p.clients;
  if (p.t4) out.t4 = p.t4;
  if (p.rateLimits) out.rateLimits = defined(p.rateLimits);
  if (p.temperature) out.temperature = defined(p.temperature);
  if (p.volume) out.volume = defined(p.volume);
  if (p.approvalTtlSec !== undefined) out.approvalTtlMs = p.approvalTtlSec * 1000;
  if (p.snapshotRefreshMin !== undefined) out.snapshotRefreshMs = p.snapshotRefreshMin * 60_000;
  if (p.snapshotMaxAgeMin !== undefined) out.snapshotMaxAgeMs = p.snapshotMaxAgeMin * 60_000;
  if (p.auditRetentionDays !== undefined) out.auditRetentionDays = p.auditRetentionDays;
  return out;
}
