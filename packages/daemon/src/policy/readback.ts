/**
 * Read-back check after a T2/T3 write: compares the state the Miniserver reports with what the
 * command asked for, where that is unambiguous. Motors may still be moving, so a differing
 * position is reported as a warning to look at, never turned into success or failure.
 */
import type { SnapshotControl } from "./types.js";

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

/** A sentence describing how the state differs from the command, or undefined when it matches / cannot tell. */
export function readBackMismatch(
  control: SnapshotControl,
  command: string,
  states: Record<string, unknown>,
): string | undefined {
  const [verb = "", arg] = command.split("/");
  const n = arg !== undefined && /^-?\d+(\.\d+)?$/.test(arg) ? Number(arg) : undefined;
  const v = verb.toLowerCase();
  if ((v === "on" || v === "off" || v === "delayedon") && arg === undefined) {
    const want = v !== "off";
    for (const key of ["armed", "on", "active"]) {
      const got = states[key];
      if (typeof got === "boolean") {
        return got === want ? undefined : `${key} is ${got} after "${command}"`;
      }
    }
    return undefined;
  }
  if (n === undefined) return undefined;
  const compare = (key: string, scale = false): string | undefined => {
    const got = num(states[key]);
    if (got === undefined) return undefined;
    const value = scale && got <= 1 && n > 1 ? got * 100 : got;
    return Math.abs(value - n) <= 0.5 ? undefined : `${key} is ${got}, asked for ${n}`;
  };
  if (v === "manualposition") {
    const m = compare("position", true);
    return m ? `${m} (${control.type} may still be moving)` : undefined;
  }
  if (v === "setcomforttemperature") return compare("comfortTemperature");
  if (v === "setmanualtemperature") return compare("tempTarget");
  if (v === "volume") return compare("volume");
  return undefined;
}
