/**
 * `loxmcp/logs`: the daemon's own log, read by the daemon for a CLI that cannot read the file
 * (hardened mode: daemon.log belongs to the system daemon's user). Lines are returned as written
 * (pino JSON, already redacted and scrubbed by log.ts); the CLI filters and pretty-prints them
 * exactly as it does for the file.
 *
 * - `{ lines: N }`: the last N lines of daemon.log, continued from daemon.log.1, .2 … when it holds
 *   fewer (it was just rotated), and a cursor naming where daemon.log ends now.
 * - `{ cursor }`: the lines written since that cursor (for `loxmcp logs -f`): the rest of the
 *   file the cursor points into (found by inode among the rotated ones), then every file after
 *   it. At most MAX_BYTES per answer; the next cursor continues where this one stopped.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync } from "node:fs";

/** At most this much log text per answer (the socket carries 4 MiB per line). */
const MAX_BYTES = 1024 * 1024;
const MAX_LINES = 10_000;
const MAX_ROTATED = 100;

export interface LogCursor {
  /** The file's inode (rotation renames files, so this follows a file across names). */
  ino: number;
  /** Byte offset of the next unread line. */
  pos: number;
}

export interface LogChunk {
  lines: string[];
  cursor: LogCursor | null;
  /** More was written than one answer carries: ask again with `cursor` at once. */
  more?: boolean;
}

interface Opened {
  fd: number;
  ino: number;
  size: number;
}

function open(file: string): Opened | undefined {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0));
  } catch {
    return undefined; // missing, or a link (the daemon never writes through one)
  }
  const st = fstatSync(fd);
  if (!st.isFile()) {
    closeSync(fd);
    return undefined;
  }
  return { fd, ino: st.ino, size: st.size };
}

/** Complete lines of `fd` from `pos` (at most `maxBytes`); the position after the last one. */
function readFrom(f: Opened, pos: number, maxBytes: number): { lines: string[]; next: number } {
  const len = Math.max(0, Math.min(f.size - pos, maxBytes));
  if (len === 0) return { lines: [], next: pos };
  const buf = Buffer.alloc(len);
  const got = readSync(f.fd, buf, 0, len, pos);
  const text = buf.subarray(0, got);
  const lastNl = text.lastIndexOf(10);
  if (lastNl < 0) return { lines: [], next: pos };
  const lines = text
    .subarray(0, lastNl)
    .toString("utf8")
    .split("\n")
    .filter((l) => l.trim() !== "");
  return { lines, next: pos + lastNl + 1 };
}

/** pino's numeric level of a JSON line (undefined for anything else, e.g. a crash trace). */
function levelOf(line: string): number | undefined {
  try {
    const o = JSON.parse(line) as { level?: unknown };
    return typeof o.level === "number" ? o.level : undefined;
  } catch {
    return undefined;
  }
}

/** The last `n` lines (at or above `minLevel`, when given) of the first `size` bytes of `fd`. */
function tail(f: Opened, n: number, minLevel = 0): string[] {
  const found: string[] = [];
  let pos = f.size;
  let carry = Buffer.alloc(0);
  let budget = MAX_BYTES * 4;
  while (pos > 0 && found.length < n && budget > 0) {
    const len = Math.min(64 * 1024, pos);
    pos -= len;
    budget -= len;
    const buf = Buffer.alloc(len);
    readSync(f.fd, buf, 0, len, pos);
    const parts = Buffer.concat([buf, carry]).toString("utf8").split("\n");
    carry = pos > 0 ? Buffer.from(parts.shift() ?? "", "utf8") : Buffer.alloc(0);
    for (let i = parts.length - 1; i >= 0 && found.length < n; i--) {
      const raw = (parts[i] ?? "").replace(/\r$/, "");
      if (raw.trim() && (minLevel === 0 || (levelOf(raw) ?? 0) >= minLevel)) found.push(raw);
    }
  }
  return found.reverse();
}

/**
 * The last `n` lines at or above `minLevel` (daemon.log, then the rotated files when it holds
 * fewer), and where daemon.log ends.
 */
export function readLogTail(file: string, n: number, minLevel = 0): LogChunk {
  const want = Math.max(0, Math.min(Math.floor(n), MAX_LINES));
  const head = open(file);
  if (!head) return { lines: [], cursor: null };
  try {
    let lines = tail(head, want, minLevel);
    for (let i = 1; i <= MAX_ROTATED && lines.length < want; i++) {
      const older = open(`${file}.${i}`);
      if (!older) break;
      try {
        if (older.ino !== head.ino) lines = tail(older, want - lines.length, minLevel).concat(lines);
      } finally {
        closeSync(older.fd);
      }
    }
    // only whole lines are returned: the cursor starts after the last newline
    const cursor = { ino: head.ino, pos: head.size };
    return { lines, cursor };
  } finally {
    closeSync(head.fd);
  }
}

/** The lines written since `cursor`, across rotation; the cursor for the next call. */
export function readLogSince(file: string, cursor: LogCursor): LogChunk {
  // The files newest first: daemon.log, daemon.log.1, … up to the one the cursor points into.
  const chain: string[] = [file];
  let found = inoAt(file) === cursor.ino;
  for (let i = 1; !found && i <= MAX_ROTATED; i++) {
    const name = `${file}.${i}`;
    const ino = inoAt(name);
    if (ino === undefined) break;
    chain.push(name);
    found = ino === cursor.ino;
  }
  if (!found) {
    // Rotated away beyond what is kept, or a new log: start over at the current file.
    return readLogSince(file, { ino: inoAt(file) ?? -1, pos: 0 });
  }
  const lines: string[] = [];
  let budget = MAX_BYTES;
  let pos = cursor.pos;
  // oldest (the cursor's file) first, then each newer one from its start
  for (let i = chain.length - 1; i >= 0; i--) {
    const f = open(chain[i] as string);
    if (!f) continue;
    try {
      if (i === chain.length - 1 && f.ino !== cursor.ino) return readLogSince(file, cursor); // renamed meanwhile
      const start = i === chain.length - 1 ? (f.size < pos ? 0 : pos) : 0; // truncated: from its start
      const r = readFrom(f, start, budget);
      lines.push(...r.lines);
      budget -= r.next - start;
      if (budget <= 0 || lines.length >= MAX_LINES) {
        return { lines, cursor: { ino: f.ino, pos: r.next }, more: true };
      }
      // the file written now: a line still being written waits for the next call
      if (i === 0) return { lines, cursor: { ino: f.ino, pos: r.next } };
      // a rotated file, read to its end: go on with the next newer one
    } finally {
      closeSync(f.fd);
    }
    pos = 0;
  }
  return { lines, cursor: { ino: cursor.ino, pos } };
}

function inoAt(path: string): number | undefined {
  try {
    const st = lstatSync(path);
    return st.isFile() ? st.ino : undefined;
  } catch {
    return undefined;
  }
}
