/**
 * The policy's settings: the `policy` section of config.json — its schema (config/rules.ts,
 * validated at load time by config.ts, which nests `PolicySectionSchema` into the file's schema)
 * and its type (inferred from the schema, never copied by hand) — its mapping to the engine's configuration (units in
 * ms), and the merge of that with the defaults.
 */
import {
  array,
  type Infer,
  number,
  object,
  oneOf,
  optional,
  partial,
  record,
  string,
} from "../config/rules.js";
import { DEFAULT_POLICY_CONFIG, POLICY_MODES, type PolicyConfig, type PolicyMode } from "./types.js";

/** Rate limits; each one optional in config.json (the default fills it in). */
export const RateLimitsSchema = object(
  {
    /** Commands per minute per motor (Jalousie, Gate). */
    motorPerMinute: number({ min: 1, max: 600 }),
    /** Minimum ms between opposite directions on one motor (FullUp ↔ FullDown, open ↔ close). */
    reversalCooldownMs: number({ min: 0, max: 600_000 }),
    /** Writes per minute over all clients. */
    globalPerMinute: number({ min: 1, max: 10_000 }),
    /**
     * Moving more than this many different motors within a minute is a bulk movement (UCA-B2:
     * all blinds closed at once): the next one is T3 (needs a person in confirm mode).
     */
    motorBurst: number({ min: 1, max: 1000 }),
  },
  { closed: false },
);

/** The safe temperature band; outside it needs a person's confirmation (in every mode). */
export const TemperatureSchema = object(
  {
    min: number({ min: -20, max: 60 }),
    max: number({ min: -20, max: 60 }),
    hardMin: number({ min: -20, max: 60 }),
    hardMax: number({ min: -20, max: 60 }),
  },
  { closed: false },
);

/** Volume above `max` or a jump larger than `jump` counts as T3. */
export const VolumeSchema = object(
  { max: number({ min: 0, max: 100 }), jump: number({ min: 0, max: 100 }) },
  { closed: false },
);

const num = (min: number, max: number) => optional(number({ min, max }));

export const policySettingsShape = {
  /** Never-via-AI list: `Type`, `Type:command`, `uuid`, `uuid:command` (added to the built-in list). */
  t4: optional(array(string({ min: 1, max: 200 }), { max: 500 })),
  rateLimits: optional(partial(RateLimitsSchema)),
  temperature: optional(partial(TemperatureSchema)),
  volume: optional(partial(VolumeSchema)),
  approvalTtlSec: num(10, 3600),
  snapshotRefreshMin: num(1, 1440),
  snapshotMaxAgeMin: num(1, 7 * 1440),
  auditRetentionDays: num(1, 3650),
};

/** The `policy` section of config.json. Open: unknown keys are kept (config/file.ts refuses them, naming each). */
export const PolicySectionSchema = object(
  {
    mode: optional(oneOf(POLICY_MODES)),
    clients: optional(record(oneOf(POLICY_MODES))),
    ...policySettingsShape,
  },
  { closed: false },
);
export type PolicySection = Infer<typeof PolicySectionSchema>;

/** The section after loading: the mode is always decided (LOXMCP_POLICY, config.json or the default). */
export type PolicySectionInput = PolicySection & { mode: PolicyMode };

/** The engine's configuration as given (tests, the section): anything left out takes the default. */
export type PolicyConfigInput = Partial<Omit<PolicyConfig, "rateLimits" | "temperature" | "volume">> & {
  rateLimits?: Partial<PolicyConfig["rateLimits"]>;
  temperature?: Partial<PolicyConfig["temperature"]>;
  volume?: Partial<PolicyConfig["volume"]>;
};

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

/** The engine's configuration: the input over the defaults (undefined leaves the default). */
export function resolvePolicyConfig(input: PolicyConfigInput): PolicyConfig {
  const d = DEFAULT_POLICY_CONFIG;
  return {
    ...d,
    ...defined(input),
    clients: { ...(input.clients ?? {}) },
    t4: [...(input.t4 ?? [])],
    rateLimits: { ...d.rateLimits, ...defined(input.rateLimits) },
    temperature: { ...d.temperature, ...defined(input.temperature) },
    volume: { ...d.volume, ...defined(input.volume) },
  };
}
