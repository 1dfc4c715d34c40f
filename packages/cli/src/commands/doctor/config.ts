/**
 * `loxmcp doctor`'s configuration checks: the daemon's own check (`loxmcpd --check-config
 * --json`) and, when that cannot run, the CLI's reading of the environment and .env.
 */
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { checkSerial, isLoopbackHost, resolveDaemonCommand, splitConnectUrl } from "@loxmcp/common";
import type { CommandContext } from "../../command.js";
import { envFilePath, readDotenv } from "../../dotenv.js";
import { isRecord } from "../../format.js";
import type { Check } from "./check.js";

export function configChecks(ctx: CommandContext, checks: Check[]): string {
  const file = envFilePath(ctx.paths.config);
  let fromFile: Record<string, string> = {};
  try {
    fromFile = readDotenv(file);
  } catch {
    checks.push({
      id: "config.env",
      level: "problem",
      message: `${file} cannot be read`,
      fix: `check its owner and mode (chmod 600 ${file})`,
    });
  }
  const get = (k: string) => ctx.env[k] || fromFile[k] || undefined;
  const where = (k: string) => (ctx.env[k] ? "environment" : fromFile[k] ? ".env" : "");
  // A connect URL ending in /<serial>/mcp names the serial too (the daemon takes it from there).
  const split = splitConnectUrl(get("LOXONE_CONNECT_URL") ?? "https://connect.loxonecloud.com");
  const urlSerial = split.ok ? split.serial : undefined;
  const serial = get("LOXONE_SERIAL") ?? urlSerial;
  const serialCheck = serial ? checkSerial(serial) : undefined;
  if (!serial) {
    checks.push({
      id: "config.serial",
      level: "problem",
      message: "LOXONE_SERIAL is not set",
      fix: "run `loxmcp init` (or set LOXONE_SERIAL)",
    });
  } else if (!serialCheck?.ok) {
    checks.push({
      id: "config.serial",
      level: "problem",
      message: `LOXONE_SERIAL "${serial}" is not a Miniserver serial: ${serialCheck?.problem ?? ""}`,
      fix: "copy it from Loxone Config → Miniserver → Serial number and run `loxmcp init`",
    });
  } else {
    checks.push({
      id: "config.serial",
      level: "ok",
      message: get("LOXONE_SERIAL")
        ? `LOXONE_SERIAL set (${where("LOXONE_SERIAL")})`
        : `serial ${urlSerial} taken from LOXONE_CONNECT_URL (${where("LOXONE_CONNECT_URL")})`,
    });
  }
  if (!split.ok) {
    checks.push({
      id: "config.connect",
      level: "problem",
      message: `LOXONE_CONNECT_URL: ${split.problem}`,
      fix: "set LOXONE_CONNECT_URL to the base (https://connect.loxonecloud.com) or unset it",
    });
  } else if (urlSerial && serialCheck?.ok && get("LOXONE_SERIAL") && serialCheck.serial !== urlSerial) {
    checks.push({
      id: "config.connect",
      level: "problem",
      message: `LOXONE_CONNECT_URL names Miniserver ${urlSerial} but LOXONE_SERIAL is ${serialCheck.serial}: they conflict (the daemon refuses to start)`,
      fix: `set LOXONE_CONNECT_URL to ${split.base} (the base only) and keep the serial in LOXONE_SERIAL`,
    });
  }
  const user = get("LOXONE_USER");
  checks.push(
    user
      ? { id: "config.user", level: "ok", message: `LOXONE_USER set (${where("LOXONE_USER")})` }
      : {
          id: "config.user",
          level: "problem",
          message: "LOXONE_USER is not set",
          fix: "run `loxmcp init` (or set LOXONE_USER)",
        },
  );
  const pwKey = ["LOXONE_PASSWORD", "LOXONE_PASSWORD_COMMAND", "LOXONE_PASSWORD_FILE"].find((k) => get(k));
  checks.push(
    pwKey
      ? { id: "config.password", level: "ok", message: `${pwKey} set (${where(pwKey)}; value not shown)` }
      : {
          id: "config.password",
          level: "problem",
          message: "no password configured (LOXONE_PASSWORD or LOXONE_PASSWORD_COMMAND)",
          fix: "run `loxmcp init`",
        },
  );
  const connect = get("LOXONE_CONNECT_URL") ?? "https://connect.loxonecloud.com";
  try {
    const u = new URL(connect);
    const loopback = isLoopbackHost(u.hostname);
    if (u.protocol === "http:" && !loopback) {
      checks.push({
        id: "config.connect",
        level: "problem",
        message: `LOXONE_CONNECT_URL ${connect} is plain http to a remote host`,
        fix: "use https:// (http:// is only for a loopback simulator)",
      });
    }
  } catch {
    checks.push({
      id: "config.connect",
      level: "problem",
      message: `LOXONE_CONNECT_URL "${connect}" is not a URL`,
      fix: "fix or unset LOXONE_CONNECT_URL",
    });
  }
  return connect;
}

/** One problem as `loxmcpd --check-config --json` reports it. */
interface DaemonConfigProblem {
  key: string;
  message: string;
}

/** Check ids for the keys `loxmcp init` sets (stable for scripts), `config.<key>` for the rest. */
function configCheckId(key: string): string {
  if (key === "LOXONE_SERIAL") return "config.serial";
  if (key === "LOXONE_USER") return "config.user";
  if (key.startsWith("LOXONE_PASSWORD")) return "config.password";
  if (key === "LOXONE_CONNECT_URL") return "config.connect";
  return `config.${key}`;
}

function configFix(key: string, configDir: string): string {
  if (/^LOXONE_(SERIAL|USER|PASSWORD)/.test(key)) return `run \`loxmcp init\` (or set ${key})`;
  if (key.startsWith("config.json")) return `edit ${join(configDir, "config.json")} as the message says`;
  return "as the message says";
}

/**
 * The configuration as the daemon itself sees it: `loxmcpd --check-config --json` runs the
 * daemon's own validation over the environment, .env and config.json and reports EVERY problem
 * (the CLI never imports the daemon's code). Returns the connect URL for the clock check, or
 * undefined when the daemon could not be run (the caller then falls back to its own checks).
 */
export function daemonConfigChecks(ctx: CommandContext, checks: Check[]): string | undefined {
  const cmd = resolveDaemonCommand(ctx.env);
  const r = spawnSync(cmd.command, [...cmd.args, "--check-config", "--json"], {
    env: ctx.env as NodeJS.ProcessEnv,
    encoding: "utf8",
    timeout: 20_000,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let doc: unknown;
  try {
    doc = JSON.parse(r.stdout.trim().split("\n").pop() ?? "");
  } catch {
    doc = undefined;
  }
  if (!isRecord(doc) || typeof doc.ok !== "boolean" || !Array.isArray(doc.problems)) {
    const why = r.error
      ? r.error.message
      : `exit ${String(r.status ?? r.signal)}${r.stderr.trim() ? `: ${r.stderr.trim().split("\n")[0]}` : ""}`;
    checks.push({
      id: "config.check",
      level: "warn",
      message: `could not run the daemon's own configuration check (${[cmd.command, ...cmd.args].join(" ")} --check-config: ${why}); the checks below read only the environment and .env`,
      fix: "install the daemon next to the CLI, or set LOXMCP_DAEMON_BIN",
    });
    return undefined;
  }
  const problems = doc.problems.filter(
    (p): p is DaemonConfigProblem =>
      isRecord(p) && typeof p.key === "string" && typeof p.message === "string",
  );
  for (const p of problems) {
    // "<what is wrong> — <what to do>": the fix goes on its own line
    const cut = p.message.lastIndexOf(" — ");
    const tail = cut < 0 ? "" : p.message.slice(cut + 3);
    const isFix = /^(fix|set|run|make|point|create|put|use|drop|copy|remove|chmod|write)\b/i.test(tail);
    checks.push({
      id: configCheckId(p.key),
      level: "problem",
      message: isFix ? p.message.slice(0, cut) : p.message,
      fix: /^LOXONE_(SERIAL|USER|PASSWORD)/.test(p.key)
        ? `run \`loxmcp init\`${isFix ? `, or ${tail}` : ` (or set ${p.key})`}`
        : isFix
          ? tail
          : /unknown key/.test(p.message)
            ? `rename it (as suggested) or remove it in ${join(ctx.paths.config, "config.json")}`
            : configFix(p.key, ctx.paths.config),
    });
  }
  for (const w of Array.isArray(doc.warnings) ? doc.warnings : []) {
    if (typeof w === "string") checks.push({ id: "config.warning", level: "warn", message: w });
  }
  const cfg = isRecord(doc.config) ? doc.config : undefined;
  if (doc.ok && cfg) {
    const sources = Array.isArray(doc.sources) ? doc.sources.map(String) : [];
    checks.push({
      id: "config",
      level: "ok",
      message: `configuration valid (checked by loxmcpd: the environment${sources.length ? `, ${sources.join(", ")}` : ""})`,
    });
    checks.push({ id: "config.serial", level: "ok", message: `Miniserver serial ${String(cfg.serial)}` });
    checks.push({ id: "config.user", level: "ok", message: `LOXONE_USER set (${String(cfg.user)})` });
    const src = String(cfg.passwordSource ?? "");
    checks.push({
      id: "config.password",
      level: "ok",
      message:
        src === "command"
          ? "LOXONE_PASSWORD_COMMAND set (run when a login needs it; value not shown)"
          : src.startsWith("file:")
            ? `LOXONE_PASSWORD_FILE ${src.slice(5)} (value not shown)`
            : `LOXONE_PASSWORD set (${src}; value not shown)`,
    });
  } else if (problems.length === 0) {
    checks.push({
      id: "config",
      level: "problem",
      message: "the daemon's configuration check failed without naming a problem",
      fix: "run `loxmcpd --check-config` by hand",
    });
  }
  return typeof cfg?.connectUrl === "string"
    ? cfg.connectUrl
    : (ctx.env.LOXONE_CONNECT_URL ?? "https://connect.loxonecloud.com");
}
