/**
 * `loxmcp/logs` (hardened mode's `loxmcp logs`): the daemon reads its own log for a CLI that may
 * not. The tail continues into the rotated files, a level filter applies to the tail, and a cursor
 * follows the file across rotation (renamed files found by inode) and truncation, each complete
 * line once, a line still being written never half.
 */
import { appendFileSync, mkdtempSync, renameSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readLogSince, readLogTail } from "../src/log-read.js";

let dir: string;
let file: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "logread-"));
  file = join(dir, "daemon.log");
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const line = (n: number, level = 30) => JSON.stringify({ level, msg: `line ${n}` });
const msgs = (lines: string[]) => lines.map((l) => (JSON.parse(l) as { msg: string }).msg);

describe("readLogTail", () => {
  it("no file yet: no lines and no cursor", () => {
    expect(readLogTail(file, 10)).toEqual({ lines: [], cursor: null });
  });

  it("the last N lines, continued from daemon.log.1 after a rotation; a level filter", () => {
    writeFileSync(`${file}.1`, `${line(1)}\n${line(2, 50)}\n`);
    writeFileSync(file, `${line(3)}\n${line(4, 40)}\n`);
    expect(msgs(readLogTail(file, 3).lines)).toEqual(["line 2", "line 3", "line 4"]);
    expect(msgs(readLogTail(file, 10, 40).lines)).toEqual(["line 2", "line 4"]);
  });
});

describe("readLogSince (follow)", () => {
  it("what was written since, each line once, a half-written line only once it is complete", () => {
    writeFileSync(file, `${line(1)}\n`);
    let { cursor } = readLogTail(file, 5);
    appendFileSync(file, `${line(2)}\n{"level":30,"msg":"li`);
    let r = readLogSince(file, cursor!);
    expect(msgs(r.lines)).toEqual(["line 2"]);
    cursor = r.cursor;
    appendFileSync(file, `ne 3"}\n`);
    r = readLogSince(file, cursor!);
    expect(msgs(r.lines)).toEqual(["line 3"]);
    expect(readLogSince(file, r.cursor!).lines).toEqual([]);
  });

  it("across rotations: the rest of the old file, then every newer one from its start", () => {
    writeFileSync(file, `${line(1)}\n`);
    const { cursor } = readLogTail(file, 5);
    appendFileSync(file, `${line(2)}\n`);
    renameSync(file, `${file}.1`);
    writeFileSync(file, `${line(3)}\n`);
    renameSync(`${file}.1`, `${file}.2`);
    renameSync(file, `${file}.1`);
    writeFileSync(file, `${line(4)}\n`);
    const r = readLogSince(file, cursor!);
    expect(msgs(r.lines)).toEqual(["line 2", "line 3", "line 4"]);
    expect(r.more).toBeUndefined();
  });

  it("a truncated file is read again from its start; a cursor into a file gone long ago restarts at the current one", () => {
    writeFileSync(file, `${line(1)}\n${line(2)}\n`);
    const { cursor } = readLogTail(file, 5);
    truncateSync(file, 0);
    appendFileSync(file, `${line(3)}\n`);
    expect(msgs(readLogSince(file, cursor!).lines)).toEqual(["line 3"]);
    expect(msgs(readLogSince(file, { ino: -1, pos: 999 }).lines)).toEqual(["line 3"]);
  });
});
