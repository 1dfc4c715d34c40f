/**
 * Finds the current relay entry of a Miniserver: `GET <connect>/<serial>/mcp` answers
 * 307/308 with `Location` = entry. The entry is cached in SQLite and re-resolved only when
 * the caller says it failed. connect is rate limited (429 + Retry-After): we honour it and
 * never loop; transient failures back off with jitter, bounded.
 */
import pRetry, { AbortError } from "p-retry";
import type { Logger } from "pino";
import { UpstreamError } from "../contracts.js";
import type { TokenStore } from "../store/tokens.js";
import { requireSecureUrl, safeUrl } from "./url.js";

export interface ResolverOptions {
  /** connect base, e.g. https://connect.loxonecloud.com (http:// only for loopback). */
  connectUrl: string;
  serial: string;
  store: TokenStore;
  logger: Logger;
  fetch?: typeof fetch;
  /** Longest Retry-After (ms) we wait for inline; a longer one fails at once with UNAVAILABLE (default 15 s). */
  maxRetryAfterMs?: number;
  /** Retries for transient failures (network, 5xx) per resolve (default 3). */
  retries?: number;
  /** First backoff delay (default 500 ms); doubles with jitter up to maxBackoffMs (default 5 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Timeout of one connect request (default 10 s). */
  requestTimeoutMs?: number;
}

/** Relay / connect unreachable right now; `retryAt` (epoch ms) says when trying again makes sense. */
export class RelayUnavailableError extends UpstreamError {
  constructor(
    message: string,
    readonly retryAt?: number,
  ) {
    super("UNAVAILABLE", message, undefined, retryAt === undefined ? undefined : { retryAt });
    this.name = "RelayUnavailableError";
  }
}

/** connect says the serial does not exist (or answers something that is not a redirect). */
export class RelayConfigError extends UpstreamError {
  constructor(message: string) {
    super("UNAVAILABLE", message);
    this.name = "RelayConfigError";
  }
}

class TransientError extends Error {}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export class RelayResolver {
  private readonly connect: URL;
  private readonly fetchFn: typeof fetch;
  private inflight: Promise<string> | undefined;
  private memo: string | undefined;
  private blockedUntil = 0;
  /** How many GETs this resolver sent to connect (for status/tests). */
  connectRequests = 0;
  /** How many resolve operations ran (each may send several GETs). */
  resolveCount = 0;

  constructor(private readonly opts: ResolverOptions) {
    this.connect = requireSecureUrl("connect URL (LOXONE_CONNECT_URL)", opts.connectUrl);
    if (!/^[A-Za-z0-9_-]+$/.test(opts.serial)) {
      throw new RelayConfigError(
        `serial ${JSON.stringify(opts.serial)} is not a Miniserver serial (letters and digits only); fix LOXONE_SERIAL`,
      );
    }
    this.fetchFn = opts.fetch ?? fetch;
  }

  /** URL asked for the redirect: `<connect>/<serial>/mcp`. */
  get lookupUrl(): string {
    const base = this.connect.href.endsWith("/") ? this.connect.href : `${this.connect.href}/`;
    return new URL(`${encodeURIComponent(this.opts.serial)}/mcp`, base).href;
  }

  /** The cached entry, if any (no network). */
  cached(): string | undefined {
    if (this.memo) return this.memo;
    this.memo = this.opts.store.getRelayEntry(this.opts.serial)?.entry;
    return this.memo;
  }

  /** Epoch ms until which connect asked us to stay away (0: not blocked). */
  rateLimitedUntil(): number {
    return this.blockedUntil > Date.now() ? this.blockedUntil : 0;
  }

  /** The cached entry, or a fresh resolve when there is none. */
  async entry(): Promise<string> {
    return this.cached() ?? this.resolve("no cached relay entry");
  }

  /**
   * Forgets `failed` (if it is still the cached entry): the next `entry()` asks connect again.
   * Call this when the entry failed (refused, reset, DNS, TLS, 502/503/504).
   */
  invalidate(failed: string): void {
    if (this.cached() === failed) {
      this.memo = undefined;
      this.opts.store.clearRelayEntry(this.opts.serial);
    }
  }

  /** Asks connect now (single flight: concurrent callers share one request). */
  resolve(reason: string): Promise<string> {
    if (!this.inflight) {
      this.inflight = this.doResolve(reason).finally(() => {
        this.inflight = undefined;
      });
    }
    return this.inflight;
  }

  private async doResolve(reason: string): Promise<string> {
    const log = this.opts.logger;
    this.resolveCount++;
    const url = this.lookupUrl;
    const blocked = this.rateLimitedUntil();
    if (blocked) throw this.rateLimitError(blocked);
    log.info(
      { serial: this.opts.serial, connect: safeUrl(url), reason },
      "resolving relay entry via connect",
    );
    const maxRetryAfterMs = this.opts.maxRetryAfterMs ?? 15_000;
    try {
      const entry = await pRetry(
        async () => {
          const until = this.rateLimitedUntil();
          if (until) throw new AbortError(this.rateLimitError(until));
          this.connectRequests++;
          let res: Response;
          try {
            res = await this.fetchFn(url, {
              method: "GET",
              redirect: "manual",
              headers: { accept: "application/json, text/event-stream" },
              signal: AbortSignal.timeout(this.opts.requestTimeoutMs ?? 10_000),
            });
          } catch (err) {
            throw new TransientError(`connect unreachable (${describeNetworkError(err)})`);
          }
          await res.body?.cancel().catch(() => {});
          const location = res.headers.get("location");
          if (REDIRECTS.has(res.status) && location) {
            let entryUrl: URL;
            try {
              entryUrl = requireSecureUrl("relay entry from connect", new URL(location, url));
            } catch (err) {
              throw new AbortError(new RelayConfigError((err as Error).message));
            }
            return entryUrl.href;
          }
          if (res.status === 429) {
            const waitMs = parseRetryAfter(res.headers.get("retry-after")) ?? 60_000;
            this.blockedUntil = Date.now() + waitMs;
            if (waitMs > maxRetryAfterMs) throw new AbortError(this.rateLimitError(this.blockedUntil));
            log.warn(
              { serial: this.opts.serial, retryAfterSec: Math.ceil(waitMs / 1000) },
              "connect rate limit hit (429); waiting as asked before one more try",
            );
            await delay(waitMs);
            throw new TransientError("connect rate limit (429)");
          }
          if (res.status === 404) {
            throw new AbortError(
              new RelayConfigError(
                `connect does not know Miniserver serial ${this.opts.serial} (HTTP 404 from ${safeUrl(url)}); check LOXONE_SERIAL`,
              ),
            );
          }
          if (res.status >= 500 || res.status === 408) {
            throw new TransientError(`connect answered HTTP ${res.status}`);
          }
          throw new AbortError(
            new RelayUnavailableError(
              `connect answered HTTP ${res.status} without a relay redirect for serial ${this.opts.serial}; is the Miniserver registered for remote connect?`,
            ),
          );
        },
        {
          retries: this.opts.retries ?? 3,
          minTimeout: this.opts.minBackoffMs ?? 500,
          maxTimeout: this.opts.maxBackoffMs ?? 5_000,
          randomize: true,
          onFailedAttempt: ({ error, attemptNumber, retriesLeft }) => {
            if (retriesLeft > 0) {
              log.warn(
                { serial: this.opts.serial, attempt: attemptNumber, retriesLeft, error: error.message },
                "relay resolve attempt failed; backing off before the next try",
              );
            }
          },
        },
      );
      const previous = this.cached();
      this.memo = entry;
      this.opts.store.saveRelayEntry(this.opts.serial, entry);
      log.info(
        { serial: this.opts.serial, entry: safeUrl(entry), changed: previous !== entry },
        "relay entry resolved; MCP traffic goes there",
      );
      return entry;
    } catch (err) {
      if (err instanceof UpstreamError) {
        log.warn({ serial: this.opts.serial, error: err.message }, "relay resolve failed");
        throw err;
      }
      const message = `could not resolve the relay for serial ${this.opts.serial} via ${safeUrl(url)}: ${(err as Error).message}; will retry later`;
      log.warn({ serial: this.opts.serial }, message);
      throw new RelayUnavailableError(message);
    }
  }

  private rateLimitError(until: number): RelayUnavailableError {
    const sec = Math.max(1, Math.ceil((until - Date.now()) / 1000));
    return new RelayUnavailableError(
      `connect rate limit (HTTP 429) for serial ${this.opts.serial}: not asking again before ${new Date(until).toISOString()} (in ${sec} s)`,
      until,
    );
  }
}

/** Retry-After: delta seconds or an HTTP date. Returns ms, or undefined when absent/garbled. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

/** A short description of a fetch failure (cause code), never a header or body. */
export function describeNetworkError(err: unknown): string {
  const code = networkErrorCode(err);
  const msg = err instanceof Error ? err.message : String(err);
  return code ? `${code}` : msg;
}

export function networkErrorCode(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    if ((e as { name?: string }).name === "TimeoutError") return "TIMEOUT";
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
