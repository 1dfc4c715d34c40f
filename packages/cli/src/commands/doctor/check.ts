/** One finding of `loxmcp doctor`: its stable id, how bad it is, what was found and the fix. */

export type CheckLevel = "ok" | "info" | "warn" | "problem" | "skip";

export interface Check {
  id: string;
  level: CheckLevel;
  message: string;
  fix?: string;
}
