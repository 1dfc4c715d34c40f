/**
 * `loxmcp logs`' formatting: a pino JSON line parsed (level by number or name) and pretty-printed
 * as one readable line, values under secret-looking keys masked.
 */
import { formatLocalTime, isRecord, SECRET_KEY } from "../../format.js";

export const LEVELS: Record<string, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
};
const LEVEL_NAMES = Object.fromEntries(Object.entries(LEVELS).map(([k, v]) => [v, k])) as Record<
  number,
  string
>;
const COLORS: Record<string, string> = {
  trace: "\x1b[90m",
  debug: "\x1b[36m",
  info: "\x1b[32m",
  warn: "\x1b[33m",
  error: "\x1b[31m",
  fatal: "\x1b[35m",
};
const RESERVED = new Set([
  "level",
  "time",
  "pid",
  "hostname",
  "msg",
  "message",
  "component",
  "name",
  "module",
  "v",
]);

export interface LogLine {
  raw: string;
  /** Parsed JSON object, or undefined for a non-JSON line (e.g. a crash trace). */
  obj?: Record<string, unknown>;
  level?: number;
}

export function parseLogLine(raw: string): LogLine {
  try {
    const obj: unknown = JSON.parse(raw);
    if (isRecord(obj)) {
      const lv = obj.level;
      const level =
        typeof lv === "number" ? lv : typeof lv === "string" ? LEVELS[lv.toLowerCase()] : undefined;
      return level === undefined ? { raw, obj } : { raw, obj, level };
    }
  } catch {
    /* not JSON */
  }
  return { raw };
}

function mask(key: string, v: unknown): unknown {
  if (SECRET_KEY.test(key)) return "[redacted]";
  if (isRecord(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, mask(k, x)]));
  if (Array.isArray(v)) return v.map((x) => mask("", x));
  return v;
}

function fieldText(v: unknown): string {
  if (typeof v === "string") return /[\s"=]/.test(v) || v === "" ? JSON.stringify(v) : v;
  return JSON.stringify(v);
}

/** "2026-11-23 10:51:53.123 INFO  [upstream] message key=value err=…". */
export function prettyLine(line: LogLine, color: boolean): string {
  const o = line.obj;
  if (!o) return line.raw;
  const t = typeof o.time === "number" || typeof o.time === "string" ? new Date(o.time) : undefined;
  const time = t && !Number.isNaN(t.getTime()) ? formatLocalTime(t, true) : "-".padEnd(23);
  const lname = line.level !== undefined ? (LEVEL_NAMES[line.level] ?? String(line.level)) : "?";
  const levelText = lname.toUpperCase().padEnd(5);
  const lvl = color ? `${COLORS[lname] ?? ""}${levelText}\x1b[0m` : levelText;
  const comp = o.component ?? o.module ?? o.name;
  const msg = typeof o.msg === "string" ? o.msg : typeof o.message === "string" ? o.message : "";
  const fields: string[] = [];
  for (const [k, v] of Object.entries(o)) {
    if (RESERVED.has(k) || v === undefined) continue;
    if ((k === "err" || k === "error") && isRecord(v)) {
      const m = typeof v.message === "string" ? v.message : JSON.stringify(mask(k, v));
      const code = typeof v.code === "string" ? ` (${v.code})` : "";
      fields.push(`${k}=${fieldText(m + code)}`);
      continue;
    }
    fields.push(`${k}=${fieldText(mask(k, v))}`);
  }
  const compText = typeof comp === "string" && comp ? ` [${comp}]` : "";
  return `${time} ${lvl}${compText} ${msg}${fields.length ? `  ${fields.join(" ")}` : ""}`;
}
