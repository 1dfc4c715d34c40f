/**
 * `loxmcp doctor`'s file checks: owner and mode of the per-user directories and files, whether
 * the daemon can write its directories, and the stat helpers the hardened-mode checks share.
 */
import { closeSync, constants, existsSync, lstatSync, openSync } from "node:fs";
import { dirWritableProblem } from "@loxmcp/common";
import type { CommandContext } from "../../command.js";
import { envFilePath } from "../../dotenv.js";
import { octal } from "../../format.js";
import type { Check, CheckLevel } from "./check.js";

export function modeOf(
  path: string,
): { mode: number; uid: number; isDir: boolean; isLink: boolean } | undefined {
  try {
    const st = lstatSync(path);
    return { mode: st.mode & 0o777, uid: st.uid, isDir: st.isDirectory(), isLink: st.isSymbolicLink() };
  } catch {
    return undefined;
  }
}

const myUid = () => (typeof process.getuid === "function" ? process.getuid() : undefined);

function checkMode(
  checks: Check[],
  id: string,
  what: string,
  path: string,
  want: number,
  missing: Check | undefined,
  looseLevel: CheckLevel = "problem",
) {
  const st = modeOf(path);
  if (!st) {
    if (missing) checks.push(missing);
    return;
  }
  const uid = myUid();
  if (st.isLink) {
    checks.push({
      id,
      level: "problem",
      message: `${what} ${path} is a symlink`,
      fix: `remove it (rm ${path}); loxmcp recreates it`,
    });
  } else if (uid !== undefined && st.uid !== uid) {
    checks.push({
      id,
      level: "problem",
      message: `${what} ${path} is owned by uid ${st.uid}, not by you (uid ${uid})`,
      fix: `chown $(id -u) ${path}`,
    });
  } else if ((st.mode & ~want & 0o777) !== 0) {
    checks.push({
      id,
      level: looseLevel,
      message: `${what} ${path} has mode ${octal(st.mode)}, others can reach it`,
      fix: `chmod ${want.toString(8)} ${path}`,
    });
  } else {
    checks.push({ id, level: "ok", message: `${what} ${path} (${octal(st.mode)})` });
  }
}

/** Can this process open `file` for reading? "yes", "no" (refused), or "missing". */
export function readable(file: string): "yes" | "no" | "missing" {
  try {
    closeSync(openSync(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0)));
    return "yes";
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT" ? "missing" : "no";
  }
}

export function lstatSafe(p: string): { gid: number } | undefined {
  try {
    return lstatSync(p);
  } catch {
    return undefined;
  }
}

/** Per-user mode: config/state/log/runtime directories and files are ours, private. */
export function perUserFileChecks(ctx: CommandContext, checks: Check[]): void {
  const p = ctx.paths;
  const later = (id: string, what: string, path: string): Check => ({
    id,
    level: "info",
    message: `${what} ${path} does not exist yet (created on the first daemon start)`,
  });
  checkMode(checks, "dir.config", "config dir", p.config, 0o700, {
    id: "dir.config",
    level: "info",
    message: `config dir ${p.config} does not exist yet`,
    fix: "run `loxmcp init`",
  });
  checkMode(checks, "dir.state", "state dir", p.state, 0o700, later("dir.state", "state dir", p.state));
  checkMode(checks, "dir.log", "log dir", p.log, 0o700, later("dir.log", "log dir", p.log));
  checkMode(
    checks,
    "dir.runtime",
    "runtime dir",
    p.runtime,
    0o700,
    later("dir.runtime", "runtime dir", p.runtime),
  );
  // Directories it must create or write: a read-only LOXMCP_HOME names itself here.
  for (const [id, dir] of [
    ["config", p.config],
    ["state", p.state],
    ["log", p.log],
    ["runtime", p.runtime],
  ] as const) {
    const blocked = dirWritableProblem(dir);
    if (blocked) {
      const cut = blocked.message.lastIndexOf(" — ");
      checks.push({
        id: `dir.${id}.writable`,
        level: "problem",
        message: cut < 0 ? blocked.message : blocked.message.slice(0, cut),
        fix: cut < 0 ? "see the message" : blocked.message.slice(cut + 3),
      });
    }
  }
  const envFile = envFilePath(p.config);
  checkMode(checks, "file.env", ".env", envFile, 0o600, undefined);
  checkMode(checks, "file.db", "database", p.db, 0o600, undefined);
  for (const suffix of ["-wal", "-shm"])
    checkMode(checks, `file.db${suffix}`, "database", p.db + suffix, 0o600, undefined);
  checkMode(checks, "file.log", "log file", p.logFile, 0o600, undefined, "warn");
  if (existsSync(p.socket)) checkMode(checks, "socket", "socket", p.socket, 0o600, undefined);
}
