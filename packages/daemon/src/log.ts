/**
 * Logging: pino JSON lines to `<log dir>/daemon.log` (file 0600, dir 0700), plus short
 * human-readable lines on stderr when stderr is a TTY or LOXMCP_DEBUG=1.
 *
 * Secrets never reach a line: pino `redact` censors known secret fields, and every
 * serialized line is scrubbed of the registered secret values (the password, current tokens)
 * before it is written, wherever they appear (messages, error stacks, URLs).
 */
import { closeSync } from "node:fs";
import { ensurePrivateDir, openPrivateAppend } from "@loxmcp/common";
import pino, { type Logger } from "pino";

export type { Logger } from "pino";

const SECRET_KEYS = [
  "authorization",
  "Authorization",
  "password",
  "LOXONE_PASSWORD",
  "access_token",
  "accessToken",
  "refresh_token",
  "refreshToken",
  "id_token",
  "token",
  "code_verifier",
  "codeVerifier",
  "client_secret",
  "clientSecret",
  "cookie",
  "Cookie",
  "set-cookie",
  "Set-Cookie",
];

/**
 * pino redact paths: each secret key at depth 0..3. `code` (the OAuth authorization code) is
 * listed only where it is a code, so that `err.code` stays readable.
 */
export const REDACT_PATHS: string[] = [
  ...SECRET_KEYS.flatMap((k) => {
    const key = /^[A-Za-z_$][\w$]*$/.test(k) ? `.${k}` : `["${k}"]`;
    const top = key.startsWith(".") ? key.slice(1) : key;
    return [top, `*${key}`, `*.*${key}`, `*.*.*${key}`];
  }),
  "code",
  "params.code",
  "query.code",
  "body.code",
  "form.code",
  "tokens.code",
];

export const CENSOR = "[redacted]";

/** Secret values scrubbed from every log line and from error text shown to clients. */
export class SecretRegistry {
  private readonly values = new Set<string>();
  private readonly providers: Array<() => Array<string | undefined | null>> = [];

  /**
   * Registers a function that yields current secret values (e.g. the tokens in the store);
   * it runs before every scrub and what it yields stays registered (rotated tokens too).
   */
  addProvider(provider: () => Array<string | undefined | null>): void {
    this.providers.push(provider);
  }

  /** Registers a secret value (ignored when shorter than 4 characters: too many false hits). */
  add(secret: string | undefined | null): void {
    if (typeof secret === "string" && secret.length >= 4) this.values.add(secret);
  }

  delete(secret: string | undefined | null): void {
    if (typeof secret === "string") this.values.delete(secret);
  }

  list(): string[] {
    for (const p of this.providers) {
      try {
        for (const v of p()) this.add(v);
      } catch {
        // a failing provider (e.g. DB closed) must not break logging
      }
    }
    return [...this.values];
  }

  scrub(text: string): string {
    return scrub(text, this.list());
  }
}

/** The process-wide registry (the relay registers tokens here as it gets them). */
export const secrets = new SecretRegistry();

const URL_SECRET_PARAMS =
  /([?&#](?:code|access_token|refresh_token|id_token|token|code_verifier|client_secret|password)=)[^&#"\s]+/g;
const BEARER = /(Bearer\s+)[A-Za-z0-9._~+/=-]+/g;

/**
 * Replaces every occurrence of each secret (raw and JSON/URL-encoded forms) with "[redacted]",
 * plus secret-looking URL query parameters and Bearer tokens.
 */
export function scrub(text: string, secretValues: readonly string[]): string {
  let out = text.replace(URL_SECRET_PARAMS, `$1${"[redacted]"}`).replace(BEARER, `$1${"[redacted]"}`);
  for (const s of secretValues) {
    if (!s || s.length < 4) continue;
    const forms = new Set([s, JSON.stringify(s).slice(1, -1), encodeURIComponent(s)]);
    for (const f of forms) {
      if (f && out.includes(f)) out = out.split(f).join(CENSOR);
    }
  }
  return out;
}

export interface CreateLoggerOptions {
  level: string;
  /**
   * The JSON log file; its directory is created 0700 and the file 0600. A symbolic link, a
   * non-regular file or another user's file there is refused (UnsafeFileError: "remove it").
   */
  file?: string;
  logDir?: string;
  /** Human-readable lines on stderr (TTY or LOXMCP_DEBUG). */
  pretty?: boolean;
  registry?: SecretRegistry;
}

interface WritableLike {
  write(chunk: string): unknown;
}

export function createLogger(opts: CreateLoggerOptions): { logger: Logger; close(): void } {
  const registry = opts.registry ?? secrets;
  const streams: pino.StreamEntry[] = [];
  let fd: number | undefined;
  if (opts.file) {
    if (opts.logDir) ensurePrivateDir(opts.logDir);
    fd = openPrivateAppend(opts.file);
    const dest = pino.destination({ fd, sync: true });
    streams.push({ level: "trace", stream: scrubbingStream(dest, registry) });
  }
  if (opts.pretty) {
    streams.push({ level: "trace", stream: scrubbingStream(prettyStderr(), registry) });
  }
  const logger = pino(
    {
      level: opts.level,
      base: { pid: process.pid },
      redact: { paths: REDACT_PATHS, censor: CENSOR },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: pino.stdSerializers.err },
    },
    streams.length > 0 ? pino.multistream(streams) : pino.destination({ dest: "/dev/null", sync: true }),
  );
  return {
    logger,
    close() {
      if (fd !== undefined) {
        try {
          closeSync(fd);
        } catch {
          // already closed
        }
        fd = undefined;
      }
    },
  };
}

function scrubbingStream(inner: WritableLike, registry: SecretRegistry): pino.DestinationStream {
  return {
    write(line: string) {
      inner.write(registry.scrub(line));
    },
  };
}

const LEVEL_NAMES: Record<number, string> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};

const SKIP_KEYS = new Set(["level", "time", "pid", "hostname", "msg"]);

/** One short line per record: `12:00:01 INFO  message key=value …`. */
function prettyStderr(): WritableLike {
  return {
    write(line: string) {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line);
      } catch {
        process.stderr.write(line);
        return;
      }
      const time = typeof rec.time === "string" ? rec.time.slice(11, 19) : "";
      const level = (LEVEL_NAMES[Number(rec.level)] ?? String(rec.level)).padEnd(5);
      const extras = Object.entries(rec)
        .filter(([k]) => !SKIP_KEYS.has(k))
        .map(([k, v]) => {
          if (k === "err" && v && typeof v === "object") {
            return `err=${JSON.stringify((v as { message?: unknown }).message ?? v)}`;
          }
          return `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`;
        })
        .join(" ");
      process.stderr.write(`${time} ${level} ${String(rec.msg ?? "")}${extras ? ` ${extras}` : ""}\n`);
    },
  };
}
