/**
 * Why the daemon could not start, kept where every starter can read it: the daemon writes
 * `<state>/last-start-error.json` (0600, in its 0700 state dir) when it exits for a configuration
 * error or an unusable directory, and removes it once it has started. The shim answers its client
 * with it, `loxmcp start` and `loxmcp status` print it; this is how the person and the AI learn
 * the key and the fix instead of "daemon not reachable". Messages are one line and never hold a
 * password (the daemon scrubs them before writing).
 */
import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { ensurePrivateDir, type LoxmcpPaths } from "./paths.js";

export const START_ERROR_FILE = "last-start-error.json";

/** One configuration problem as the daemon reports it (`loxmcpd --check-config --json` too). */
export interface StartProblem {
  key: string;
  message: string;
  line?: number;
  column?: number;
}

export interface StartErrorRecord {
  /** The daemon process that failed. */
  pid: number;
  /** ISO time of the failure. */
  at: string;
  /** Its exit code (78: configuration error or unusable directory). */
  exitCode: number;
  /** One line: what is wrong and how to fix it (without a "loxmcpd: " prefix). */
  message: string;
  /** Every configuration problem, when there were several. */
  problems?: StartProblem[];
}

export function startErrorPath(paths: Pick<LoxmcpPaths, "state">): string {
  return join(paths.state, START_ERROR_FILE);
}

/** Best effort (the state dir may be the very thing that is unusable): never throws. */
export function writeStartError(paths: Pick<LoxmcpPaths, "state">, rec: StartErrorRecord): boolean {
  const file = startErrorPath(paths);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    ensurePrivateDir(paths.state); // a first start may fail before anything created it
    writeFileSync(tmp, `${JSON.stringify(rec)}\n`, { mode: 0o600, flag: "w" });
    renameSync(tmp, file);
    return true;
  } catch {
    try {
      unlinkSync(tmp);
    } catch {
      // nothing written
    }
    return false;
  }
}

export function clearStartError(paths: Pick<LoxmcpPaths, "state">): void {
  try {
    unlinkSync(startErrorPath(paths));
  } catch {
    // not there
  }
}

/**
 * The last start error, if the file is there, a regular file of ours (a link is not followed)
 * and well-formed; anything else reads as none.
 */
export function readStartError(paths: Pick<LoxmcpPaths, "state">): StartErrorRecord | undefined {
  let fd: number;
  try {
    fd = openSync(
      startErrorPath(paths),
      constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0),
    );
  } catch {
    return undefined;
  }
  try {
    const st = fstatSync(fd);
    const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
    if (!st.isFile() || st.size > 256 * 1024 || (uid !== undefined && st.uid !== uid)) return undefined;
    const buf = Buffer.alloc(st.size);
    let got = 0;
    while (got < buf.length) {
      const n = readSync(fd, buf, got, buf.length - got, got);
      if (n === 0) break;
      got += n;
    }
    const v = JSON.parse(buf.subarray(0, got).toString("utf8")) as Record<string, unknown>;
    if (typeof v.message !== "string" || typeof v.at !== "string") return undefined;
    const rec: StartErrorRecord = {
      pid: typeof v.pid === "number" ? v.pid : 0,
      at: v.at,
      exitCode: typeof v.exitCode === "number" ? v.exitCode : 78,
      message: oneLine(v.message),
    };
    if (Array.isArray(v.problems)) {
      rec.problems = v.problems
        .filter(
          (p): p is StartProblem =>
            typeof p === "object" && p !== null && typeof p.key === "string" && typeof p.message === "string",
        )
        .map((p) => {
          const out: StartProblem = { key: p.key, message: oneLine(p.message) };
          if (typeof p.line === "number") out.line = p.line;
          if (typeof p.column === "number") out.column = p.column;
          return out;
        });
    }
    return rec;
  } catch {
    return undefined;
  } finally {
    closeSync(fd);
  }
}

function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, " ").slice(0, 4000);
}
