/**
 * Finds the current relay entry of a Miniserver: `GET <connect>/<serial>/mcp` answers
 * 307/308 with `Location` = entry. The entry is cached in SQLite and re-resolved only when
 * the caller says it failed. connect is rate limited (about 10 requests/min per IP, 429 +
 * Retry-After), and that budget is shared with everything else on the same address, so:
 * - every GET counts against our own budget (default 5 per rolling minute); past it, the entry
 *   connect named last is tried again, or (none yet) resolve fails at once with UNAVAILABLE and
 *   `retryAt`, without asking;
 * - a 404 (connect does not know the serial) is a configuration error: asked again after 60 s,
 *   then 2, 4 … up to 15 min, and until then answered from memory — never more than 2/min;
 * - an entry connect named moments ago that has never worked is tried again before connect is
 *   asked again (at most every 30 s): a relay outage does not turn into a stream of resolves;
 * - a 429 is honoured (Retry-After), and never hides an earlier 404: the error keeps naming it.
 * Transient failures (network, 5xx) back off with jitter, bounded.
 */
import pRetry, { AbortError } from "p-retry";
import type { Logger } from "pino";
import { UpstreamError } from "../contracts.js";
import type { TokenStore } from "../store/tokens.js";
import { type BodylessAnswer, type BodylessGet, bodylessGet } from "./http.js";
import { requireSecureUrl, safeUrl } from "./url.js";

export interface ResolverOptions {
  /** connect base, e.g. https://connect.loxonecloud.com (http:// only for loopback). */
  connectUrl: string;
  serial: string;
  store: TokenStore;
  logger: Logger;
  /** The GET to connect (default: node:http, `bodylessGet`); fetch fits too. */
  fetch?: BodylessGet;
  /** Longest Retry-After (ms) we wait for inline; a longer one fails at once with UNAVAILABLE (default 15 s). */
  maxRetryAfterMs?: number;
  /** Retries for transient failures (network, 5xx) per resolve (default 3). */
  retries?: number;
  /** First backoff delay (default 500 ms); doubles with jitter up to maxBackoffMs (default 5 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Timeout of one connect request (default 10 s). */
  requestTimeoutMs?: number;
  /** At most this many GETs to connect per rolling minute (default 5; connect allows ~10 per IP). */
  budgetPerMinute?: number;
  /** After a 404 (unknown serial): first check again after this long (default 60 s), doubling… */
  notFoundRetryMs?: number;
  /** …up to this (default 15 min). */
  notFoundMaxRetryMs?: number;
  /**
   * An entry resolved less than this long ago that has not worked yet is kept when it fails
   * (tried again with backoff) instead of asking connect again (default 30 s).
   */
  minReresolveMs?: number;
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

/**
 * connect says the serial does not exist (or answers something that is not a redirect): a
 * configuration problem. `retryAt` (epoch ms), when set, is the next time connect is asked.
 */
export class RelayConfigError extends UpstreamError {
  constructor(
    message: string,
    readonly retryAt?: number,
  ) {
    super("UNAVAILABLE", message, undefined, retryAt === undefined ? undefined : { retryAt });
    this.name = "RelayConfigError";
  }
}

/** Our own connect budget is spent for now (see `budgetPerMinute`). */
export class ConnectBudgetError extends RelayUnavailableError {
  constructor(message: string, retryAt: number) {
    super(message, retryAt);
    this.name = "ConnectBudgetError";
  }
}

/** The next time `err` says asking again makes sense (epoch ms), if it says so. */
export function retryAtOf(err: unknown): number | undefined {
  if (err instanceof RelayUnavailableError || err instanceof RelayConfigError) return err.retryAt;
  return undefined;
}

class TransientError extends Error {}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export class RelayResolver {
  private readonly connect: URL;
  private readonly fetchFn: BodylessGet;
  private inflight: Promise<string> | undefined;
  private memo: string | undefined;
  /** When `memo` came from connect in this process (0: loaded from the store, age unknown). */
  private memoResolvedAt = 0;
  /** `memo` carried a working session since it was resolved. */
  private memoConfirmed = false;
  /** The last entry connect named (kept after `invalidate`, reused when the budget is spent). */
  private lastKnown: string | undefined;
  /** What went wrong with the last GET that failed (named when the budget stops us). */
  private lastTrouble: string | undefined;
  private blockedUntil = 0;
  /** Times of our GETs to connect within the last minute (the budget). */
  private readonly sent: number[] = [];
  /** connect answered 404: the root cause, kept until connect redirects again. */
  private notFound: { message: string; count: number; nextAt: number } | undefined;
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
    this.fetchFn = opts.fetch ?? bodylessGet();
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

  /** Why connect cannot give us an entry, when it is a configuration problem (404). */
  configProblem(): string | undefined {
    return this.notFound?.message;
  }

  /** The cached entry carried a working session: when it fails, ask connect again at once. */
  confirm(entry: string): void {
    if (this.cached() === entry) this.memoConfirmed = true;
  }

  /** The cached entry, or a fresh resolve when there is none. */
  async entry(): Promise<string> {
    return this.cached() ?? this.resolve("no cached relay entry");
  }

  /**
   * Forgets `failed` (if it is still the cached entry): the next `entry()` asks connect again.
   * Call this when the entry failed (refused, reset, DNS, TLS, 502/503/504). An entry connect
   * named less than `minReresolveMs` ago that never carried a session is kept (asking again
   * so soon would most likely get the same answer and spend connect's rate budget): returns
   * false then, true when the entry was forgotten.
   */
  invalidate(failed: string): boolean {
    if (this.cached() !== failed) return true;
    const age = Date.now() - this.memoResolvedAt;
    if (this.memoResolvedAt > 0 && !this.memoConfirmed && age < (this.opts.minReresolveMs ?? 30_000)) {
      return false;
    }
    this.lastKnown = failed;
    this.memo = undefined;
    this.memoResolvedAt = 0;
    this.memoConfirmed = false;
    this.opts.store.clearRelayEntry(this.opts.serial);
    return true;
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
    // A 404 is not asked again before its scheduled check (at most 2 requests a minute).
    if (this.notFound && this.notFound.nextAt > Date.now()) throw this.notFoundError();
    const blocked = this.rateLimitedUntil();
    if (blocked) throw this.rateLimitError(blocked);
    const budgetAt = this.budgetFreeAt();
    if (budgetAt) return this.overBudget(budgetAt);
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
          const budgetAt = this.budgetFreeAt();
          if (budgetAt) throw new AbortError(this.budgetError(budgetAt));
          this.sent.push(Date.now());
          this.connectRequests++;
          let res: BodylessAnswer;
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
            const count = (this.notFound?.count ?? 0) + 1;
            const first = this.opts.notFoundRetryMs ?? 60_000;
            const waitMs = Math.min(this.opts.notFoundMaxRetryMs ?? 15 * 60_000, first * 2 ** (count - 1));
            this.notFound = {
              message: `connect does not know Miniserver serial ${this.opts.serial} (HTTP 404 from ${safeUrl(url)}); check LOXONE_SERIAL`,
              count,
              nextAt: Date.now() + waitMs,
            };
            throw new AbortError(this.notFoundError());
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
            this.lastTrouble = error.message;
            if (retriesLeft > 0) {
              log.warn(
                { serial: this.opts.serial, attempt: attemptNumber, retriesLeft, error: error.message },
                "relay resolve attempt failed; backing off before the next try",
              );
            }
          },
        },
      );
      const previous = this.cached() ?? this.lastKnown;
      this.memo = entry;
      this.lastKnown = entry;
      this.memoResolvedAt = Date.now();
      this.memoConfirmed = false;
      if (this.notFound) {
        log.info({ serial: this.opts.serial }, "connect knows the serial again (it answered 404 before)");
        this.notFound = undefined;
      }
      this.opts.store.saveRelayEntry(this.opts.serial, entry);
      log.info(
        { serial: this.opts.serial, entry: safeUrl(entry), changed: previous !== entry },
        "relay entry resolved; MCP traffic goes there",
      );
      return entry;
    } catch (err) {
      if (err instanceof ConnectBudgetError) return this.overBudget(err.retryAt ?? Date.now());
      if (err instanceof UpstreamError) {
        log.warn({ serial: this.opts.serial, error: err.message }, "relay resolve failed");
        throw err;
      }
      const message = `could not resolve the relay for serial ${this.opts.serial} via ${safeUrl(url)}: ${(err as Error).message}; will retry later`;
      log.warn({ serial: this.opts.serial }, message);
      // Still the serial's fault if connect said 404 before this trouble.
      if (this.notFound) throw new RelayConfigError(`${this.notFound.message} (then: ${message})`);
      throw new RelayUnavailableError(message);
    }
  }

  /** Epoch ms when our budget allows the next GET (0: now). */
  private budgetFreeAt(): number {
    const now = Date.now();
    while (this.sent.length > 0 && (this.sent[0] ?? 0) <= now - 60_000) this.sent.shift();
    const max = Math.max(1, this.opts.budgetPerMinute ?? 5);
    if (this.sent.length < max) return 0;
    return (this.sent[this.sent.length - max] ?? now) + 60_000;
  }

  /**
   * Our budget is spent: rather than wait, try the entry connect named last once more (it
   * failed, but a relay that dropped one connection usually takes the next). Without one, fail
   * with UNAVAILABLE and the time the budget allows the next request.
   */
  private overBudget(at: number): string {
    const last = this.lastKnown;
    if (!last || this.notFound) throw this.budgetError(at);
    this.opts.logger.warn(
      { serial: this.opts.serial, entry: safeUrl(last), nextRequestInSec: secondsUntil(at) },
      "connect was asked often enough this minute; trying the last relay entry it named again instead",
    );
    this.memo = last;
    this.memoResolvedAt = Date.now();
    this.memoConfirmed = false;
    this.opts.store.saveRelayEntry(this.opts.serial, last);
    return last;
  }

  private notFoundError(): RelayConfigError {
    const nf = this.notFound!;
    return new RelayConfigError(`${nf.message}; next check with connect ${when(nf.nextAt)}`, nf.nextAt);
  }

  /** Rate limited by connect (429). An earlier 404 stays the reason: the limit is only the symptom. */
  private rateLimitError(until: number): UpstreamError {
    if (this.notFound) {
      const nextAt = Math.max(until, this.notFound.nextAt);
      return new RelayConfigError(
        `${this.notFound.message}; connect also rate limits us (HTTP 429): next check ${when(nextAt)}`,
        nextAt,
      );
    }
    return new RelayUnavailableError(
      `connect rate limit (HTTP 429) for serial ${this.opts.serial}: not asking again before ${new Date(until).toISOString()} (in ${secondsUntil(until)} s)`,
      until,
    );
  }

  /** Our own budget is spent: say so (and keep an earlier 404 as the reason). */
  private budgetError(at: number): RelayUnavailableError | RelayConfigError {
    const n = this.opts.budgetPerMinute ?? 5;
    if (this.notFound) {
      return new RelayConfigError(`${this.notFound.message}; next check with connect ${when(at)}`, at);
    }
    return new ConnectBudgetError(
      `not asking connect for serial ${this.opts.serial} again before ${new Date(at).toISOString()} (in ${secondsUntil(at)} s): it was asked ${n} times in the last minute, and its rate limit is shared by everything on this address${this.lastTrouble ? ` (last trouble: ${this.lastTrouble})` : ""}`,
      at,
    );
  }
}

function secondsUntil(at: number): number {
  return Math.max(1, Math.ceil((at - Date.now()) / 1000));
}

function when(at: number): string {
  return `at ${new Date(at).toISOString()} (in ${secondsUntil(at)} s)`;
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
