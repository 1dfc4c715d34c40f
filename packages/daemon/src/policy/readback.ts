/**
 * Read-back after a T2/T3 write: the control's state is read again (through the caller's
 * forward) and compared with what the command asked for, where that is unambiguous. Motors may
 * still be moving, so a differing position is reported as a warning to look at, never turned
 * into success or failure. The note goes onto the answer and the write's audit row.
 */
import type { CallToolResult, ForwardCall } from "../contracts.js";
import type { AuditDraft } from "./audit-log.js";
import type { HouseModel } from "./house.js";
import { errorText, resultText } from "./results.js";
import type { SnapshotControl } from "./types.js";

/** The write's answer with the read-back note added (and the note's gist in `draft.note`). */
export async function readBack(
  res: CallToolResult,
  control: SnapshotControl,
  uuid: string,
  command: string,
  forward: ForwardCall,
  house: HouseModel,
  draft: AuditDraft,
): Promise<CallToolResult> {
  const describe = house.catalog?.describe;
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
        house.rememberStates(back, control.uuid);
        const states = house.statesOf(control);
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
