/**
 * Validation of a write before it is sent (SC-1, SC-2, SC-10): the target exists in the latest
 * structure snapshot, the command is one the control accepts, numbers are in range and every
 * string argument is free of control characters, traversal and shell/URL injection.
 */
import type { PolicyConfig, SnapshotControl } from "./types.js";
import { PolicyDenied } from "./types.js";

/** 8-4-4-16 (Loxone) or 8-4-4-4-12 hex, optionally followed by `/sub` segments. */
const UUID_RE =
  /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-(?:[0-9a-f]{16}|[0-9a-f]{4}-[0-9a-f]{12})((?:\/[A-Za-z0-9_-]+)*)$/i;
/** Command syntax: words and numbers separated by `/`, nothing that could add a path, query or shell. */
const COMMAND_RE = /^[A-Za-z0-9_+\-.]+(?:\/[A-Za-z0-9_+\-.]+)*$/;
const MAX_STRING = 1024;
const MAX_COMMAND = 128;
// biome-ignore lint/suspicious/noControlCharactersInRegex: we look for control characters on purpose
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const SHELL_META = /[;&|`$<>\\'"{}\n\r]/;

export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/** Base uuid without sub-control suffix, lower case. */
export function baseUuid(s: string): string {
  return (s.split("/")[0] ?? s).toLowerCase();
}

/** Rejects control characters, over-long strings and traversal anywhere in the arguments. */
export function sanitizeArgs(args: unknown, path = "arguments", depth = 0): void {
  if (depth > 8) throw new PolicyDenied("UNSAFE_INPUT", `${path} is nested too deeply; send flat arguments`);
  if (typeof args === "string") {
    if (args.length > MAX_STRING) {
      throw new PolicyDenied("UNSAFE_INPUT", `${path} is longer than ${MAX_STRING} characters; shorten it`);
    }
    if (CONTROL_CHARS.test(args)) {
      throw new PolicyDenied("UNSAFE_INPUT", `${path} contains control characters; remove them`);
    }
    return;
  }
  if (Array.isArray(args)) {
    if (args.length > 100) throw new PolicyDenied("UNSAFE_INPUT", `${path} has more than 100 items`);
    args.forEach((v, i) => {
      sanitizeArgs(v, `${path}[${i}]`, depth + 1);
    });
    return;
  }
  if (args && typeof args === "object") {
    const entries = Object.entries(args as Record<string, unknown>);
    if (entries.length > 50) throw new PolicyDenied("UNSAFE_INPUT", `${path} has more than 50 keys`);
    for (const [k, v] of entries) {
      if (k.length > 64 || CONTROL_CHARS.test(k))
        throw new PolicyDenied("UNSAFE_INPUT", `${path} has an invalid key`);
      sanitizeArgs(v, `${path}.${k}`, depth + 1);
    }
  }
}

/** Checks the uuid's form and that it names a control in the snapshot; returns that control. */
export function resolveControl(
  uuid: string,
  controls: ReadonlyMap<string, SnapshotControl>,
): { control: SnapshotControl; uuid: string } {
  const m = UUID_RE.exec(uuid);
  if (!m) {
    throw new PolicyDenied(
      "INVALID_TARGET",
      `"${truncate(uuid)}" is not a Loxone control uuid (8-4-4-16 hex, optional /sub); look it up with the find tool`,
    );
  }
  const exact = controls.get(uuid.toLowerCase());
  if (exact) return { control: exact, uuid };
  const base = controls.get(baseUuid(uuid));
  if (base) return { control: base, uuid };
  throw new PolicyDenied(
    "INVALID_TARGET",
    `no control with uuid ${truncate(uuid)} in the current house structure; look it up again with the find tool`,
  );
}

/** The commands a control accepts: its own list, else the built-in one for its type (may be empty). */
export function allowedCommands(control: SnapshotControl): string[] {
  return control.commands.length > 0 ? control.commands : (KNOWN_COMMANDS[control.type] ?? []);
}

/** Fallback command lists for when the structure did not list a control's commands. */
const KNOWN_COMMANDS: Record<string, string[]> = {
  LightControllerV2: ["on", "off", "changeTo/{n}", "plus", "minus"],
  Switch: ["on", "off", "pulse"],
  Pushbutton: ["on", "off", "pulse"],
  Jalousie: [
    "FullUp",
    "FullDown",
    "up",
    "down",
    "upOff",
    "downOff",
    "shade",
    "auto",
    "NoAuto",
    "stop",
    "manualPosition/{n}",
  ],
  Gate: ["open", "close", "stop"],
  Alarm: ["on", "on/{n}", "delayedon", "delayedon/{n}", "off", "quit"],
  NfcCodeTouch: ["output/{n}"],
  AudioZoneV2: ["play", "pause", "volume/{n}", "volUp", "volDown", "on", "off"],
  IRoomControllerV2: [
    "setComfortTemperature/{n}",
    "setManualTemperature/{n}",
    "setOperatingMode/{n}",
    "override/{n}",
  ],
};

function patternToRegex(pattern: string): RegExp {
  const esc = pattern
    .split("{n}")
    .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))
    .join("(-?\\d+(?:\\.\\d+)?)");
  return new RegExp(`^${esc}$`, "i");
}

/** Checks command syntax, that the control accepts it, and number ranges. Returns the numbers in it. */
export function validateCommand(
  control: SnapshotControl,
  command: string,
  cfg: Pick<PolicyConfig, "temperature">,
): number[] {
  if (command.length === 0 || command.length > MAX_COMMAND) {
    throw new PolicyDenied("INVALID_COMMAND", `command must be 1–${MAX_COMMAND} characters`);
  }
  if (CONTROL_CHARS.test(command) || SHELL_META.test(command) || !COMMAND_RE.test(command)) {
    throw new PolicyDenied(
      "UNSAFE_INPUT",
      `command "${truncate(command)}" contains characters a Loxone command never has; send e.g. "on" or "manualPosition/50"`,
    );
  }
  if (command.split("/").some((seg) => seg === "." || seg === ".." || seg.startsWith(".."))) {
    throw new PolicyDenied("UNSAFE_INPUT", `command "${truncate(command)}" contains a path traversal`);
  }
  const allowed = allowedCommands(control);
  if (allowed.length === 0) {
    throw new PolicyDenied(
      "INVALID_COMMAND",
      `the commands of ${control.type} "${control.name}" are not known, so nothing is sent; refresh the structure (loxmcp structure refresh)`,
    );
  }
  let numbers: number[] | undefined;
  let matched: string | undefined;
  for (const pattern of allowed) {
    const m = patternToRegex(pattern).exec(command);
    if (m) {
      numbers = m.slice(1).map(Number);
      matched = pattern;
      break;
    }
  }
  if (!numbers || matched === undefined) {
    throw new PolicyDenied(
      "INVALID_COMMAND",
      `"${truncate(command)}" is not a command of ${control.type} "${control.name}"; allowed: ${allowed.join(", ")}`,
    );
  }
  checkRanges(control, matched, numbers, cfg);
  return numbers;
}

function checkRanges(
  control: SnapshotControl,
  pattern: string,
  numbers: number[],
  cfg: Pick<PolicyConfig, "temperature">,
): void {
  const verb = (pattern.split("/")[0] ?? "").toLowerCase();
  for (const n of numbers) {
    if (!Number.isFinite(n)) throw new PolicyDenied("OUT_OF_RANGE", `number ${n} is not finite`);
    if (/temp/.test(verb)) {
      if (n < cfg.temperature.hardMin || n > cfg.temperature.hardMax) {
        throw new PolicyDenied(
          "OUT_OF_RANGE",
          `temperature ${n} °C is outside ${cfg.temperature.hardMin}–${cfg.temperature.hardMax} °C and never sent`,
        );
      }
    } else if (
      /position|volume|dim|level|slat/.test(verb) ||
      /Jalousie|Gate|Audio|Dimmer/i.test(control.type)
    ) {
      if (n < 0 || n > 100) {
        throw new PolicyDenied("OUT_OF_RANGE", `${verb} ${n} is outside 0–100`);
      }
    } else if (Math.abs(n) > 1_000_000) {
      throw new PolicyDenied("OUT_OF_RANGE", `number ${n} is implausibly large`);
    }
  }
}

function truncate(s: string): string {
  const clean = s.replace(CONTROL_CHARS, "?");
  return clean.length > 60 ? `${clean.slice(0, 57)}...` : clean;
}
