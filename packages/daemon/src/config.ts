import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  checkSerial,
  isLoopbackHost,
  type LoxmcpPaths,
  parseDotenv,
  resolvePaths,
  splitConnectUrl,
} from "@loxmcp/common";
import { didYouMean, readConfigFile, show } from "./config/file.js";
import { resolvePassword } from "./config/password.js";
import {
  ConfigError,
  type ConfigFile,
  type ConfigProblem,
  configErrorOf,
  type DaemonConfig,
  DEFAULT_CONNECT_URL,
  DEFAULT_LOG_FILES,
  DEFAULT_LOG_MAX_MB,
  LOG_LEVELS,
  type LoadConfigOptions,
  type LogLevel,
  type LogRotationConfig,
  type PageConfig,
} from "./config/schema.js";
import { type PolicySection, PolicySectionSchema } from "./policy/settings.js";
import { POLICY_MODES, type PolicyMode } from "./policy/types.js";

export { closest, locateJsonError } from "./config/file.js";
export { runPasswordCommand } from "./config/password.js";
export * from "./config/schema.js";
// The policy section and its modes are owned by policy/; re-exported here for the public API.
export { POLICY_MODES, type PolicyMode, type PolicySection, PolicySectionSchema };

/** Loads and validates the configuration. Throws one `ConfigError` naming every problem found. */
export function loadConfig(opts: LoadConfigOptions = {}): DaemonConfig {
  const r = checkConfig(opts);
  if (r.config) return r.config;
  throw configErrorOf(r.problems);
}

/** The outcome of checking the configuration: the config when it is valid, else every problem. */
export interface ConfigCheck {
  config?: DaemonConfig;
  problems: ConfigProblem[];
  warnings: string[];
  /** Files that were read. */
  sources: string[];
  paths: LoxmcpPaths;
}

/**
 * Validates the environment, `.env` and config.json and collects EVERY problem (each setting is
 * checked even when an earlier one failed; a key that cannot be used stands in with its default),
 * for `loxmcpd --check-config`, `loxmcp doctor` and the one-line start error.
 */
export function checkConfig(opts: LoadConfigOptions = {}): ConfigCheck {
  const procEnv = opts.env ?? process.env;
  const problems: ConfigProblem[] = [];
  /** Runs one check; its ConfigError becomes a problem and `fallback` stands in for the value. */
  const attempt = <T>(fn: () => T, fallback: T): T => {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
      return fallback;
    }
  };
  const paths = resolvePaths(procEnv);
  const envFile = join(paths.config, ".env");
  const jsonFile = join(paths.config, "config.json");
  const sources: string[] = [];
  const warnings: string[] = [];
  /** .env and config.json decide credentials and the safety policy: only we (or root) may write them. */
  const checkTrusted = (f: string, key: string) => {
    try {
      const st = statSync(f);
      const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
      if (uid !== undefined && st.uid !== uid && st.uid !== 0) {
        problems.push({
          key,
          message: `${f} is owned by uid ${st.uid}, not by us: it decides the credentials and the safety policy, so it is not used; remove it or chown it`,
        });
      } else if ((st.mode & 0o022) !== 0) {
        problems.push({
          key,
          message: `${f} is writable by other users (mode ${(st.mode & 0o777).toString(8)}): anyone could change the credentials or the safety policy; check it, then chmod 600 ${f}`,
        });
      }
    } catch {
      // unreadable: reported where it is read
    }
  };
  const checkPrivate = (file: string) => {
    try {
      if ((statSync(file).mode & 0o077) !== 0) {
        warnings.push(`${file} is readable by other users and may hold the password: run chmod 600 ${file}`);
      }
    } catch {
      // unreadable: reported where it is read
    }
  };

  let dotenv: Record<string, string> = {};
  if (existsSync(envFile)) {
    try {
      dotenv = parseDotenv(readFileSync(envFile, "utf8"));
      sources.push(envFile);
      checkTrusted(envFile, ".env");
      checkPrivate(envFile);
    } catch (err) {
      problems.push({
        key: ".env",
        message: `${envFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); fix its owner and mode (chmod 600 ${envFile}) or remove it`,
      });
    }
  }

  let file: ConfigFile = {};
  if (existsSync(jsonFile)) {
    const read = readConfigFile(jsonFile);
    problems.push(...read.problems);
    file = read.file;
    if (read.parsed) sources.push(jsonFile);
    checkTrusted(jsonFile, "config.json");
    if (file.password !== undefined) checkPrivate(jsonFile);
  }

  const fixHint = `set it in the environment or in ${envFile}`;
  /** env > .env > config.json value. Empty strings count as unset. */
  const get = (key: string, fileValue?: string): string | undefined => {
    for (const v of [procEnv[key], dotenv[key], fileValue]) {
      if (v !== undefined && v.trim() !== "") return v.trim();
    }
    return undefined;
  };
  const required = (key: string, fileValue: string | undefined): string => {
    const v = get(key, fileValue);
    if (v === undefined) throw new ConfigError(key, `${key} is missing — ${fixHint}`);
    return v;
  };
  /** Where to fix a bad value: where it came from (the environment, .env or config.json). */
  const fixFor = (key: string, jsonKey?: string): string =>
    procEnv[key] !== undefined && procEnv[key]?.trim() !== ""
      ? `fix ${key} in the environment loxmcpd was started with (your shell, the MCP client's config or the service unit)`
      : dotenv[key] !== undefined && dotenv[key]?.trim() !== ""
        ? `fix it in ${envFile}`
        : jsonKey !== undefined
          ? `fix ${jsonKey} in ${jsonFile}`
          : fixHint;

  const { serial, connectUrl } = attempt(
    () =>
      serialAndConnect(
        get("LOXONE_SERIAL", file.serial),
        get("LOXONE_CONNECT_URL", file.connectUrl) ?? DEFAULT_CONNECT_URL,
        fixHint,
      ),
    { serial: "", connectUrl: DEFAULT_CONNECT_URL },
  );
  const user = attempt(() => required("LOXONE_USER", file.user), "");

  const insecureTls = opts.insecureTls === true;
  const upstreamRaw = get("LOXMCP_UPSTREAM_URL", file.upstreamUrl);
  const upstreamUrl =
    upstreamRaw === undefined
      ? undefined
      : attempt(() => checkUrl("LOXMCP_UPSTREAM_URL", upstreamRaw, fixHint), undefined);
  if (insecureTls) {
    for (const [key, u] of [
      ["LOXONE_CONNECT_URL", connectUrl],
      ["LOXMCP_UPSTREAM_URL", upstreamUrl],
    ] as const) {
      if (problems.some((p) => p.key === key)) continue; // already named
      if (u !== undefined && !isLoopbackHost(new URL(u).hostname)) {
        problems.push({
          key: "--insecure-tls",
          message: `--insecure-tls is only allowed with a loopback ${key} (a local simulator); ${u} is not loopback — drop the flag`,
        });
      }
    }
  }

  const { password, passwordSource } = attempt(() => resolvePassword(procEnv, dotenv, file, fixHint), {
    password: "",
    passwordSource: "",
  });
  if (passwordSource.startsWith("file:")) checkPrivate(passwordSource.slice(5));

  const logLevelRaw = (get("LOXMCP_LOG_LEVEL", file.logLevel) ?? "info").toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(logLevelRaw)) {
    problems.push({
      key: "LOXMCP_LOG_LEVEL",
      message: `LOXMCP_LOG_LEVEL ${show(logLevelRaw)} is not one of ${LOG_LEVELS.join(", ")}${didYouMean(logLevelRaw, LOG_LEVELS)} — ${fixFor("LOXMCP_LOG_LEVEL", "logLevel")}`,
    });
  }

  const policyRaw = get("LOXMCP_POLICY") ?? file.policy?.mode ?? "confirm";
  if (!(POLICY_MODES as readonly string[]).includes(policyRaw)) {
    // An invalid policy.mode in config.json is named by the schema check (config.json:policy.mode).
    if (get("LOXMCP_POLICY") !== undefined) {
      problems.push({
        key: "LOXMCP_POLICY",
        message: `LOXMCP_POLICY ${show(policyRaw)} is not one of ${POLICY_MODES.join(", ")}${didYouMean(policyRaw, POLICY_MODES)} — ${fixFor("LOXMCP_POLICY")}`,
      });
    }
  }

  const seconds = (
    key: string,
    fileValue: number | undefined,
    def: number,
    min: number,
    max: number,
  ): number => {
    const raw = get(key);
    const v = raw === undefined ? (fileValue ?? def) : Number(raw);
    if (!Number.isFinite(v) || v < min || v > max) {
      problems.push({
        key,
        message: `${key} ${show(String(raw ?? fileValue))} must be a number of seconds between ${min} and ${max} — ${raw === undefined ? `fix it in ${jsonFile}` : fixFor(key)}`,
      });
      return def * 1000;
    }
    return Math.round(v * 1000);
  };

  const allowedEnv = get("LOXMCP_ALLOWED_RESOURCES");
  const allowedResources = allowedEnv
    ? allowedEnv
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean)
    : (file.allowedResources ?? []);
  for (const r of allowedResources) {
    try {
      new URL(r);
    } catch {
      problems.push({
        key: allowedEnv ? "LOXMCP_ALLOWED_RESOURCES" : "allowedResources",
        message: `${allowedEnv ? "LOXMCP_ALLOWED_RESOURCES" : "allowedResources"} entry ${show(r)} is not a URL — ${allowedEnv ? fixFor("LOXMCP_ALLOWED_RESOURCES") : `fix it in ${jsonFile}`}`,
      });
    }
  }

  const debugRaw = get("LOXMCP_DEBUG");
  const cfg: DaemonConfig = {
    paths,
    serial,
    user,
    password,
    passwordSource,
    connectUrl,
    logLevel: logLevelRaw as LogLevel,
    debug: debugRaw !== undefined && debugRaw !== "0" && debugRaw.toLowerCase() !== "false",
    policy: { ...(file.policy ?? {}), mode: policyRaw as PolicyMode },
    pingIntervalMs: seconds("LOXMCP_PING_INTERVAL", file.pingIntervalSec, 30, 1, 3600),
    idleCheckMs: seconds("LOXMCP_IDLE_CHECK", file.idleCheckSec, 60, 1, 86400),
    requestTimeoutMs: seconds("LOXMCP_REQUEST_TIMEOUT", file.requestTimeoutSec, 60, 1, 3600),
    shutdownGraceMs: seconds("LOXMCP_SHUTDOWN_GRACE", file.shutdownGraceSec, 5, 0, 600),
    allowedResources,
    limits: attempt(() => limitsFrom(file.limits), {}),
    page: attempt(() => pageFrom(get("LOXMCP_PAGE_PORT"), file.page, fixFor("LOXMCP_PAGE_PORT")), {
      enabled: true,
      port: 0,
    }),
    logRotation: attempt(() => logRotationFrom(get, file.log, fixHint, jsonFile), {
      maxBytes: DEFAULT_LOG_MAX_MB * 1024 * 1024,
      files: DEFAULT_LOG_FILES,
    }),
    insecureTls,
    sources,
    warnings,
    file,
  };
  if (upstreamUrl !== undefined) cfg.upstreamUrl = upstreamUrl;
  if (procEnv.LOXMCP_HOME) cfg.home = procEnv.LOXMCP_HOME;
  if (problems.length > 0) return { problems, warnings, sources, paths };
  return { config: cfg, problems, warnings, sources, paths };
}

/**
 * LOXONE_SERIAL (12 hex digits; MAC style 50:4F:94:A0:C0:DE normalised) and LOXONE_CONNECT_URL.
 * A connect URL that already names the Miniserver (`…/<serial>/mcp`) gives its base and the
 * serial; LOXONE_SERIAL may then be left out, and a different one is named as the conflict.
 */
function serialAndConnect(
  rawSerial: string | undefined,
  rawConnect: string,
  fixHint: string,
): { serial: string; connectUrl: string } {
  const split = splitConnectUrl(rawConnect);
  if (!split.ok) {
    throw new ConfigError(
      "LOXONE_CONNECT_URL",
      `LOXONE_CONNECT_URL ${show(rawConnect)}: ${split.problem} — ${fixHint}`,
    );
  }
  const connectUrl = checkUrl("LOXONE_CONNECT_URL", split.base, fixHint);
  let serial: string | undefined;
  if (rawSerial !== undefined) {
    const check = checkSerial(rawSerial);
    if (!check.ok) {
      throw new ConfigError(
        "LOXONE_SERIAL",
        `LOXONE_SERIAL ${show(rawSerial)} is not a Miniserver serial: ${check.problem} — ${fixHint}`,
      );
    }
    serial = check.serial;
  }
  if (split.serial !== undefined) {
    if (serial !== undefined && serial !== split.serial) {
      throw new ConfigError(
        "LOXONE_CONNECT_URL",
        `LOXONE_CONNECT_URL ${show(rawConnect)} names Miniserver ${split.serial} but LOXONE_SERIAL is ${serial}: they conflict. Set LOXONE_CONNECT_URL to ${split.base} (the base only) and keep the serial in LOXONE_SERIAL — ${fixHint}`,
      );
    }
    serial = split.serial;
  }
  if (serial === undefined) {
    throw new ConfigError("LOXONE_SERIAL", `LOXONE_SERIAL is missing — ${fixHint}`);
  }
  return { serial, connectUrl };
}

function limitsFrom(l: ConfigFile["limits"]): DaemonConfig["limits"] {
  const out: DaemonConfig["limits"] = {};
  if (!l) return out;
  if (l.maxConnections !== undefined) out.maxConnections = l.maxConnections;
  if (l.controlReserve !== undefined) out.controlReserve = l.controlReserve;
  if (l.maxInFlightPerConnection !== undefined) out.maxInFlightPerConnection = l.maxInFlightPerConnection;
  if (l.upstreamConcurrency !== undefined) out.upstreamConcurrency = l.upstreamConcurrency;
  if (l.upstreamQueue !== undefined) out.upstreamQueue = l.upstreamQueue;
  if (l.maxBufferedMB !== undefined) out.maxBufferedBytes = Math.round(l.maxBufferedMB * 1024 * 1024);
  if (l.stalledClientSec !== undefined) out.stalledClientMs = l.stalledClientSec * 1000;
  if (l.pageConnections !== undefined) out.pageConnections = l.pageConnections;
  if ((out.controlReserve ?? 8) >= (out.maxConnections ?? 64)) {
    throw new ConfigError(
      "limits.controlReserve",
      "limits.controlReserve must be smaller than limits.maxConnections (slots kept for the CLI out of all connections)",
    );
  }
  return out;
}

/** LOXMCP_PAGE_PORT (wins) / page.port: 0 … 65535, 0 = a free port; page.enabled: false turns it off. */
function pageFrom(envPort: string | undefined, section: ConfigFile["page"], fix: string): PageConfig {
  const enabled = section?.enabled ?? true;
  if (envPort === undefined) return { enabled, port: section?.port ?? 0 };
  const port = Number(envPort);
  if (!/^\d+$/.test(envPort) || port > 65535) {
    throw new ConfigError(
      "LOXMCP_PAGE_PORT",
      `LOXMCP_PAGE_PORT ${show(envPort)} must be a TCP port number 0 … 65535 (0 picks a free one) — ${fix}`,
    );
  }
  return { enabled, port };
}

/**
 * LOXMCP_LOG_MAX_MB / log.maxSizeMB: MB (2^20 bytes) per file, 0 = never rotate (e.g. logrotate
 * with copytruncate does it), else 0.01 … 10240. LOXMCP_LOG_FILES / log.files: 0 … 100.
 */
function logRotationFrom(
  get: (key: string) => string | undefined,
  section: ConfigFile["log"],
  fixHint: string,
  jsonFile: string,
): LogRotationConfig {
  const setting = (envKey: string, fileKey: "maxSizeMB" | "files", def: number) => {
    const raw = get(envKey);
    if (raw !== undefined) return { key: envKey, value: Number(raw), shown: raw, fix: fixHint };
    const v = section?.[fileKey];
    return { key: `log.${fileKey}`, value: v ?? def, shown: String(v), fix: `fix it in ${jsonFile}` };
  };
  const mb = setting("LOXMCP_LOG_MAX_MB", "maxSizeMB", DEFAULT_LOG_MAX_MB);
  if (!Number.isFinite(mb.value) || (mb.value !== 0 && (mb.value < 0.01 || mb.value > 10240))) {
    throw new ConfigError(
      mb.key,
      `${mb.key} ${show(mb.shown)} must be a size in MB between 0.01 and 10240 (0: never rotate the log) — ${mb.fix}`,
    );
  }
  const files = setting("LOXMCP_LOG_FILES", "files", DEFAULT_LOG_FILES);
  if (!Number.isInteger(files.value) || files.value < 0 || files.value > 100) {
    throw new ConfigError(
      files.key,
      `${files.key} ${show(files.shown)} must be a whole number of rotated log files to keep, 0 to 100 — ${files.fix}`,
    );
  }
  return { maxBytes: Math.round(mb.value * 1024 * 1024), files: files.value };
}

/** A printable summary of the configuration (never the password). */
export function describeConfig(cfg: DaemonConfig): Record<string, unknown> {
  return {
    serial: cfg.serial,
    user: cfg.user,
    passwordSource: cfg.passwordSource,
    connectUrl: cfg.connectUrl,
    upstreamUrl: cfg.upstreamUrl,
    logLevel: cfg.logLevel,
    policyMode: cfg.policy.mode,
    pingIntervalMs: cfg.pingIntervalMs,
    idleCheckMs: cfg.idleCheckMs,
    requestTimeoutMs: cfg.requestTimeoutMs,
    allowedResources: cfg.allowedResources,
    logRotation: cfg.logRotation,
    page: cfg.page,
    insecureTls: cfg.insecureTls,
    sources: cfg.sources,
  };
}

/** https always; http only for loopback hosts (a local simulator). Returns the URL without a trailing slash. */
function checkUrl(key: string, value: string, fixHint: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new ConfigError(key, `${key} ${show(value)} is not a URL (expected https://…) — ${fixHint}`);
  }
  if (u.protocol === "https:") return value.replace(/\/+$/, "");
  if (u.protocol === "http:") {
    if (isLoopbackHost(u.hostname)) return value.replace(/\/+$/, "");
    throw new ConfigError(
      key,
      `${key} ${show(value)} uses plain http to a non-loopback host; use https:// (http:// is only allowed for 127.0.0.1/localhost)`,
    );
  }
  throw new ConfigError(key, `${key} ${show(value)} must be an https:// URL — ${fixHint}`);
}
