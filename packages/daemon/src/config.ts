/**
 * Daemon configuration: environment > `<config dir>/.env` > `<config dir>/config.json`.
 * Every value is validated and every problem collected (`checkConfig`): unknown keys anywhere in
 * config.json (with the closest known key), syntax errors with line and column. `loadConfig`
 * throws one `ConfigError` carrying them all (main prints one line naming the keys and exits 78,
 * EX_CONFIG; `loxmcpd --check-config` lists them one per line). Never holds the
 * password in a printable field: `password` is a string or a function, and `describeConfig`
 * leaves it out.
 */
import { execFile } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  checkSerial,
  type Env,
  isLoopbackHost,
  type LoxmcpPaths,
  parseDotenv,
  resolvePaths,
  splitConnectUrl,
} from "@loxmcp/common";
import { z } from "zod";
import { type PolicySection, type PolicySectionInput, PolicySectionSchema } from "./policy/settings.js";
import { POLICY_MODES, type PolicyMode } from "./policy/types.js";

// The policy section and its modes are owned by policy/; re-exported here for the public API.
export { POLICY_MODES, type PolicyMode, type PolicySection, PolicySectionSchema };

export const EX_CONFIG = 78;
export const DEFAULT_CONNECT_URL = "https://connect.loxonecloud.com";
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** One thing wrong with the configuration: the key and one line saying what to do (never a password). */
export interface ConfigProblem {
  /** The offending key: LOXONE_SERIAL, config.json, config.json:policy.rateLimit … */
  key: string;
  message: string;
  /** config.json syntax errors: where (1-based), when it can be told. */
  line?: number;
  column?: number;
}

export class ConfigError extends Error {
  readonly code = "CONFIG_INVALID";
  /** Every problem found; the first one is `key` / the start of `message`. */
  readonly problems: ConfigProblem[];
  constructor(
    /** The offending key, e.g. LOXONE_SERIAL. */
    readonly key: string,
    message: string,
    problems?: ConfigProblem[],
  ) {
    super(message);
    this.name = "ConfigError";
    this.problems = problems ?? [{ key, message }];
  }
}

/** One ConfigError for all problems: the first one's line, then the other keys (one line in all). */
export function configErrorOf(problems: ConfigProblem[]): ConfigError {
  const [first, ...rest] = problems;
  if (!first) return new ConfigError("config", "the configuration is invalid", problems);
  const more =
    rest.length === 0
      ? ""
      : `; ${rest.length} more problem${rest.length === 1 ? "" : "s"}: ${rest.map((p) => p.key).join(", ")} (\`loxmcp doctor\` lists them all)`;
  return new ConfigError(first.key, `${first.message}${more}`, problems);
}

/** config.json (camelCase keys; every key optional, the environment overrides it). */
export const ConfigFileSchema = z
  .object({
    serial: z.string().optional(),
    user: z.string().optional(),
    password: z.string().optional(),
    passwordFile: z.string().optional(),
    passwordCommand: z.string().optional(),
    connectUrl: z.string().optional(),
    upstreamUrl: z.string().optional(),
    logLevel: z.string().optional(),
    pingIntervalSec: z.number().positive().optional(),
    idleCheckSec: z.number().positive().optional(),
    requestTimeoutSec: z.number().positive().optional(),
    shutdownGraceSec: z.number().nonnegative().optional(),
    allowedResources: z.array(z.string()).optional(),
    /** An editor's schema reference; ignored. */
    $schema: z.string().optional(),
    /** Socket limits (docs/daemon.md, "Limits"); each has a default. */
    limits: z
      .object({
        maxConnections: z.number().int().min(4).max(10_000).optional(),
        controlReserve: z.number().int().min(1).max(1000).optional(),
        maxInFlightPerConnection: z.number().int().min(1).max(100_000).optional(),
        upstreamConcurrency: z.number().int().min(1).max(1000).optional(),
        upstreamQueue: z.number().int().min(1).max(1_000_000).optional(),
        maxBufferedMB: z.number().min(1).max(1024).optional(),
        stalledClientSec: z.number().min(1).max(3600).optional(),
        pageConnections: z.number().int().min(1).max(1000).optional(),
      })
      .strict()
      .optional(),
    policy: PolicySectionSchema.optional(),
    /** The person's local page (docs/page.md): on 127.0.0.1 only; port 0 picks a free one. */
    page: z
      .object({
        enabled: z.boolean().optional(),
        port: z.number().int().min(0).max(65535).optional(),
      })
      .strict()
      .optional(),
    /** daemon.log rotation (docs/daemon.md, "Files"); the environment overrides each key. */
    log: z
      .object({
        maxSizeMB: z.number().optional(),
        files: z.number().optional(),
      })
      .strict()
      .optional(),
  })
  .passthrough();
export type ConfigFile = z.infer<typeof ConfigFileSchema>;

export interface DaemonConfig {
  paths: LoxmcpPaths;
  /** LOXMCP_HOME when set (everything lives under it). */
  home?: string;
  serial: string;
  user: string;
  /** The password, or a function yielding it (password command). Never log it. */
  password: string | (() => Promise<string>);
  /** Where the password came from (for status/logs): "env", "file:<path>", "command", "config.json". */
  passwordSource: string;
  connectUrl: string;
  upstreamUrl?: string;
  logLevel: LogLevel;
  debug: boolean;
  policy: PolicySectionInput;
  pingIntervalMs: number;
  idleCheckMs: number;
  requestTimeoutMs: number;
  /** On SIGTERM, how long in-flight requests may take to finish before they get an error. */
  shutdownGraceMs: number;
  allowedResources: string[];
  /** Socket limits from config.json (defaults in mux/limits.ts). */
  limits: {
    maxConnections?: number;
    controlReserve?: number;
    maxInFlightPerConnection?: number;
    upstreamConcurrency?: number;
    upstreamQueue?: number;
    maxBufferedBytes?: number;
    stalledClientMs?: number;
    pageConnections?: number;
  };
  /** The person's local page: served on 127.0.0.1 only (`loxmcp open` asks the daemon for its URL). */
  page: PageConfig;
  /** daemon.log rotation: at most `maxBytes` per file (0: never rotate), `files` rotated files kept. */
  logRotation: LogRotationConfig;
  insecureTls: boolean;
  /** Files that were read (for the log). */
  sources: string[];
  /** Things worth a warning in the log (e.g. a password file readable by others). */
  warnings: string[];
  /** The full parsed config.json (passthrough keys included) for other components. */
  file: ConfigFile;
}

export interface PageConfig {
  enabled: boolean;
  /** TCP port on 127.0.0.1; 0 = a free one, picked at each start. */
  port: number;
}

export interface LogRotationConfig {
  maxBytes: number;
  files: number;
}
export const DEFAULT_LOG_MAX_MB = 10;
export const DEFAULT_LOG_FILES = 5;

export interface LoadConfigOptions {
  env?: Env;
  insecureTls?: boolean;
}

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

function resolvePassword(
  procEnv: Env,
  dotenv: Record<string, string>,
  file: ConfigFile,
  fixHint: string,
): { password: string | (() => Promise<string>); passwordSource: string } {
  // Highest-precedence layer that sets any password key wins as a whole.
  const layers: Array<[string, Record<string, string | undefined>]> = [
    ["environment", procEnv],
    [".env", dotenv],
    [
      "config.json",
      {
        LOXONE_PASSWORD: file.password,
        LOXONE_PASSWORD_FILE: file.passwordFile,
        LOXONE_PASSWORD_COMMAND: file.passwordCommand,
      },
    ],
  ];
  for (const [layer, vals] of layers) {
    const direct = vals.LOXONE_PASSWORD;
    if (direct !== undefined && direct !== "") return { password: direct, passwordSource: layer };
    const pwFile = vals.LOXONE_PASSWORD_FILE?.trim();
    if (pwFile) {
      let text: string;
      try {
        const st = statSync(pwFile);
        if (!st.isFile()) throw new Error("not a regular file");
        text = readFileSync(pwFile, "utf8");
      } catch (err) {
        throw new ConfigError(
          "LOXONE_PASSWORD_FILE",
          `LOXONE_PASSWORD_FILE ${pwFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}) — point it at a readable file holding the password`,
        );
      }
      const pw = text.replace(/\r?\n$/, "");
      if (pw === "")
        throw new ConfigError(
          "LOXONE_PASSWORD_FILE",
          `LOXONE_PASSWORD_FILE ${pwFile} is empty — put the password in it`,
        );
      return { password: pw, passwordSource: `file:${pwFile}` };
    }
    const cmd = vals.LOXONE_PASSWORD_COMMAND?.trim();
    if (cmd) return { password: () => runPasswordCommand(cmd), passwordSource: "command" };
  }
  throw new ConfigError(
    "LOXONE_PASSWORD",
    `LOXONE_PASSWORD is missing — ${fixHint} (or set LOXONE_PASSWORD_FILE / LOXONE_PASSWORD_COMMAND)`,
  );
}

/** Runs the password command (`sh -c`), returns its stdout without the trailing newline. */
export function runPasswordCommand(cmd: string, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("/bin/sh", ["-c", cmd], { timeout: timeoutMs, maxBuffer: 64 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        // Never stdout (it may hold the password): the exit status and stderr's first line.
        const e = err as { code?: unknown; signal?: unknown; killed?: boolean };
        const how =
          e.killed && e.signal
            ? `was stopped after ${Math.round(timeoutMs / 1000)} s (${String(e.signal)})`
            : e.code === "ERR_CHILD_PROCESS_STDIO_MAXBUFFER"
              ? "printed more than 64 KiB"
              : typeof e.code === "number"
                ? `exited with status ${e.code}`
                : e.signal
                  ? `was killed by ${String(e.signal)}`
                  : `could not run (${String(e.code ?? "error")})`;
        const line = firstStderrLine(String(stderr ?? ""), String(stdout ?? ""));
        reject(
          new ConfigError(
            "LOXONE_PASSWORD_COMMAND",
            `LOXONE_PASSWORD_COMMAND ${how}${line ? `: ${line}` : " (nothing on stderr)"}; run it by hand to check it`,
          ),
        );
        return;
      }
      const pw = stdout.replace(/\r?\n$/, "");
      if (pw === "") {
        reject(
          new ConfigError(
            "LOXONE_PASSWORD_COMMAND",
            "LOXONE_PASSWORD_COMMAND printed nothing; it must print the password",
          ),
        );
        return;
      }
      resolve(pw);
    });
  });
}

/**
 * The first non-empty line of a failed password command's stderr, for the error: control
 * characters removed, at most 200 characters, and anything the command printed on stdout (which
 * could be the password) cut out of it.
 */
function firstStderrLine(stderr: string, stdout: string): string {
  const line = stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l !== "");
  if (!line) return "";
  let out = [...line].filter((ch) => ch >= " " && ch !== "\u007f").join("");
  for (const s of [stdout.trim(), ...stdout.split(/\r?\n/).map((l) => l.trim())]) {
    if (s.length >= 3) out = out.split(s).join("[stdout removed]");
  }
  return out.length > 200 ? `${out.slice(0, 200)}…` : out;
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

/**
 * Reads config.json: syntax errors named with line and column (never the parser's own message,
 * which may quote the file and a password in it), then the schema and unknown keys. Parts that are
 * valid are kept so that the other settings can still be checked.
 */
function readConfigFile(jsonFile: string): { file: ConfigFile; problems: ConfigProblem[]; parsed: boolean } {
  let text: string;
  try {
    text = readFileSync(jsonFile, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    return {
      file: {},
      parsed: false,
      problems: [
        {
          key: "config.json",
          message: `${jsonFile} cannot be read (${code}); fix its owner and mode (chmod 600 ${jsonFile}) or remove it`,
        },
      ],
    };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { file: {}, parsed: false, problems: [jsonSyntaxProblem(jsonFile, text, err)] };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    const what = Array.isArray(raw) ? "an array" : raw === null ? "null" : `a ${typeof raw}`;
    return {
      file: {},
      parsed: false,
      problems: [
        {
          key: "config.json",
          message: `${jsonFile} holds ${what}; it must hold one JSON object ({ "policy": { … }, … }) — fix or remove it`,
        },
      ],
    };
  }
  const problems = unknownKeyProblems(ConfigFileSchema, raw, [], jsonFile);
  const parsed = ConfigFileSchema.safeParse(raw);
  if (parsed.success) return { file: parsed.data, problems, parsed: true };
  const bad = new Set<string>();
  for (const issue of parsed.error.issues) {
    if (issue.code === "unrecognized_keys") {
      // named above, with a suggestion; dropped below like any bad section
      for (const k of issue.path.length === 0 ? issue.keys : [issue.path[0]]) bad.add(String(k));
      continue;
    }
    const where = issue.path.map(String).join(".") || "(top level)";
    bad.add(String(issue.path[0] ?? ""));
    problems.push({
      key: `config.json:${where}`,
      message: `${jsonFile}: ${where} — ${oneLine(issue.message)}; fix it in ${jsonFile}`,
    });
  }
  // Keep the valid top-level keys so that the rest of the configuration is still checked.
  const rest = Object.fromEntries(Object.entries(raw).filter(([k]) => !bad.has(k)));
  const again = bad.has("") ? undefined : ConfigFileSchema.safeParse(rest);
  return { file: again?.success ? again.data : {}, problems, parsed: true };
}

/** A config.json syntax error: what and where (line, column), never a quote of the file. */
function jsonSyntaxProblem(jsonFile: string, text: string, err: unknown): ConfigProblem {
  const msg = err instanceof Error ? err.message : String(err);
  const at = /at position (\d+)/.exec(msg);
  let pos: number | undefined = at ? Number(at[1]) : undefined;
  if (pos === undefined)
    pos = /Unexpected end of JSON input/i.test(msg) ? text.length : locateJsonError(text);
  const what =
    text.trim() === ""
      ? "the file is empty (write {} or remove it)"
      : /Unexpected end|Unterminated/i.test(msg)
        ? 'the file ends too early (a missing }, ] or ")'
        : /property name/i.test(msg)
          ? "expected a key in double quotes (a trailing comma, or a key without quotes?)"
          : /after property value|after array element|Expected ','/i.test(msg)
            ? "expected a comma or a closing bracket (a missing comma?)"
            : /control character/i.test(msg)
              ? "a control character (a raw line break or tab) inside a string"
              : "unexpected text (only double-quoted strings, numbers, true, false, null, {} and [] are allowed; no comments)";
  if (pos === undefined) {
    return {
      key: "config.json",
      message: `${jsonFile} is not valid JSON: ${what} — fix it or remove the file`,
    };
  }
  const before = text.slice(0, pos);
  const line = before.split("\n").length;
  const column = pos - before.lastIndexOf("\n");
  return {
    key: "config.json",
    message: `${jsonFile} is not valid JSON at line ${line}, column ${column}: ${what} — fix it or remove the file`,
    line,
    column,
  };
}

/**
 * Where the first JSON syntax error is (an offset), for parser messages that do not say: a
 * plain recursive-descent walk over the JSON grammar. undefined when it finds none.
 */
export function locateJsonError(text: string): number | undefined {
  let i = 0;
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i] as string)) i++;
  };
  const fail = (): never => {
    throw i;
  };
  const str = () => {
    if (text[i] !== '"') fail();
    i++;
    while (i < text.length && text[i] !== '"') {
      const c = text.charCodeAt(i);
      if (c < 0x20) fail();
      if (text[i] === "\\") {
        i++;
        if (text[i] === "u") {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail();
          i += 4;
        } else if (!'"\\/bfnrt'.includes(text[i] ?? "x")) fail();
      }
      i++;
    }
    if (i >= text.length) fail();
    i++;
  };
  const value = (depth: number): void => {
    if (depth > 512) fail();
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      ws();
      if (text[i] === "}") {
        i++;
        return;
      }
      for (;;) {
        ws();
        str();
        ws();
        if (text[i] !== ":") fail();
        i++;
        value(depth + 1);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return;
        }
        fail();
      }
    }
    if (c === "[") {
      i++;
      ws();
      if (text[i] === "]") {
        i++;
        return;
      }
      for (;;) {
        value(depth + 1);
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return;
        }
        fail();
      }
    }
    if (c === '"') {
      str();
      return;
    }
    const lit = /^(true|false|null|-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?)/.exec(text.slice(i, i + 400));
    if (!lit) fail();
    i += (lit as RegExpExecArray)[0].length;
  };
  try {
    value(0);
    ws();
    return i < text.length ? i : undefined;
  } catch (pos) {
    return typeof pos === "number" ? Math.min(pos, text.length) : undefined;
  }
}

/** The schema under optional/nullable/default wrappers. */
function unwrapSchema(s: z.ZodType): z.ZodType {
  let cur = s;
  for (let n = 0; n < 10; n++) {
    const inner = (cur.def as { innerType?: z.ZodType }).innerType;
    if (!inner) break;
    cur = inner;
  }
  return cur;
}

/** config.json keys that are environment names: what to write instead. */
const ENV_NAMES_IN_JSON: Record<string, string> = {
  LOXONE_SERIAL: "serial",
  LOXONE_USER: "user",
  LOXONE_PASSWORD: "password",
  LOXONE_PASSWORD_FILE: "passwordFile",
  LOXONE_PASSWORD_COMMAND: "passwordCommand",
  LOXONE_CONNECT_URL: "connectUrl",
  LOXMCP_UPSTREAM_URL: "upstreamUrl",
  LOXMCP_LOG_LEVEL: "logLevel",
  LOXMCP_POLICY: "policy.mode",
  LOXMCP_PING_INTERVAL: "pingIntervalSec",
  LOXMCP_IDLE_CHECK: "idleCheckSec",
  LOXMCP_REQUEST_TIMEOUT: "requestTimeoutSec",
  LOXMCP_SHUTDOWN_GRACE: "shutdownGraceSec",
  LOXMCP_ALLOWED_RESOURCES: "allowedResources",
  LOXMCP_LOG_MAX_MB: "log.maxSizeMB",
  LOXMCP_LOG_FILES: "log.files",
  LOXMCP_PAGE_PORT: "page.port",
};

/** Every key path the schema knows (for "it belongs under …"). */
function knownPaths(schema: z.ZodType, prefix: string[] = [], out: string[][] = []): string[][] {
  const s = unwrapSchema(schema);
  if (s instanceof z.ZodObject) {
    for (const [k, v] of Object.entries(s.shape as Record<string, z.ZodType>)) {
      out.push([...prefix, k]);
      knownPaths(v, [...prefix, k], out);
    }
  }
  return out;
}

/**
 * Keys the schema does not know, anywhere in config.json (top level, policy, rateLimits,
 * temperature, limits, log …): refused, with the closest known key — a misspelt safety setting
 * must not silently keep its default.
 */
function unknownKeyProblems(
  schema: z.ZodType,
  value: unknown,
  path: string[],
  jsonFile: string,
): ConfigProblem[] {
  const s = unwrapSchema(schema);
  const out: ConfigProblem[] = [];
  if (s instanceof z.ZodObject && typeof value === "object" && value !== null && !Array.isArray(value)) {
    const shape = s.shape as Record<string, z.ZodType>;
    const known = Object.keys(shape);
    for (const [k, v] of Object.entries(value)) {
      const child = shape[k];
      if (child && Object.hasOwn(shape, k)) {
        out.push(...unknownKeyProblems(child, v, [...path, k], jsonFile));
        continue;
      }
      const where = [...path, k].join(".");
      let hint = "";
      const close = closest(k, known);
      const envName = path.length === 0 ? ENV_NAMES_IN_JSON[k] : undefined;
      if (close !== undefined) hint = ` (did you mean ${JSON.stringify([...path, close].join("."))}?)`;
      else if (envName !== undefined) hint = ` (in config.json it is called ${JSON.stringify(envName)})`;
      else {
        const elsewhere = knownPaths(ConfigFileSchema).find(
          (p) => p[p.length - 1]?.toLowerCase() === k.toLowerCase() && p.length > 1,
        );
        if (elsewhere) hint = ` (it belongs under ${JSON.stringify(elsewhere.slice(0, -1).join("."))})`;
        else if (known.length <= 16) hint = ` (known keys here: ${known.join(", ")})`;
      }
      out.push({
        key: `config.json:${where}`,
        message: `${jsonFile}: unknown key ${JSON.stringify(where)}${hint} — unknown keys are refused so that a misspelt setting never silently keeps its default`,
      });
    }
  } else if (
    s instanceof z.ZodRecord &&
    typeof value === "object" &&
    value !== null &&
    !Array.isArray(value)
  ) {
    for (const [k, v] of Object.entries(value))
      out.push(...unknownKeyProblems(s.valueType as z.ZodType, v, [...path, k], jsonFile));
  } else if (s instanceof z.ZodArray && Array.isArray(value)) {
    value.forEach((v, i) => {
      out.push(...unknownKeyProblems(s.element as z.ZodType, v, [...path, String(i)], jsonFile));
    });
  }
  return out;
}

/** The closest of `candidates` to `word` (case-insensitive edit distance ≤ 2), if any. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const c of candidates) {
    const d = levenshtein(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best;
}

function didYouMean(word: string, candidates: readonly string[]): string {
  const c = closest(word, candidates);
  return c === undefined ? "" : ` (did you mean ${JSON.stringify(c)}?)`;
}

function levenshtein(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(
        (prev[j] as number) + 1,
        (cur[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = cur;
  }
  return prev[b.length] as number;
}

/** A value quoted for an error message: one line, at most 60 characters. */
function show(v: string): string {
  const cut = v.length > 60 ? `${v.slice(0, 60)}…` : v;
  return JSON.stringify(cut);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ");
}
