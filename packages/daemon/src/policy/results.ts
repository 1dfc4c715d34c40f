/** What a call's answer or failure means, in words for the person and as an audit outcome. */
import { ErrorCodes } from "@loxmcp/common";
import type { CallToolResult } from "../contracts.js";
import { UpstreamError } from "../contracts.js";
import type { Outcome, SnapshotControl } from "./types.js";

export function pick(c: SnapshotControl) {
  return { uuid: c.uuid, name: c.name, room: c.room, type: c.type };
}

export function resultText(res: CallToolResult): string {
  const t = (res.content ?? [])
    .map((c) => (typeof c.text === "string" ? c.text : ""))
    .filter(Boolean)
    .join(" ")
    .replace(/\s+/g, " ")
    .trim();
  return t.length > 600 ? `${t.slice(0, 597)}...` : t || "(no text)";
}

/**
 * What a failed send means for the outcome: the answer was lost = unknown; it never left (relay
 * unavailable, refused as unauthorized, cancelled or timed out before sending, no relay slot
 * free) = not-sent; anything else (the Miniserver's own error) = error.
 */
export function sendFailureOutcome(err: unknown): Outcome {
  if (err instanceof UpstreamError) {
    switch (err.code) {
      case "OUTCOME_UNKNOWN":
        return "unknown";
      case "UNAVAILABLE":
      case "AUTH_FAILED":
        return "not-sent";
      case "CANCELLED":
      case "TIMEOUT":
        return /before it was sent|could not be sent/.test(err.message) ? "not-sent" : "unknown";
      default:
        return "error";
    }
  }
  if ((err as { code?: unknown } | null)?.code === ErrorCodes.TooBusy) return "not-sent";
  return "error";
}

export function joinText(a: string | undefined, b: string | undefined): string | undefined {
  if (!b) return a;
  return a ? `${a}; ${b}` : b;
}

export function errorText(err: unknown): string {
  if (err instanceof UpstreamError) {
    return err.code === "OUTCOME_UNKNOWN"
      ? `outcome unknown: ${err.message}`
      : `${err.code.toLowerCase()}: ${err.message}`;
  }
  return err instanceof Error ? err.message : String(err);
}
