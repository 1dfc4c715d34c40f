/**
 * `loxmcp logs`' reading of the daemon's log file: the last lines (scanning backwards, the
 * rotated files when the current one holds too few), and following it across rotation and
 * truncation. Never through a symbolic link.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, type Stats } from "node:fs";
import { CliError } from "../../command.js";
import { delay } from "../../daemon-client.js";
import { type LogLine, parseLogLine } from "./format.js";

/** An open log file: its identity (to notice rotation) and how far it has been read. */
export interface OpenLog {
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
export function openLog(file: string, mustExist = true): OpenLog | undefined {
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
export function tailFd(fd: number, size: number, n: number, keep: (l: LogLine) => boolean): LogLine[] {
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
export function olderLines(
  file: string,
  current: OpenLog,
  n: number,
  keep: (l: LogLine) => boolean,
): LogLine[] {
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
export async function follow(
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
