/**
 * The daemon's one OAuth driver: logs in headlessly through the SDK's `auth()`, refreshes
 * proactively (60 s before expiry) in a single flight (one /token call however many requests
 * need a token), re-logs in once on invalid_grant (the SDK does that inside `auth()`), and stops
 * in `auth_failed` when the credentials are rejected — no hammering until `reset()`.
 *
 * Each flight runs in this process (flight.ts) or, in the daemon, in a short-lived child process
 * (`childProcess`, flight-child.ts) so that what only a login or refresh needs never loads into
 * the long-lived daemon. Either way the flight's failure is classified here.
 */
import { ServerError, TemporarilyUnavailableError } from "@modelcontextprotocol/sdk/server/auth/errors.js";
import type { OAuthClientInformationMixed } from "@modelcontextprotocol/sdk/shared/auth.js";
import type { Logger } from "pino";
import type { StoredTokens, TokenStore } from "../../store/tokens.js";
import { networkErrorCode } from "../resolver.js";
import { safeUrl } from "../url.js";
import { truncate } from "./endpoints.js";
import {
  AuthError,
  AuthFailedError,
  AuthorizationDeniedError,
  AuthUnavailableError,
  CredentialsUnavailableError,
  HelperFailedError,
  LoginRejectedError,
  ResourceMismatchError,
} from "./errors.js";
import { type FlightRunner, type FlightSettings, LocalFlight } from "./flight.js";
import type { ResourcePolicy } from "./resource.js";

/** What a 401/403 `WWW-Authenticate: Bearer …` told us. */
export interface AuthChallenge {
  resourceMetadataUrl?: URL;
  scope?: string;
  error?: string;
}

export interface AuthManagerOptions {
  /** Upstream key: the Loxone serial, or the MCP URL in direct mode. */
  key: string;
  store: TokenStore;
  /** The user, or a function yielding the current one (read at each login). */
  user: string | (() => string);
  password: string | (() => Promise<string>);
  logger: Logger;
  resourcePolicy: ResourcePolicy;
  fetch?: typeof fetch;
  redirectUri?: string;
  clientName?: string;
  scope?: string;
  tokenEndpointAuthMethod?: string;
  preRegisteredClient?: OAuthClientInformationMixed;
  /** Refresh this long before the access token expires (default 60 s). */
  refreshMarginMs?: number;
  /** Consecutive non-network failures before giving up with auth_failed (default 3). */
  maxConsecutiveFailures?: number;
  /** Timeout of each HTTP request to the authorization server (default 15 s). */
  httpTimeoutMs?: number;
  /** Drops pooled connections (called before a request whose connection broke is sent again). */
  resetConnections?: () => void;
  /**
   * Fly each login and refresh in a child process (flight-child.ts): the daemon's entry script
   * (run with `--oauth-helper`) and the database file the child opens. Without it (tests with an
   * injected fetch, the one-shot probe) flights run in this process.
   */
  childProcess?: { entry: string; dbPath: string; deadlineMs?: number; version?: string } | undefined;
}

type Mode = "refresh" | "login";

export class AuthManager {
  readonly counters = { logins: 0, refreshes: 0 };
  private flight: Promise<void> | undefined;
  private failure: string | undefined;
  private consecutiveFailures = 0;
  private readonly log: Logger;
  /** Flies one login or refresh (here or in a child process). */
  private readonly fly: FlightRunner;

  constructor(private readonly o: AuthManagerOptions) {
    this.log = o.logger;
    const settings: FlightSettings = {
      key: o.key,
      resourcePolicy: o.resourcePolicy,
      redirectUri: o.redirectUri,
      clientName: o.clientName,
      scope: o.scope,
      tokenEndpointAuthMethod: o.tokenEndpointAuthMethod,
      preRegisteredClient: o.preRegisteredClient,
      httpTimeoutMs: o.httpTimeoutMs ?? 15_000,
    };
    const user = () => (typeof o.user === "function" ? o.user() : o.user);
    const password = async () => (typeof o.password === "function" ? await o.password() : o.password);
    if (o.childProcess) {
      const child = o.childProcess;
      let runner: Promise<FlightRunner> | undefined;
      this.fly = async (req) => {
        runner ??= import("./flight-child.js").then((m) =>
          m.childFlight(settings, { ...child, store: o.store, user, password, logger: this.log }),
        );
        return (await runner)(req);
      };
    } else {
      this.fly = new LocalFlight({
        ...settings,
        store: o.store,
        user,
        password,
        logger: this.log,
        fetch: o.fetch,
        resetConnections: o.resetConnections,
      }).run;
    }
  }

  /** Why login is paused (auth_failed), or undefined. */
  get failedReason(): string | undefined {
    return this.failure;
  }

  /** Epoch ms when the stored access token expires (undefined: unknown or none). */
  tokenExpiresAt(): number | undefined {
    return this.o.store.getTokens(this.o.key)?.expiresAt;
  }

  hasTokens(): boolean {
    return this.o.store.getTokens(this.o.key) !== undefined;
  }

  /**
   * The access token to send now, refreshed first (single flight) when it expires within the
   * margin. undefined when there are no tokens yet (the server will answer 401 and we log in).
   */
  async accessToken(serverUrl: string): Promise<string | undefined> {
    if (this.flight) await this.flight;
    const stored = this.o.store.getTokens(this.o.key);
    if (!stored) return undefined;
    if (stored.expiresAt !== undefined && stored.expiresAt - Date.now() < this.margin(stored)) {
      if (this.failure) throw new AuthFailedError(this.failure);
      await this.authorize(serverUrl, {}, "refresh", stored.tokens.access_token);
      return this.o.store.getTokens(this.o.key)?.tokens.access_token;
    }
    return stored.tokens.access_token;
  }

  /**
   * The server answered 401 to `usedToken` (undefined: we sent none). Refreshes or logs in,
   * unless another caller already replaced that token. Concurrent callers share one flight.
   */
  async handleUnauthorized(
    serverUrl: string,
    usedToken: string | undefined,
    challenge: AuthChallenge,
  ): Promise<void> {
    await this.authorize(serverUrl, challenge, "refresh", usedToken);
  }

  /** 403 insufficient_scope: a new authorization (not a refresh) for the scope the server asked. */
  async stepUp(serverUrl: string, challenge: AuthChallenge): Promise<void> {
    await this.authorize(serverUrl, challenge, "login", undefined);
  }

  /** Drops the tokens and logs in again now. */
  async login(serverUrl: string, challenge: AuthChallenge = {}): Promise<void> {
    await this.authorize(serverUrl, challenge, "login", undefined);
  }

  /** Leaves auth_failed (after `relogin` or a config change); the next need logs in again. */
  reset(): void {
    this.failure = undefined;
    this.consecutiveFailures = 0;
  }

  private async authorize(
    serverUrl: string,
    challenge: AuthChallenge,
    mode: Mode,
    usedToken: string | undefined,
  ): Promise<void> {
    if (this.flight) {
      // Somebody is already refreshing / logging in: share that outcome.
      await this.flight;
      return;
    }
    if (this.failure) throw new AuthFailedError(this.failure);
    if (mode === "refresh" && usedToken !== undefined) {
      const current = this.o.store.getTokens(this.o.key);
      const fresh =
        current?.expiresAt === undefined || current.expiresAt - Date.now() >= this.margin(current);
      if (current && current.tokens.access_token !== usedToken && fresh) return; // replaced meanwhile
    }
    this.flight = this.run(serverUrl, challenge, mode).finally(() => {
      this.flight = undefined;
    });
    await this.flight;
  }

  private async run(serverUrl: string, challenge: AuthChallenge, mode: Mode): Promise<void> {
    try {
      await this.runOnce(serverUrl, challenge, mode);
    } catch (err) {
      // The cached authorization server lives elsewhere (e.g. on a relay that is gone): discover
      // it again from the server we talk to now, once.
      const cached = this.o.store.getDiscovery(this.o.key)?.authorizationServerUrl;
      if (
        !(err instanceof AuthError && err.code === "AUTH_UNAVAILABLE") ||
        err instanceof HelperFailedError ||
        !cached ||
        sameOrigin(cached, serverUrl)
      )
        throw err;
      this.log.warn(
        { authorizationServer: safeUrl(cached), upstream: safeUrl(serverUrl) },
        "cached authorization server unreachable; discovering it again from the current upstream",
      );
      this.o.store.clearDiscovery(this.o.key);
      await this.runOnce(serverUrl, challenge, mode);
    }
  }

  private async runOnce(serverUrl: string, challenge: AuthChallenge, mode: Mode): Promise<void> {
    const { key, store } = this.o;
    if (mode === "login") store.clearTokens(key);
    const hadTokens = store.getTokens(key) !== undefined;
    this.log.info(
      { upstream: safeUrl(serverUrl), action: hadTokens ? "refresh" : "login" },
      hadTokens ? "refreshing the access token" : "logging in (headless OAuth)",
    );
    try {
      const did = await this.fly({ serverUrl, challenge });
      if (did === "login") {
        this.counters.logins++;
        this.log.info(
          { upstream: safeUrl(serverUrl), expiresInSec: this.expiresInSec() },
          "logged in; tokens saved, connecting with them",
        );
      } else {
        this.counters.refreshes++;
        this.log.info(
          { upstream: safeUrl(serverUrl), expiresInSec: this.expiresInSec() },
          "access token refreshed and saved (refresh token rotated atomically)",
        );
      }
      this.consecutiveFailures = 0;
    } catch (err) {
      throw this.classify(err);
    } finally {
      store.clearCodeVerifier(key);
    }
  }

  /** Refresh margin: 60 s by default, but at most half the token's lifetime. */
  private margin(t: StoredTokens): number {
    const margin = this.o.refreshMarginMs ?? 60_000;
    if (t.expiresAt === undefined) return margin;
    return Math.min(margin, Math.max(0, (t.expiresAt - t.obtainedAt) / 2));
  }

  private classify(err: unknown): Error {
    const log = this.log;
    if (err instanceof CredentialsUnavailableError) {
      this.failure = err.message;
      log.error(
        { reason: err.message },
        "the password could not be obtained; staying in auth_failed until relogin or a config change",
      );
      return err;
    }
    // (the flight named the endpoint that failed: endpoints.ts)
    if (
      err instanceof LoginRejectedError ||
      err instanceof AuthorizationDeniedError ||
      err instanceof ResourceMismatchError
    ) {
      this.failure = err.message;
      log.error(
        { reason: err.message },
        "login refused; staying in auth_failed until relogin or a config change",
      );
      return err;
    }
    if (err instanceof AuthFailedError) return err;
    if (isNetworkError(err)) {
      const e =
        err instanceof AuthError
          ? err
          : new AuthUnavailableError(
              `the authorization server is unavailable (${networkErrorCode(err) ?? truncate(err instanceof Error ? err.message : String(err))}); will retry later`,
            );
      log.warn(
        { reason: e.message },
        "login/refresh failed on the network; the session backs off and retries",
      );
      return e;
    }
    this.consecutiveFailures++;
    const text = truncate(err instanceof Error ? err.message : String(err));
    const max = this.o.maxConsecutiveFailures ?? 3;
    if (this.consecutiveFailures >= max) {
      this.failure = `login failed ${this.consecutiveFailures} times in a row: ${text}`;
      log.error({ reason: this.failure }, "giving up logging in; staying in auth_failed until relogin");
      return new AuthFailedError(this.failure);
    }
    log.warn(
      { reason: text, failures: this.consecutiveFailures, giveUpAfter: max },
      "login/refresh failed; the session backs off and retries",
    );
    return err instanceof AuthError ? err : new AuthUnavailableError(`login/refresh failed: ${text}`);
  }

  private expiresInSec(): number | undefined {
    const at = this.tokenExpiresAt();
    return at === undefined ? undefined : Math.round((at - Date.now()) / 1000);
  }
}

function isNetworkError(err: unknown): boolean {
  if (err instanceof AuthError) return err.code === "AUTH_UNAVAILABLE";
  // The authorization server is overloaded or failing (5xx, temporarily_unavailable): not a rejection.
  if (err instanceof TemporarilyUnavailableError) return true;
  if (err instanceof ServerError && /^HTTP (5\d\d|429)\b/.test(err.message)) return true;
  if (networkErrorCode(err) !== undefined) return true;
  return err instanceof TypeError && /fetch failed|network/i.test(err.message);
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}
