/**
 * Classification: which tools read and which write, how a write call names its target
 * (control uuid + command), and which tier that action is. Tool names change with Loxone
 * firmware, so roles and argument names are discovered from tools/list, never hard-coded.
 */
import type { CallToolParams } from "../contracts.js";
import type { PolicyConfig, SnapshotControl, Tier } from "./types.js";

const READ_VERBS = new Set(
  "find describe details detail get list lookup status state states statistics stats forecast weather search read history query info show".split(
    " ",
  ),
);
const WRITE_VERBS = new Set(
  "command commands cmd set execute exec run write send switch activate trigger press pulse open close script scripting toggle start stop delete update create put post".split(
    " ",
  ),
);

/** Splits a tool name into lower-case words: `control_find`, `controlFind`, `control-find`. */
export function nameWords(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, "$1_$2")
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter(Boolean);
}
const UUID_ARG =
  /^(uuid|control_?uuid|control_?id|controlUuid|controlId|control|id|device_?id|deviceId|target|uuidAction)$/i;
const COMMAND_ARG = /^(command|cmd|action)$/i;
const VALUE_ARG = /^(value|val|param|parameter)$/i;

export interface ToolInfo {
  name: string;
  read: boolean;
  /** Retried after recovery only when the upstream itself marks it read-only. */
  readOnlyHint: boolean;
  /** Argument naming the control (for writes and describe). */
  uuidArg?: string;
  /** Argument carrying the command. */
  commandArg?: string;
  /** Optional separate value argument, appended to the command as `command/value`. */
  valueArg?: string;
  requiredArgs: string[];
  properties: Record<string, Record<string, unknown>>;
}

export interface ToolCatalog {
  tools: Map<string, ToolInfo>;
  /** Read tool that lists controls (find-all), if any. */
  find?: ToolInfo;
  /** Read tool that describes one control by uuid, if any. */
  describe?: ToolInfo;
  /** Write tool that sends a command to a control, if any. */
  command?: ToolInfo;
}

function asRecord(v: unknown): Record<string, unknown> | undefined {
  return typeof v === "object" && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)
    : undefined;
}

export function describeTool(raw: Record<string, unknown>): ToolInfo | undefined {
  const name = raw.name;
  if (typeof name !== "string" || name.length === 0) return undefined;
  const annotations = asRecord(raw.annotations) ?? {};
  const schema = asRecord(raw.inputSchema) ?? {};
  const properties: Record<string, Record<string, unknown>> = {};
  for (const [k, v] of Object.entries(asRecord(schema.properties) ?? {})) properties[k] = asRecord(v) ?? {};
  const requiredArgs = Array.isArray(schema.required)
    ? schema.required.filter((x): x is string => typeof x === "string")
    : [];
  const readOnlyHint = annotations.readOnlyHint === true;
  const words = nameWords(name);
  const knownWrite = annotations.destructiveHint === true || words.some((w) => WRITE_VERBS.has(w));
  const keys = Object.keys(properties);
  // A tool that takes a command is a write whatever its annotations say (defence against a
  // mislabelled or hostile tool list).
  const takesCommand = keys.some((k) => COMMAND_ARG.test(k));
  const read = !takesCommand && (readOnlyHint || (words.some((w) => READ_VERBS.has(w)) && !knownWrite));
  const info: ToolInfo = { name, read, readOnlyHint: readOnlyHint && read, requiredArgs, properties };
  const uuidArg = keys.find((k) => UUID_ARG.test(k));
  const commandArg = keys.find((k) => COMMAND_ARG.test(k));
  const valueArg = keys.find((k) => VALUE_ARG.test(k));
  if (uuidArg) info.uuidArg = uuidArg;
  if (commandArg) info.commandArg = commandArg;
  else if (valueArg) info.commandArg = valueArg;
  if (commandArg && valueArg) info.valueArg = valueArg;
  return info;
}

/** Builds the catalogue from tools/list and picks the find / describe / command tools. */
export function buildCatalog(tools: Array<Record<string, unknown>>): ToolCatalog {
  const map = new Map<string, ToolInfo>();
  for (const t of tools) {
    const info = describeTool(t);
    if (info) map.set(info.name, info);
  }
  const all = [...map.values()];
  const cat: ToolCatalog = { tools: map };
  const find =
    all.find((t) => t.read && /find|search|lookup/i.test(t.name) && /control|device|item/i.test(t.name)) ??
    all.find((t) => t.read && /find|search|list|lookup|query/i.test(t.name)) ??
    all.find((t) => t.read && /control|device/i.test(t.name) && !t.requiredArgs.some((r) => r === t.uuidArg));
  const describe =
    all.find((t) => t.read && t !== find && /describe|detail|state|get/i.test(t.name) && t.uuidArg) ??
    all.find((t) => t.read && t.uuidArg && t !== find && /control|device/i.test(t.name));
  const command =
    all.find((t) => !t.read && t.uuidArg && t.commandArg && /command|cmd|control/i.test(t.name)) ??
    all.find((t) => !t.read && t.uuidArg && t.commandArg);
  if (find) cat.find = find;
  if (describe) cat.describe = describe;
  if (command) cat.command = command;
  return cat;
}

export interface WriteTarget {
  uuid: string;
  command: string;
}

/** Pulls (uuid, command) out of a write call using the discovered argument names. */
export function extractTarget(
  tool: ToolInfo | undefined,
  args: Record<string, unknown>,
): WriteTarget | undefined {
  if (!tool?.uuidArg || !tool.commandArg) return undefined;
  const uuid = args[tool.uuidArg];
  const cmd = args[tool.commandArg];
  if (typeof uuid !== "string" || (typeof cmd !== "string" && typeof cmd !== "number")) return undefined;
  let command = String(cmd);
  if (tool.valueArg !== undefined && args[tool.valueArg] !== undefined && args[tool.valueArg] !== null) {
    const v = args[tool.valueArg];
    if (typeof v === "string" || typeof v === "number" || typeof v === "boolean") command = `${command}/${v}`;
  }
  return { uuid, command };
}

export interface Classification {
  tier: Tier;
  reason: string;
  /** True when confirmation is needed even in `full` mode (e.g. temperature outside the safe band). */
  forceConfirm?: boolean;
  /** Motor (Jalousie/Gate): per-device rate limit applies. */
  motor?: boolean;
  /** Direction of a motor command, for the reversal cooldown. */
  direction?: "up" | "down";
}

/** Control types that move (blinds, gates, windows): what the emergency stop stops. */
export const MOTOR_TYPES = /^(Jalousie|Gate|Window|CentralJalousie|CentralGate|AutomaticJalousie)$/i;
const BULK = /(^|\b|_)(central|zentral|all|alle|everything|whole|bulk|house|haus)(\b|_|$)/i;
const DOOR = /(door|tür|tuer|lock|schloss|opener|öffner|oeffner|entry|eingang|gate ?opener)/i;
const SAFETY_ALARM_TYPES =
  /^(SmokeAlarm|FireAlarm|FireAndWaterAlarm|WaterAlarm|AalSmartAlarm|AalEmergency)$/i;

/** Built-in T4 list: actions no AI may take, whatever the mode. */
export const DEFAULT_T4 = [
  // Silencing or switching off fire / smoke / water / care alarms must stay with people on site.
  "SmokeAlarm",
  "FireAlarm",
  "FireAndWaterAlarm",
  "WaterAlarm",
  "AalSmartAlarm",
  "AalEmergency",
];

function commandVerb(command: string): string {
  return command.split("/")[0] ?? command;
}

function firstNumber(command: string): number | undefined {
  const parts = command.split("/").slice(1);
  for (const p of parts) {
    if (/^-?\d+(\.\d+)?$/.test(p)) return Number(p);
  }
  return undefined;
}

export function isT4(
  t4: readonly string[],
  control: SnapshotControl | undefined,
  uuid: string,
  command: string,
): boolean {
  const verb = commandVerb(command).toLowerCase();
  const base = uuid.toLowerCase();
  for (const raw of t4) {
    const entry = raw.trim();
    if (!entry) continue;
    const idx = entry.indexOf(":");
    const subject = (idx === -1 ? entry : entry.slice(0, idx)).toLowerCase();
    const cmd = idx === -1 ? undefined : entry.slice(idx + 1).toLowerCase();
    const subjectHit = subject === base || (control !== undefined && subject === control.type.toLowerCase());
    if (!subjectHit) continue;
    if (cmd === undefined || cmd === "*" || cmd === verb || cmd === command.toLowerCase()) return true;
  }
  return false;
}

/**
 * Tier of one write. `control` is the snapshot's control (undefined = unknown ⇒ T3).
 * `currentVolume` is the zone's last known volume, when known, for the jump rule.
 */
export function classifyWrite(
  control: SnapshotControl | undefined,
  uuid: string,
  command: string,
  cfg: Pick<PolicyConfig, "t4" | "temperature" | "volume">,
  currentVolume?: number,
): Classification {
  const verb = commandVerb(command);
  const lverb = verb.toLowerCase();
  if (isT4([...DEFAULT_T4, ...cfg.t4], control, uuid, command)) {
    return { tier: "T4", reason: "on the never-via-AI list (T4)" };
  }
  if (!control) return { tier: "T3", reason: "unknown control type" };
  const type = control.type;
  const label = `${control.name} ${control.category}`;
  if (SAFETY_ALARM_TYPES.test(type)) return { tier: "T4", reason: `${type} is never controlled via AI` };
  if (/^Central/i.test(type) || BULK.test(lverb) || /^(alloff|allon|all_off|all_on)$/i.test(lverb)) {
    return { tier: "T3", reason: "bulk / central command" };
  }
  if (MOTOR_TYPES.test(type)) {
    if (lverb === "stop") return { tier: "T1", reason: "stopping a motor", motor: true };
    const c: Classification = { tier: "T2", reason: `${type} moves (crush/pinch risk)`, motor: true };
    if (/^(fullup|up|open|shade|auto)$/i.test(verb)) c.direction = "up";
    else if (/^(fulldown|down|close)$/i.test(verb)) c.direction = "down";
    // Opening a garage/entry door lets people in: security. Closing stays T2 (crush risk).
    if (/^Gate$/i.test(type) && lverb === "open" && DOOR.test(label)) {
      return { ...c, tier: "T3", reason: `opening ${control.name} opens an entry to the house` };
    }
    return c;
  }
  if (/^Alarm$/i.test(type)) {
    return { tier: "T3", reason: "security system mode change" };
  }
  if (/Intercom|DoorController|Lock|NfcCodeTouch|AccessControl|Door/i.test(type)) {
    return { tier: "T3", reason: `${type} controls access to the house` };
  }
  if (DOOR.test(label) && /^(Pushbutton|Switch|Push|TimedSwitch|Pulse)$/i.test(type)) {
    return { tier: "T3", reason: "door opener / lock" };
  }
  if (/RoomController|Thermostat|Heating|Temperature/i.test(type) || /temp/i.test(lverb)) {
    const n = firstNumber(command);
    if (n !== undefined && /temp/i.test(lverb) && (n < cfg.temperature.min || n > cfg.temperature.max)) {
      return {
        tier: "T3",
        reason: `temperature ${n} °C outside ${cfg.temperature.min}–${cfg.temperature.max} °C`,
        forceConfirm: true,
      };
    }
    return { tier: "T1", reason: "climate within the safe band" };
  }
  if (/Audio/i.test(type)) {
    if (/^volume$/i.test(verb)) {
      const n = firstNumber(command);
      if (n !== undefined && n > cfg.volume.max) {
        return { tier: "T3", reason: `volume ${n} above ${cfg.volume.max}` };
      }
      if (n !== undefined && currentVolume !== undefined && Math.abs(n - currentVolume) > cfg.volume.jump) {
        return { tier: "T3", reason: `volume jump ${currentVolume} → ${n} larger than ${cfg.volume.jump}` };
      }
    }
    return { tier: "T1", reason: "audio" };
  }
  if (/Scene/i.test(type)) {
    if (BULK.test(control.name) || /(night|nacht|leave|away|abwesend|panic|panik)/i.test(control.name)) {
      return { tier: "T3", reason: "scene that may lock, arm or move many devices" };
    }
    return { tier: "T1", reason: "scene" };
  }
  if (
    /^(LightControllerV2|LightController|Switch|Dimmer|EIBDimmer|ColorPickerV2|Pushbutton|TimedSwitch)$/i.test(
      type,
    )
  ) {
    return { tier: "T1", reason: "comfort" };
  }
  return { tier: "T3", reason: `control type ${type} not known to the policy` };
}

/** A control's tiers as `loxmcp structure show` lists them. */
export interface ControlTiers {
  /** The highest tier of its commands: what the most sensitive thing it can be told needs. */
  tier: Tier;
  /** Why (the classifier's reason for that command). */
  tierReason: string;
  /** Each command's tier (values in the safe range; see classifyWrite for values that raise it). */
  commandTiers: Record<string, Tier>;
}

/**
 * Classifies every command of a control as a write would be (same rules, the configured T4
 * list included). A placeholder such as `{n}` stands for a value in the safe range: a
 * temperature outside the band or a loud volume can still raise a single call to T3. Without
 * a command list the control's type decides.
 */
export function classifyControl(
  control: SnapshotControl,
  commands: readonly string[],
  cfg: Pick<PolicyConfig, "t4" | "temperature" | "volume">,
): ControlTiers {
  const commandTiers: Record<string, Tier> = {};
  let top: Classification | undefined;
  for (const command of commands.length > 0 ? commands : [""]) {
    const cls = classifyWrite(control, control.uuid, command, cfg);
    if (command) commandTiers[command] = cls.tier;
    if (!top || cls.tier > top.tier) top = cls;
  }
  const t = top ?? classifyWrite(control, control.uuid, "", cfg);
  return { tier: t.tier, tierReason: t.reason, commandTiers };
}

/** Canonical JSON (sorted keys) for binding approvals to an exact call. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .filter((k) => o[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

export function callArgs(call: CallToolParams): Record<string, unknown> {
  return call.arguments ?? {};
}
