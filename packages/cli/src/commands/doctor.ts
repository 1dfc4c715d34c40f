/**
 * `loxmcp doctor [--json]`: checks Node, file modes, configuration, the daemon, the service and
 * the clock; every finding names a concrete fix. Exit 1 when any check found a problem.
 * The configuration is checked by the daemon itself (`loxmcpd --check-config --json`, every
 * problem of the environment, .env and config.json); only when that cannot run does doctor read
 * the .env to see which keys are set. Values are never printed.
 */
import { readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { systemStartHint, systemUserName } from "@loxmcp/common";
import { type CommandContext, type CommandSpec, optBool } from "../command.js";
import { formatDuration, isRecord } from "../format.js";
import type { Check, CheckLevel } from "./doctor/check.js";
import { clientConfigChecks, clientEnvChecks, pinCheck } from "./doctor/clients.js";
import { configChecks, daemonConfigChecks } from "./doctor/config.js";
import { perUserFileChecks } from "./doctor/files.js";
import { hardeningCheck, isRoot, systemChecks, systemConfigSkipped } from "./doctor/hardened.js";
import { platformFor, systemServiceFor } from "./service.js";
import { fetchStatus, hintFor, START_ERROR_HINT } from "./status.js";

export type { Check, CheckLevel } from "./doctor/check.js";

const MARK: Record<CheckLevel, string> = {
  ok: "ok  ",
  info: "info",
  warn: "warn",
  problem: "FAIL",
  skip: "skip",
};

function nodeCheck(): Check {
  const major = Number(process.versions.node.split(".")[0]);
  return major >= 20
    ? { id: "node", level: "ok", message: `Node ${process.versions.node}` }
    : {
        id: "node",
        level: "problem",
        message: `Node ${process.versions.node} is too old`,
        fix: "install Node 20 or newer",
      };
}

async function clockCheck(connect: string): Promise<Check> {
  const t0 = Date.now();
  let res: Response;
  try {
    res = await fetch(connect, { method: "HEAD", redirect: "manual", signal: AbortSignal.timeout(4_000) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const code = cause?.code ?? "";
    if (/CERT|SSL|TLS|SELF_SIGNED/i.test(code)) {
      return {
        id: "clock",
        level: "problem",
        message: `TLS to ${connect} failed (${code})`,
        fix: "a proxy or antivirus may intercept TLS; check the system clock and CA certificates",
      };
    }
    return {
      id: "clock",
      level: "skip",
      message: `clock skew not checked: ${connect} not reachable (${code || (err as Error).message})`,
    };
  }
  const t1 = Date.now();
  const date = res.headers.get("date");
  if (!date || Number.isNaN(Date.parse(date))) {
    return { id: "clock", level: "skip", message: `clock skew not checked: ${connect} sent no Date header` };
  }
  const skewSec = (Date.parse(date) - (t0 + t1) / 2) / 1000;
  if (Math.abs(skewSec) > 60) {
    return {
      id: "clock",
      level: "problem",
      message: `local clock is ${formatDuration(Math.abs(skewSec))} ${skewSec > 0 ? "behind" : "ahead of"} ${new URL(connect).host}`,
      fix: "enable time sync (timedatectl set-ntp true / System Settings → Date & Time); tokens and TLS depend on it",
    };
  }
  return {
    id: "clock",
    level: "ok",
    message: `clock within ${Math.max(1, Math.ceil(Math.abs(skewSec)))} s of ${new URL(connect).host}`,
  };
}

/**
 * The database: can the daemon write it (disk full, read-only, I/O error refuse every command),
 * and was a corrupt file set aside (`loxmcp.db.corrupt-<time>`, kept for inspection)?
 */
function storageChecks(
  ctx: CommandContext,
  status: Awaited<ReturnType<typeof fetchStatus>> | undefined,
): Check[] {
  const out: Check[] = [];
  const storage = status && isRecord(status.storage) ? status.storage : undefined;
  const db = ctx.paths.db;
  if (storage?.ok === false) {
    out.push({
      id: "storage",
      level: "problem",
      message: `the database ${db} cannot be written: ${String(storage.error ?? storage.cause)}${typeof storage.since === "string" ? ` (since ${storage.since})` : ""}; every command is refused until it can be (reads work)`,
      fix: typeof storage.fix === "string" ? storage.fix : "see `loxmcp logs -n 50`",
    });
  } else if (storage?.ok === true) {
    out.push({ id: "storage", level: "ok", message: `database ${db} writable` });
  }
  const recovered = storage && isRecord(storage.recovered) ? storage.recovered : undefined;
  let asideFiles: string[] = [];
  try {
    const dir = dirname(db);
    const base = `${basename(db)}.corrupt-`;
    asideFiles = readdirSync(dir)
      .filter((f) => f.startsWith(base) && !f.endsWith("-wal") && !f.endsWith("-shm"))
      .map((f) => join(dir, f));
  } catch {
    // no state dir yet
  }
  if (recovered && typeof recovered.from === "string") {
    const unreadable = Array.isArray(recovered.unreadable) ? recovered.unreadable.map(String) : [];
    out.push({
      id: "storage.recovered",
      level: "warn",
      message: `the database was corrupt (${String(recovered.reason ?? "")}); the daemon moved it aside to ${recovered.from} at ${String(recovered.at ?? "?")}, started a fresh one and logged in again${unreadable.length > 0 ? `; could not be copied from it: ${unreadable.join(", ")}` : ""}`,
      fix: `${unreadable.includes("approval PIN") ? "set the approval PIN again (`loxmcp pin set`) if you had one; " : ""}keep ${recovered.from} for inspection (sqlite3 … "PRAGMA integrity_check") or delete it; then check the disk`,
    });
  } else if (asideFiles.length > 0) {
    out.push({
      id: "storage.recovered",
      level: "info",
      message: `corrupt database file(s) set aside earlier: ${asideFiles.join(", ")}`,
      fix: "inspect or delete them; the daemon does not need them",
    });
  }
  return out;
}

export async function runChecks(ctx: CommandContext): Promise<Check[]> {
  const checks: Check[] = [nodeCheck()];
  const p = ctx.paths;
  if (p.system) {
    checks.push({
      id: "mode",
      level: "ok",
      message: `hardened mode: the system daemon runs as ${systemUserName(p.system)}, socket ${p.socket}`,
    });
    checks.push(...systemChecks(p.system));
  } else {
    checks.push({
      id: "mode",
      level: "info",
      message: `per-user mode: the daemon runs as you${ctx.env.LOXMCP_HOME ? ` (LOXMCP_HOME=${ctx.env.LOXMCP_HOME})` : ""}`,
    });
    perUserFileChecks(ctx, checks);
  }
  const connect =
    p.system && !isRoot()
      ? systemConfigSkipped(checks, p.system)
      : (daemonConfigChecks(ctx, checks) ?? configChecks(ctx, checks));
  return await daemonAndRest(ctx, checks, connect);
}

async function daemonAndRest(ctx: CommandContext, checks: Check[], connect: string): Promise<Check[]> {
  let status: Awaited<ReturnType<typeof fetchStatus>> | undefined;
  try {
    const s = await fetchStatus(ctx, 3_000);
    status = s;
    if (s.state === "ready") {
      checks.push({
        id: "daemon",
        level: "ok",
        message: `daemon ready (pid ${s.pid}, ${s.clients.length} client(s))`,
      });
    } else if (s.state === "down" && s.startError) {
      checks.push({
        id: "daemon",
        level: "problem",
        message: `daemon not running: ${s.reason ?? "its last start failed"}`,
        fix: START_ERROR_HINT,
      });
    } else if (s.state === "down") {
      checks.push({
        id: "daemon",
        // hardened mode: nobody but its service manager starts the system daemon
        level: ctx.paths.system ? "problem" : "warn",
        message: ctx.paths.system
          ? "system daemon not running: MCP clients get an error until it runs"
          : "daemon not running (MCP clients start it on demand)",
        fix: ctx.paths.system
          ? `\`${systemStartHint(ctx.paths.system.platform)}\` (clients never start a per-user daemon in its place)`
          : "`loxmcp start` or `loxmcp service install`",
      });
    } else {
      const level: CheckLevel = s.state === "auth_failed" || s.state === "degraded" ? "problem" : "warn";
      checks.push({
        id: "daemon",
        level,
        message: `daemon ${s.state}${s.reason ? `: ${s.reason}` : ""}`,
        fix: hintFor(s.state) ?? "",
      });
    }
  } catch (err) {
    checks.push({
      id: "daemon",
      level: "problem",
      message: (err as Error).message,
      fix: "see the message; `loxmcp logs -n 50`",
    });
  }

  try {
    const svc = ctx.paths.system ? systemServiceFor(ctx, {}) : platformFor(ctx);
    const st = svc.state();
    if (!st.installed) {
      checks.push({
        id: "service",
        level: "info",
        message: `no ${svc.kind} service installed (optional)`,
        fix: "`loxmcp service install` to start the daemon at login",
      });
    } else if (st.active === false) {
      checks.push({
        id: "service",
        level: "warn",
        message: `${svc.kind} service installed but not running (${st.detail})`,
        fix: ctx.paths.system
          ? `\`${systemStartHint(ctx.paths.system.platform)}\`, then \`loxmcp logs -n 50\` if it stops again`
          : "`loxmcp service start`, then `loxmcp logs -n 50` if it stops again",
      });
    } else {
      checks.push({ id: "service", level: "ok", message: `${svc.kind} service: ${st.detail}` });
    }
  } catch (err) {
    checks.push({ id: "service", level: "skip", message: `service not checked: ${(err as Error).message}` });
  }

  checks.push(...storageChecks(ctx, status));
  checks.push(...clientConfigChecks(ctx));
  checks.push(...clientEnvChecks(ctx));
  checks.push(pinCheck(ctx, status));
  const hardening = hardeningCheck(ctx, status);
  if (hardening) checks.push(hardening);
  checks.push(await clockCheck(connect));
  return checks.map((c) => (c.fix === "" ? { id: c.id, level: c.level, message: c.message } : c));
}

export const doctorCommand: CommandSpec = {
  name: "doctor",
  description:
    "check Node, file permissions, configuration, daemon, service and clock; each finding with a fix",
  options: [{ flags: "--json", description: "print one JSON object { ok, checks: [...] }" }],
  async run(ctx, { opts }) {
    const checks = await runChecks(ctx);
    const ok = !checks.some((c) => c.level === "problem");
    if (optBool(opts, "json")) {
      ctx.out(JSON.stringify({ ok, checks }));
    } else {
      for (const c of checks) {
        ctx.out(`${MARK[c.level]}  ${c.message}`);
        if (c.fix && c.level !== "ok") ctx.out(`      fix: ${c.fix}`);
      }
      const problems = checks.filter((c) => c.level === "problem").length;
      ctx.out(ok ? "no problems found" : `${problems} problem(s) found`);
    }
    return ok ? 0 : 1;
  },
};
