/**
 * Logging: pino JSON lines to `<log dir>/daemon.log` (file 0600, dir 0700), plus short
 * human-readable lines on stderr when stderr is a TTY or LOXMCP_DEBUG=1.
 *
 * Secrets never reach a line: pino `redact` censors known secret fields, and every
 * serialized line is scrubbed of the registered secret values (the password, current tokens)
 * before it is written, wherever they appear (messages, error stacks, URLs).
 */
import { closeSync, fstatSync, lstatSync, renameSync, unlinkSync, writeSync } from "node:fs";
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
  /** The secrets scrubbed from every line: the process's one registry (main.ts makes it). */
  registry: SecretRegistry;
  /** Size-based rotation of `file` (see `LogFile`); without it the file only grows. */
  rotate?: LogRotation;
}

interface WritableLike {
  write(chunk: string): unknown;
}

export function createLogger(opts: CreateLoggerOptions): { logger: Logger; close(): void } {
  const { registry } = opts;
  const streams: pino.StreamEntry[] = [];
  let file: LogFile | undefined;
  if (opts.file) {
    if (opts.logDir) ensurePrivateDir(opts.logDir);
    file = new LogFile(opts.file, opts.rotate ?? { maxBytes: 0, files: 0 });
    // Scrubbed before the file sees it: the byte count and every rotated file hold scrubbed lines.
    streams.push({ level: "trace", stream: scrubbingStream(file, registry) });
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
      file?.close();
    },
  };
}

export interface LogRotation {
  /** Rotate before a line would take the file past this many bytes; 0: never rotate. */
  maxBytes: number;
  /** Rotated files kept: `<file>.1` (newest) … `<file>.<files>`; 0: the old lines are dropped. */
  files: number;
}

/**
 * The daemon log file: appends whole lines with one synchronous write each, and rotates by size.
 *
 * The size is counted, not stat'ed: it starts at the file's size when opened and grows by the
 * bytes written, so a line costs one write(2). Before a line would take the file past
 * `maxBytes`, `<file>` is renamed to `<file>.1` (`.1` → `.2` … up to `.<files>`; the oldest is
 * removed) and a fresh `<file>` is opened with `openPrivateAppend` (O_NOFOLLOW, 0600, a regular
 * file of ours), so a line is never split across files and a file exceeds `maxBytes` only when
 * one line alone is larger. Only rename and unlink touch the rotated names: both act on the
 * directory entry, so a link planted at `<file>.N` is replaced or removed, never followed.
 *
 * Rotation renames `<file>` only while it is still the file this process writes (same device
 * and inode); if someone else moved it (another process, logrotate), the path is just reopened,
 * and if it was truncated (copytruncate) counting starts again from its size. If the rotation
 * fails (a directory at `<file>.1`, a link planted at `<file>`, a full disk), lines keep going
 * to the current file, a warning line says why, and it is tried again after another eighth of
 * `maxBytes`. A line that cannot be written at all is dropped
 * and counted; the next line that can be written is preceded by a warning saying how many
 * were lost. Nothing here throws into the code that logs.
 */
export class LogFile implements pino.DestinationStream {
  private fd: number | undefined;
  /** Bytes in the current file as far as this process knows. */
  private size: number;
  /** The size beyond which the next line rotates the file. */
  private limit: number;
  private lost = 0;
  private lostReason = "";
  /** A line was cut short by a failed write: start the next one on a new line. */
  private broken = false;
  /** Completed rotations (for tests). */
  rotations = 0;

  /** Opens `file` (throws UnsafeFileError for a link, a non-regular or foreign file). */
  constructor(
    readonly file: string,
    readonly rotation: LogRotation,
  ) {
    this.fd = openPrivateAppend(file);
    try {
      this.size = fstatSync(this.fd).size;
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
    this.limit = rotation.maxBytes;
  }

  write(line: string): void {
    if (this.fd === undefined) return;
    const buf = Buffer.from(line, "utf8");
    if (this.limit > 0 && this.size > 0 && this.size + buf.length > this.limit) this.rotate(buf.length);
    if (this.lost > 0) {
      const note = this.warning(
        `${this.lost} log line(s) could not be written to ${this.file} (${this.lostReason}) and are lost; check the disk's free space`,
      );
      if (!this.append(note)) {
        this.lost++;
        return;
      }
      this.lost = 0;
    }
    if (!this.append(buf)) this.lost++;
  }

  close(): void {
    const fd = this.fd;
    this.fd = undefined;
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
    }
  }

  /** Writes all of `buf`; false (and remembers why) when the write failed. */
  private append(buf: Buffer): boolean {
    const fd = this.fd;
    if (fd === undefined) return false;
    try {
      if (this.broken) {
        this.size += writeSync(fd, "\n");
        this.broken = false;
      }
      let off = 0;
      while (off < buf.length) {
        let n: number;
        try {
          n = writeSync(fd, buf, off);
        } catch (e) {
          if (off > 0) this.broken = true;
          throw e;
        }
        off += n;
        this.size += n;
      }
      return true;
    } catch (e) {
      this.lostReason = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      return false;
    }
  }

  /** Before a line of `len` bytes: a fresh file, unless the file is smaller than counted. */
  private rotate(len: number): void {
    const old = this.fd;
    if (old === undefined) return;
    let fresh: number | undefined;
    let size: number;
    try {
      const mine = fstatSync(old);
      // Truncated behind our back (logrotate's copytruncate): count again from what is there.
      if (mine.size < this.size && mine.size + len <= this.rotation.maxBytes) {
        this.size = mine.size;
        this.limit = this.rotation.maxBytes;
        return;
      }
      let atPath: ReturnType<typeof lstatSync> | undefined;
      try {
        atPath = lstatSync(this.file);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
      }
      if (atPath && atPath.ino === mine.ino && atPath.dev === mine.dev) this.shift();
      fresh = openPrivateAppend(this.file);
      size = fstatSync(fresh).size;
    } catch (e) {
      if (fresh !== undefined) closeSync(fresh);
      const why = (e as Error).message;
      this.limit = this.size + Math.max(Math.floor(this.rotation.maxBytes / 8), 4096);
      this.append(
        this.warning(
          `could not rotate ${this.file} (${why}); lines keep going to the file already open, next try after ${this.limit - this.size} more bytes`,
        ),
      );
      return;
    }
    this.fd = fresh;
    this.size = size;
    this.limit = this.rotation.maxBytes;
    this.broken = false;
    this.rotations++;
    try {
      closeSync(old);
    } catch {
      // nothing left to lose: every line went out with a synchronous write
    }
  }

  /** `<file>.N-1` → `<file>.N` … `<file>` → `<file>.1`; throws when `<file>` cannot be moved. */
  private shift(): void {
    const keep = this.rotation.files;
    const name = (i: number) => `${this.file}.${i}`;
    const ignore = (fn: () => void) => {
      try {
        fn();
      } catch {
        // missing (ENOENT), or something that is not ours to fix here: the next rename replaces it
      }
    };
    if (keep === 0) {
      unlinkSync(this.file);
      return;
    }
    // Left over from a larger `files` setting; stops at the first gap.
    for (let i = keep + 1; i <= keep + 100; i++) {
      try {
        unlinkSync(name(i));
      } catch {
        break;
      }
    }
    ignore(() => unlinkSync(name(keep)));
    for (let i = keep - 1; i >= 1; i--) ignore(() => renameSync(name(i), name(i + 1)));
    renameSync(this.file, name(1));
  }

  /** A pino-shaped warning line written by the file itself (it holds only paths and errno text). */
  private warning(msg: string): Buffer {
    const rec = { level: 40, time: new Date().toISOString(), pid: process.pid, component: "log", msg };
    return Buffer.from(`${JSON.stringify(rec)}\n`, "utf8");
  }
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
