/**
 * `loxmcp doctor [--json]`: checks Node, file modes, configuration, the daemon, the service and
 * the clock; every finding names a concrete fix. Exit 1 when any check found a problem.
 * The configuration is checked by the daemon itself (`loxmcpd --check-config --json`, every
 * problem of the environment, .env and config.json); only when that cannot run does doctor read
 * the .env to see which keys are set. Values are never printed.
 */
import { spawnSync } from "node:child_process";
import { closeSync, constants, existsSync, lstatSync, openSync, readdirSync, readFileSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import {
  checkSerial,
  dirWritableProblem,
  isLoopbackHost,
  resolveDaemonCommand,
  SYSTEM_USER,
  type SystemLayout,
  splitConnectUrl,
  systemStartHint,
  systemUserName,
} from "@loxmcp/common";
import { type CommandContext, type CommandSpec, optBool } from "../command.js";
import { envFilePath, readDotenv } from "../dotenv.js";
import { formatDuration, isRecord } from "../format.js";
import { passwdEntry } from "../service/system.js";
import { clientConfigFile, findShimEntries } from "./client-config.js";
import { platformFor, systemServiceFor } from "./service.js";
import { fetchStatus, hintFor, START_ERROR_HINT } from "./status.js";

export type CheckLevel = "ok" | "info" | "warn" | "problem" | "skip";

export interface Check {
  id: string;
  level: CheckLevel;
  message: string;
  fix?: string;
}

const MARK: Record<CheckLevel, string> = {
  ok: "ok  ",
  info: "info",
  warn: "warn",
  problem: "FAIL",
  skip: "skip",
};

function modeOf(path: string): { mode: number; uid: number; isDir: boolean; isLink: boolean } | undefined {
  try {
    const st = lstatSync(path);
    return { mode: st.mode & 0o777, uid: st.uid, isDir: st.isDirectory(), isLink: st.isSymbolicLink() };
  } catch {
    return undefined;
  }
}

const octal = (m: number) => `0${m.toString(8).padStart(3, "0")}`;
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

function configChecks(ctx: CommandContext, checks: Check[]): string {
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

/** MCP client configs that run the shim: do the node and shim paths in them still exist? */
function clientConfigChecks(ctx: CommandContext): Check[] {
  const out: Check[] = [];
  for (const kind of ["claude", "cursor"] as const) {
    let file: string;
    try {
      file = clientConfigFile(kind, ctx.env);
    } catch {
      continue;
    }
    if (!existsSync(file)) continue;
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(file, "utf8"));
    } catch {
      out.push({
        id: `client.${kind}`,
        level: "warn",
        message: `${file} is not valid JSON`,
        fix: "fix it; the client cannot read it either",
      });
      continue;
    }
    const servers = isRecord(doc) && isRecord(doc.mcpServers) ? doc.mcpServers : {};
    for (const [name, entry] of Object.entries(servers)) {
      if (!isRecord(entry) || !Array.isArray(entry.args)) continue;
      const shim = entry.args.find((a): a is string => typeof a === "string" && a.includes("loxmcp-shim"));
      if (!shim) continue;
      const missing = [typeof entry.command === "string" ? entry.command : "", shim].filter(
        (p) => p.startsWith("/") && !existsSync(p),
      );
      out.push(
        missing.length
          ? {
              id: `client.${kind}`,
              level: "problem",
              message: `${file}: mcpServers.${name} points at ${missing.join(" and ")}, which does not exist`,
              fix: `\`loxmcp client-config ${kind} --write${name === "loxone" ? "" : ` --server-name ${name}`}\``,
            }
          : { id: `client.${kind}`, level: "ok", message: `${file}: mcpServers.${name} runs the shim` },
      );
    }
  }
  return out;
}

/**
 * Client configs whose shim gets another LOXMCP_HOME / LOXMCP_SOCKET than this shell: that client
 * talks to another daemon (other credentials, policy, PIN) than the `loxmcp` run here.
 */
function clientEnvChecks(ctx: CommandContext): Check[] {
  const same = (a: string | undefined, b: string | undefined) =>
    (a ? resolve(a) : undefined) === (b ? resolve(b) : undefined);
  const out: Check[] = [];
  for (const e of findShimEntries(ctx.env)) {
    const keys = ["LOXMCP_HOME", "LOXMCP_SOCKET"].filter((k) => !same(e.env[k], ctx.env[k] || undefined));
    if (keys.length === 0) continue;
    const show = (env: Record<string, string | undefined>) =>
      keys.map((k) => `${k}=${env[k] || "(unset)"}`).join(" ");
    const name = e.name === "loxone" ? "" : ` --server-name ${e.name}`;
    out.push({
      id: `client.env.${e.kind}`,
      level: "warn",
      message: `${e.file}: ${e.where} runs the shim with ${show(e.env)}, but this shell has ${show(ctx.env)}: that client talks to another daemon than \`loxmcp\` here`,
      fix:
        e.kind === "claude-code"
          ? `from the shell whose daemon it should use: \`claude mcp remove --scope ${e.where.startsWith("projects") ? "local" : "user"} ${e.name}\`${e.where.startsWith("projects") ? " (in that project)" : ""}, then run what \`loxmcp client-config claude-code${name}\` prints (or use the same ${keys.join("/")} here)`
          : `from the shell whose daemon it should use: \`loxmcp client-config ${e.kind} --write${name}\` (or use the same ${keys.join("/")} here)`,
    });
  }
  return out;
}

/** Clients whose agent can run shell commands as you (and so could run `loxmcp approve`). */
const SHELL_CLIENT = /claude[-_ ]?code|cursor|codex|windsurf|cline|aider|gemini|copilot|vs ?code|zed|goose/i;

/** Where MCP clients with a shell are configured to run the shim. */
function shellClientsConfigured(
  ctx: CommandContext,
  status: { clients: Array<Record<string, unknown>> } | undefined,
): string[] {
  const found: string[] = [];
  const home = ctx.env.HOME;
  const files = home
    ? [
        ["Claude Code", `${home}/.claude.json`],
        ["Cursor", `${home}/.cursor/mcp.json`],
      ]
    : [];
  for (const [who, file] of files) {
    try {
      if (file && existsSync(file) && readFileSync(file, "utf8").includes("loxmcp-shim"))
        found.push(`${who} (${file})`);
    } catch {
      // unreadable: nothing to say about it here
    }
  }
  for (const c of status?.clients ?? []) {
    if (typeof c.name === "string" && SHELL_CLIENT.test(c.name)) found.push(`${c.name} (connected now)`);
  }
  return found;
}

/** No approval PIN while an agent with a shell is configured: it could approve on your behalf. */
function pinCheck(ctx: CommandContext, status: Awaited<ReturnType<typeof fetchStatus>> | undefined): Check {
  const policy = status && isRecord(status.policy) ? status.policy : undefined;
  const pin = policy && isRecord(policy.pin) ? policy.pin : undefined;
  if (!pin) {
    return { id: "pin", level: "skip", message: "approval PIN not checked: the daemon is not running" };
  }
  if (pin.set === true) return { id: "pin", level: "ok", message: "approval PIN set" };
  const shells = shellClientsConfigured(ctx, status);
  if (shells.length > 0) {
    return {
      id: "pin",
      level: "problem",
      message: `no approval PIN is set while a client that runs shell commands is configured (${shells.join(", ")}): its agent could approve its own security actions`,
      fix: "`loxmcp pin set` in a terminal",
    };
  }
  return {
    id: "pin",
    level: "warn",
    message:
      "no approval PIN is set: approving only needs a terminal, and MCP clients' own confirmation counts",
    fix: "`loxmcp pin set` in a terminal",
  };
}

const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0;

/** Can this process open `file` for reading? "yes", "no" (refused), or "missing". */
function readable(file: string): "yes" | "no" | "missing" {
  try {
    closeSync(openSync(file, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0)));
    return "yes";
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "ENOENT" ? "missing" : "no";
  }
}

/**
 * Hardened mode: the system daemon's files are its own. Checks that the person's account cannot
 * read the credentials, the policy or the tokens, that the socket's directory is the daemon's
 * (0750), and that this account is in the daemon's group (or the socket is out of reach).
 */
function systemChecks(layout: SystemLayout): Check[] {
  const out: Check[] = [];
  const user = systemUserName(layout);
  const entry = passwdEntry(user);
  if (!entry) {
    out.push({
      id: "system.user",
      level: "problem",
      message: `the system daemon's user ${user} does not exist`,
      fix: "`sudo loxmcp service install --system`",
    });
  }
  const secrets: Array<[string, string, string]> = [
    ["system.env", "credentials", `${layout.config}/.env`],
    ["system.config", "policy", `${layout.config}/config.json`],
    ["system.db", "database (tokens)", `${layout.state}/loxmcp.db`],
  ];
  for (const [id, what, file] of secrets) {
    if (isRoot()) {
      const st = modeOf(file);
      if (!st) {
        out.push({
          id,
          level: id === "system.env" ? "problem" : "info",
          message: `${what} ${file} does not exist`,
          ...(id === "system.env" ? { fix: "`sudo loxmcp init --system`" } : {}),
        });
      } else if (st.isLink || (st.mode & 0o077) !== 0 || (entry && st.uid !== entry.uid)) {
        out.push({
          id,
          level: "problem",
          message: `${what} ${file} is ${st.isLink ? "a symlink" : `mode ${octal(st.mode)}, uid ${st.uid}`}: only ${user} may read it`,
          fix: `chown ${user}:${user} ${file} && chmod 600 ${file}`,
        });
      } else {
        out.push({ id, level: "ok", message: `${what} ${file} (${octal(st.mode)}, ${user} only)` });
      }
      continue;
    }
    const r = readable(file);
    out.push(
      r === "yes"
        ? {
            id,
            level: "problem",
            message: `your account can read the system daemon's ${what} ${file}: so can any agent running as you`,
            fix: `sudo chown ${user}:${user} ${file} && sudo chmod 600 ${file}`,
          }
        : { id, level: "ok", message: `${what} ${file}: not readable by your account` },
    );
  }
  const rt = modeOf(layout.runtime);
  if (!rt) {
    out.push({
      id: "system.runtime",
      level: "info",
      message: `socket directory ${layout.runtime} does not exist (created when the system daemon starts)`,
    });
  } else if (
    rt.isLink ||
    !rt.isDir ||
    (rt.mode & 0o027) !== 0 ||
    (entry && rt.uid !== entry.uid && rt.uid !== 0)
  ) {
    out.push({
      id: "system.runtime",
      level: "problem",
      message: `socket directory ${layout.runtime} is ${rt.isLink ? "a symlink" : `mode ${octal(rt.mode)}, uid ${rt.uid}`}: it must be ${user}'s, 0750`,
      fix: `sudo chown ${user}:${user} ${layout.runtime} && sudo chmod 750 ${layout.runtime}`,
    });
  } else {
    out.push({
      id: "system.runtime",
      level: "ok",
      message: `socket directory ${layout.runtime} (${octal(rt.mode)})`,
    });
  }
  if (!isRoot() && entry && typeof process.getgroups === "function") {
    const st = lstatSafe(layout.runtime);
    const gid = st?.gid ?? entry.gid;
    out.push(
      process.getgroups().includes(gid) || process.getgid?.() === gid
        ? { id: "system.group", level: "ok", message: `you are in the system daemon's group (gid ${gid})` }
        : {
            id: "system.group",
            level: "problem",
            message: `you are not in the system daemon's group (gid ${gid}): the socket is out of your reach`,
            fix: `sudo usermod -a -G ${user} "$USER", then log in again`,
          },
    );
  }
  return out;
}

function lstatSafe(p: string): { gid: number } | undefined {
  try {
    return lstatSync(p);
  } catch {
    return undefined;
  }
}

/** Per-user mode with a shell client configured: its agent can read the password and tokens. */
function hardeningCheck(
  ctx: CommandContext,
  status: Awaited<ReturnType<typeof fetchStatus>> | undefined,
): Check | undefined {
  if (ctx.paths.system) return undefined;
  const shells = shellClientsConfigured(ctx, status);
  if (shells.length === 0) return undefined;
  return {
    id: "hardened",
    level: "warn",
    message: `a client that runs shell commands is configured (${shells.join(", ")}) and the daemon runs as you (not hardened): its agent can read the password and the tokens and reach the Miniserver directly, edit the policy or remove the PIN`,
    fix: "run the daemon as its own user: `sudo loxmcp service install --system --migrate` (docs/hardened.md)",
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
function daemonConfigChecks(ctx: CommandContext, checks: Check[]): string | undefined {
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

/** Hardened mode, not root: the configuration is not ours to read; root's doctor checks it. */
function systemConfigSkipped(checks: Check[], layout: SystemLayout): string {
  checks.push({
    id: "config",
    level: "skip",
    message: `configuration in ${layout.config} not checked: only root and ${systemUserName(layout) || SYSTEM_USER} may read it (\`sudo loxmcp doctor\` checks it)`,
  });
  return "https://connect.loxonecloud.com";
}

/** Per-user mode: config/state/log/runtime directories and files are ours, private. */
function perUserFileChecks(ctx: CommandContext, checks: Check[]): void {
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
