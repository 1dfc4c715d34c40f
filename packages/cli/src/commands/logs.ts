/**
 * `loxmcp logs [-f] [-n N] [--level L] [--json]`: readable lines from the daemon's pino log
 * file (`paths.logFile`, and the rotated `daemon.log.1` … when it holds fewer than N lines);
 * `-f` follows it across rotation and truncation. The file holds no secrets by design; values
 * under secret-looking keys are masked here anyway.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, type Stats } from "node:fs";
import {
  CliError,
  type CommandContext,
  type CommandSpec,
  optBool,
  optNumber,
  optString,
  parseCount,
} from "../command.js";
import { callDaemon, DaemonNotRunningError, delay } from "../daemon-client.js";
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

/** An open log file: its identity (to notice rotation) and how far it has been read. */
interface OpenLog {
  fd: number;
  dev: number;
  ino: number;
  size: number;
  /** Next byte to read. */
  pos: number;
  /** Bytes after the last newline read so far. */
  partial: Buffer;
}

/**
 * Opens a log file to read without following a symbolic link (the daemon never writes through
 * one, so a link there is nothing of the daemon's). undefined when there is no such file, or
 * when `mustExist` is false and what is there is a link or not a regular file.
 */
function openLog(file: string, mustExist = true): OpenLog | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    if (!mustExist && (code === "ELOOP" || code === "EMLINK" || code === "EISDIR")) return undefined;
    if (code === "ELOOP" || code === "EMLINK") {
      throw new CliError(
        "UNSAFE_LOG_FILE",
        `${file} is a symbolic link, not the daemon's log; remove it (the daemon refuses it too)`,
      );
    }
    throw e;
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    if (!mustExist) return undefined;
    throw new CliError("UNSAFE_LOG_FILE", `${file} is not a regular file; remove it`);
  }
  return { fd, dev: st.dev, ino: st.ino, size: st.size, pos: 0, partial: Buffer.alloc(0) };
}

/** The last `n` lines passing `keep` in the first `size` bytes of `fd`, scanning backwards in chunks. */
function tailFd(fd: number, size: number, n: number, keep: (l: LogLine) => boolean): LogLine[] {
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
  return found.reverse();
}

/** Reads the last `n` lines passing `keep` by scanning the file backwards in chunks. */
export function tailLines(
  file: string,
  n: number,
  keep: (l: LogLine) => boolean,
): { lines: LogLine[]; size: number } {
  const log = openLog(file);
  if (!log) throw new CliError("NO_LOG_FILE", `no daemon log at ${file}`);
  try {
    return { lines: tailFd(log.fd, log.size, n, keep), size: log.size };
  } finally {
    closeSync(log.fd);
  }
}

/**
 * Up to `n` lines passing `keep` from the rotated files `<file>.1`, `.2` … (newest first, up to
 * the first one missing), oldest line first. `current` is skipped: the daemon may have rotated
 * the file just opened as `<file>` to `<file>.1` in between.
 */
function olderLines(file: string, current: OpenLog, n: number, keep: (l: LogLine) => boolean): LogLine[] {
  let out: LogLine[] = [];
  for (let i = 1; i <= 100 && out.length < n; i++) {
    let log: OpenLog | undefined;
    try {
      log = openLog(`${file}.${i}`, false);
    } catch {
      break;
    }
    if (!log) break;
    try {
      if (log.dev === current.dev && log.ino === current.ino) continue;
      out = tailFd(log.fd, log.size, n - out.length, keep).concat(out);
    } finally {
      closeSync(log.fd);
    }
  }
  return out;
}

/** Emits every complete line from `log.pos` to the end of the file; restarts at 0 after a truncation. */
function readNew(log: OpenLog, emit: (raw: string) => void): void {
  if (fstatSync(log.fd).size < log.pos) {
    log.pos = 0;
    log.partial = Buffer.alloc(0);
  }
  const buf = Buffer.alloc(64 * 1024);
  for (;;) {
    const got = readSync(log.fd, buf, 0, buf.length, log.pos);
    if (got === 0) return;
    log.pos += got;
    let data = Buffer.concat([log.partial, buf.subarray(0, got)]);
    let nl = data.indexOf(10);
    while (nl !== -1) {
      emit(data.subarray(0, nl).toString("utf8"));
      data = data.subarray(nl + 1);
      nl = data.indexOf(10);
    }
    log.partial = Buffer.from(data);
  }
}

const sameFile = (a: { dev: number; ino: number }, b: { dev: number; ino: number }) =>
  a.dev === b.dev && a.ino === b.ino;

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/**
 * After `old` left the path: the files written since, oldest first, ending with the one now at
 * `file`. The daemon may have rotated more than once between two polls: `old` is then
 * `<file>.k` and `<file>.k-1` … `<file>.1` came after it. They are all opened, then `old` must
 * still be `<file>.k` (any rotation in between renames every file, and the scan is repeated).
 */
function filesAfter(file: string, old: OpenLog): OpenLog[] {
  for (let attempt = 0; attempt < 5; attempt++) {
    let k: number | undefined;
    for (let i = 1; i <= 100; i++) {
      const st = lstatOrUndefined(`${file}.${i}`);
      if (!st) break;
      if (sameFile(st, old)) {
        k = i;
        break;
      }
    }
    const opened: OpenLog[] = [];
    const head = openLog(file, false);
    for (let i = (k ?? 1) - 1; i >= 1; i--) {
      const l = openLog(`${file}.${i}`, false);
      if (l) opened.push(l);
    }
    const st = k === undefined ? undefined : lstatOrUndefined(`${file}.${k}`);
    if (k === undefined || (st && sameFile(st, old))) {
      if (head && !opened.some((l) => sameFile(l, head))) opened.push(head);
      else if (head) closeSync(head.fd);
      return opened;
    }
    for (const l of opened) closeSync(l.fd);
    if (head) closeSync(head.fd);
  }
  const head = openLog(file, false);
  return head ? [head] : [];
}

/**
 * Follows the log from where `start` was read to (or from the start of `file` once it appears).
 * Every poll first looks at what is at the path, then reads the open file to its end: when the
 * path names another file (the daemon rotated: renamed the old one, opened a fresh one), the old
 * file is complete by then, so nothing written before the rotation is missed; the files written
 * since (more than one if it rotated again in between) are read from their first byte. A
 * truncated file is read again from its start.
 */
async function follow(
  file: string,
  start: OpenLog | undefined,
  emit: (l: LogLine) => void,
  keep: (l: LogLine) => boolean,
  stop: { stopped: boolean },
): Promise<void> {
  const emitRaw = (raw: string) => {
    const r = raw.replace(/\r$/, "");
    if (!r.trim()) return;
    const l = parseLogLine(r);
    if (keep(l)) emit(l);
  };
  /** Reads a file the daemon no longer writes to its end, last unterminated line included. */
  const finish = (l: OpenLog) => {
    try {
      readNew(l, emitRaw);
      if (l.partial.length > 0) emitRaw(l.partial.toString("utf8"));
    } finally {
      closeSync(l.fd);
    }
  };
  let cur = start;
  try {
    while (!stop.stopped) {
      const atPath = lstatOrUndefined(file);
      if (cur && atPath && !sameFile(atPath, cur)) {
        const old = cur;
        cur = undefined;
        finish(old);
        const next = filesAfter(file, old);
        cur = next.pop();
        for (const l of next) finish(l);
      } else if (!cur && atPath) {
        cur = openLog(file, false);
      }
      if (cur) readNew(cur, emitRaw);
      await delay(200);
    }
  } finally {
    if (cur) closeSync(cur.fd);
  }
}

/**
 * Hardened mode: the log file belongs to the system daemon's user, so the daemon reads it
 * (`loxmcp/logs`): the last lines, then — following — what was written since its cursor.
 */
async function logsThroughDaemon(
  ctx: CommandContext,
  n: number,
  min: number,
  keep: (l: LogLine) => boolean,
  emit: (l: LogLine) => void,
  followMode: boolean,
): Promise<number> {
  type Chunk = { lines?: unknown; cursor?: unknown; more?: unknown };
  const show = (r: Chunk) => {
    for (const raw of Array.isArray(r.lines) ? r.lines : []) {
      if (typeof raw !== "string") continue;
      const l = parseLogLine(raw);
      if (keep(l)) emit(l);
    }
  };
  const first = (await callDaemon(ctx.paths.socket, "loxmcp/logs", { lines: n, minLevel: min })) as Chunk;
  show(first);
  if (!followMode) return 0;
  let cursor = first.cursor ?? null;
  const stop = { stopped: false };
  const onSignal = () => {
    stop.stopped = true;
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let away = false;
  try {
    while (!stop.stopped) {
      let more = false;
      try {
        const r = (await callDaemon(
          ctx.paths.socket,
          "loxmcp/logs",
          cursor ? { cursor } : { lines: 0 },
        )) as Chunk;
        if (away) ctx.err("the daemon is back");
        away = false;
        show(r);
        cursor = r.cursor ?? cursor;
        more = r.more === true;
      } catch (err) {
        if (!(err instanceof DaemonNotRunningError)) throw err;
        if (!away) ctx.err(`the daemon is not running; waiting for it (${ctx.paths.socket})…`);
        away = true;
      }
      if (!more) await delay(away ? 1_000 : 300);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  return 0;
}

export const logsCommand: CommandSpec = {
  name: "logs",
  description:
    "show the daemon log as readable lines (pino JSON pretty-printed); -f follows (hardened mode: read through the daemon)",
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
    if (ctx.paths.system) return logsThroughDaemon(ctx, n, min, keep, emit, followMode);
    const log = openLog(file);
    if (log) {
      try {
        const lines = tailFd(log.fd, log.size, n, keep);
        // A file just rotated holds few lines: the rest come from daemon.log.1, .2 …
        const older = lines.length < n ? olderLines(file, log, n - lines.length, keep) : [];
        for (const l of older) emit(l);
        for (const l of lines) emit(l);
        log.pos = log.size;
      } catch (e) {
        closeSync(log.fd);
        throw e;
      }
      if (!followMode) closeSync(log.fd);
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
      await follow(file, log, emit, keep, stop);
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
    return 0;
  },
};
