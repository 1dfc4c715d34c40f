/**
 * `loxmcp logs [-f] [-n N] [--level L] [--json]`: readable lines from the daemon's pino log
 * file (`paths.logFile`). The file holds no secrets by design; values under secret-looking keys
 * are masked here anyway.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import {
  CliError,
  type CommandContext,
  type CommandSpec,
  optBool,
  optNumber,
  optString,
  parseCount,
} from "../command.js";
import { delay } from "../daemon-client.js";
import { formatLocalTime, isRecord, SECRET_KEY, useColor } from "../format.js";

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

/** Reads the last `n` lines passing `keep` by scanning the file backwards in chunks. */
export function tailLines(
  file: string,
  n: number,
  keep: (l: LogLine) => boolean,
): { lines: LogLine[]; size: number } {
  const fd = openSync(file, "r");
  try {
    const size = statSync(file).size;
    const found: LogLine[] = [];
    let pos = size;
    let carry = Buffer.alloc(0);
    const chunk = 64 * 1024;
    while (pos > 0 && found.length < n) {
      const len = Math.min(chunk, pos);
      pos -= len;
      const buf = Buffer.alloc(len);
      readSync(fd, buf, 0, len, pos);
      const data = Buffer.concat([buf, carry]);
      const parts = data.toString("utf8").split("\n");
      // the first part may be incomplete unless we reached the start of the file
      carry = pos > 0 ? Buffer.from(parts.shift() ?? "", "utf8") : Buffer.alloc(0);
      for (let i = parts.length - 1; i >= 0 && found.length < n; i--) {
        const raw = (parts[i] ?? "").replace(/\r$/, "");
        if (!raw.trim()) continue;
        const l = parseLogLine(raw);
        if (keep(l)) found.push(l);
      }
    }
    return { lines: found.reverse(), size };
  } finally {
    closeSync(fd);
  }
}

/** Follows the file from `offset`: new lines, truncation (restart from 0) and rotation (new inode). */
async function follow(
  file: string,
  offset: number,
  emit: (l: LogLine) => void,
  keep: (l: LogLine) => boolean,
  stop: { stopped: boolean },
): Promise<void> {
  let ino = existsSync(file) ? statSync(file).ino : -1;
  let pos = offset;
  let partial = "";
  while (!stop.stopped) {
    let st: ReturnType<typeof statSync> | undefined;
    try {
      st = statSync(file);
    } catch {
      st = undefined;
    }
    if (st) {
      if (st.ino !== ino) {
        ino = st.ino;
        pos = 0;
        partial = "";
      } else if (st.size < pos) {
        pos = 0;
        partial = "";
      }
      if (st.size > pos) {
        const fd = openSync(file, "r");
        try {
          const len = st.size - pos;
          const buf = Buffer.alloc(len);
          const got = readSync(fd, buf, 0, len, pos);
          pos += got;
          const parts = (partial + buf.subarray(0, got).toString("utf8")).split("\n");
          partial = parts.pop() ?? "";
          for (const raw of parts) {
            const r = raw.replace(/\r$/, "");
            if (!r.trim()) continue;
            const l = parseLogLine(r);
            if (keep(l)) emit(l);
          }
        } finally {
          closeSync(fd);
        }
      }
    }
    await delay(200);
  }
}

export const logsCommand: CommandSpec = {
  name: "logs",
  description: "show the daemon log as readable lines (pino JSON pretty-printed); -f follows",
  options: [
    { flags: "-f, --follow", description: "keep printing new lines (handles rotation and truncation)" },
    {
      flags: "-n, --lines <n>",
      description: "how many lines to show first",
      defaultValue: 50,
      parse: parseCount,
    },
    {
      flags: "--level <level>",
      description: "only lines at or above this level",
      choices: Object.keys(LEVELS),
    },
    { flags: "--json", description: "print the raw JSON lines (filtered) instead of pretty text" },
  ],
  async run(ctx: CommandContext, { opts }) {
    const file = ctx.paths.logFile;
    const n = optNumber(opts, "lines") ?? 50;
    const levelName = optString(opts, "level");
    const min = levelName ? (LEVELS[levelName] ?? 0) : 0;
    const keep = (l: LogLine) => (min === 0 ? true : l.level !== undefined && l.level >= min);
    const json = optBool(opts, "json");
    const color = !json && useColor(ctx.stdoutIsTTY, ctx.env);
    const emit = (l: LogLine) => ctx.out(json ? l.raw : prettyLine(l, color));
    const followMode = optBool(opts, "follow");
    let size = 0;
    if (existsSync(file)) {
      const t = tailLines(file, n, keep);
      size = t.size;
      for (const l of t.lines) emit(l);
    } else if (!followMode) {
      throw new CliError(
        "NO_LOG_FILE",
        `no daemon log at ${file} yet: the daemon has not run with these settings${ctx.env.LOXMCP_HOME ? ` (LOXMCP_HOME=${ctx.env.LOXMCP_HOME})` : ""}; start it with \`loxmcp start\``,
      );
    } else {
      ctx.err(`waiting for ${file} to appear…`);
    }
    if (!followMode) return 0;
    const stop = { stopped: false };
    const onSignal = () => {
      stop.stopped = true;
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      await follow(file, size, emit, keep, stop);
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
    return 0;
  },
};
