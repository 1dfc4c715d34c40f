/**
 * The configuration's shape: config.json's schema, the daemon's resolved configuration and the
 * error that names every problem found (one key and one line of what to do each).
 */
import type { Env, LoxmcpPaths } from "@loxmcp/common";
import { type PolicySectionInput, PolicySectionSchema } from "../policy/settings.js";
import { array, boolean, type Infer, number, object, optional, string } from "./rules.js";

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
export const ConfigFileSchema = object(
  {
    serial: optional(string()),
    user: optional(string()),
    password: optional(string()),
    passwordFile: optional(string()),
    passwordCommand: optional(string()),
    connectUrl: optional(string()),
    upstreamUrl: optional(string()),
    logLevel: optional(string()),
    pingIntervalSec: optional(number({ positive: true })),
    idleCheckSec: optional(number({ positive: true })),
    requestTimeoutSec: optional(number({ positive: true })),
    shutdownGraceSec: optional(number({ min: 0 })),
    allowedResources: optional(array(string())),
    /** An editor's schema reference; ignored. */
    $schema: optional(string()),
    /** Socket limits (docs/daemon.md, "Limits"); each has a default. */
    limits: optional(
      object({
        maxConnections: optional(number({ int: true, min: 4, max: 10_000 })),
        controlReserve: optional(number({ int: true, min: 1, max: 1000 })),
        maxInFlightPerConnection: optional(number({ int: true, min: 1, max: 100_000 })),
        upstreamConcurrency: optional(number({ int: true, min: 1, max: 1000 })),
        upstreamQueue: optional(number({ int: true, min: 1, max: 1_000_000 })),
        maxBufferedMB: optional(number({ min: 1, max: 1024 })),
        stalledClientSec: optional(number({ min: 1, max: 3600 })),
        pageConnections: optional(number({ int: true, min: 1, max: 1000 })),
      }),
    ),
    policy: optional(PolicySectionSchema),
    /** The person's local page (docs/page.md): on 127.0.0.1 only; port 0 picks a free one. */
    page: optional(
      object({
        enabled: optional(boolean()),
        port: optional(number({ int: true, min: 0, max: 65535 })),
      }),
    ),
    /** daemon.log rotation (docs/daemon.md, "Files"); the environment overrides each key. */
    log: optional(
      object({
        maxSizeMB: optional(number()),
        files: optional(number()),
      }),
    ),
  },
  { closed: false },
);
export type ConfigFile = Infer<typeof ConfigFileSchema> & Record<string, unknown>;

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
