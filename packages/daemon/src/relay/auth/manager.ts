/**
 * The daemon's one OAuth driver: logs in headlessly through the SDK's `auth()`, refreshes
 * proactively (60 s before expiry) in a single flight (one /token call however many requests
 * need a token), re-logs in once on invalid_grant (the SDK does that inside `auth()`), and stops
 * in `auth_failed` when the credentials are rejected — no hammering until `reset()`.
 */
import { auth } from "@modelcontextprotocol/sdk/client/auth.js";
import {
  OAuthError,
  ServerError,
  TemporarilyUnavailableError,
} from "@modelcontextprotocol/sdk/server/auth/errors.js";
import type { OAuthClientInformationMixed } from "@modelcontextprotocol/sdk/shared/auth.js";
import type { Logger } from "pino";
import type { StoredTokens, TokenStore } from "../../store/tokens.js";
import { isBrokenConnection, replayable } from "../http.js";
import { networkErrorCode } from "../resolver.js";
import { safeUrl } from "../url.js";
import {
  AuthError,
  AuthFailedError,
  AuthorizationDeniedError,
  AuthUnavailableError,
  CredentialsUnavailableError,
  LoginFormError,
  LoginRejectedError,
  ResourceMismatchError,
} from "./errors.js";
import type { HeadlessLoginOptions } from "./login-form.js";
import { StoreOAuthProvider } from "./provider.js";
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
}

type Mode = "refresh" | "login";

/** Which endpoint of the authorization server a request went to (named in errors). */
type Endpoint =
  | "protected-resource metadata"
  | "authorization-server metadata"
  | "registration"
  | "authorize"
  | "token";

/** The last request to the authorization server that failed in the current flight. */
interface EndpointFailure {
  endpoint: Endpoint;
  /** grant_type of a token request. */
  grant?: string;
  url: string;
  status?: number;
  code?: string;
}

export class AuthManager {
  readonly provider: StoreOAuthProvider;
  readonly counters = { logins: 0, refreshes: 0 };
  private flight: Promise<void> | undefined;
  private failure: string | undefined;
  private consecutiveFailures = 0;
  private pendingCode: string | undefined;
  /** The last failed request to the authorization server in the current flight. */
  private lastFailure: EndpointFailure | undefined;
  /** A refresh in the current flight failed at the token endpoint (the SDK then tries a new login). */
  private refreshFailure: EndpointFailure | undefined;
  private readonly log: Logger;
  private readonly fetchFn: typeof fetch;

  constructor(private readonly o: AuthManagerOptions) {
    this.log = o.logger;
    const providerOptions: ConstructorParameters<typeof StoreOAuthProvider>[0] = {
      key: o.key,
      store: o.store,
      resourcePolicy: o.resourcePolicy,
      onAuthorizationUrl: (url, state) => this.runHeadlessLogin(url, state),
    };
    if (o.redirectUri !== undefined) providerOptions.redirectUri = o.redirectUri;
    if (o.clientName !== undefined) providerOptions.clientName = o.clientName;
    if (o.scope !== undefined) providerOptions.scope = o.scope;
    if (o.tokenEndpointAuthMethod !== undefined)
      providerOptions.tokenEndpointAuthMethod = o.tokenEndpointAuthMethod;
    if (o.preRegisteredClient !== undefined) providerOptions.preRegisteredClient = o.preRegisteredClient;
    this.provider = new StoreOAuthProvider(providerOptions);
    const base = o.fetch ?? fetch;
    const timeoutMs = o.httpTimeoutMs ?? 15_000;
    // Every call to the authorization server is bounded, so a hanging server cannot wedge the
    // single flight that every request waits on.
    // Failures are recorded per endpoint, so errors name the endpoint that failed.
    // A request whose connection broke before any answer (typically a pooled keep-alive connection
    // the server closed while the daemon slept) is sent again on a new connection: the OAuth
    // requests may be repeated. A refresh that did reach the server and rotated the refresh token
    // then ends in invalid_grant and one full login — the last resort, not the rule. A form posted
    // on the login pages is not: a repeated post could meet a used one-time field and read as a
    // rejected password; that login fails as "retry later" and starts again from /authorize.
    this.fetchFn = async (input, init) => {
      const url = input instanceof Request ? input.url : String(input);
      for (let attempt = 1; ; attempt++) {
        const t = AbortSignal.timeout(timeoutMs);
        try {
          const res = await base(input, {
            ...init,
            signal: init?.signal ? AbortSignal.any([init.signal, t]) : t,
          });
          // A later success means an earlier failure was handled (e.g. a metadata URL tried first).
          if (res.status >= 400) this.noteFailure(url, init, { status: res.status });
          else this.lastFailure = undefined;
          return res;
        } catch (err) {
          const code = networkErrorCode(err);
          const endpoint = this.endpointOf(url, init).endpoint;
          const loginPost = endpoint === "authorize" && (init?.method ?? "GET").toUpperCase() !== "GET";
          if (
            attempt < 3 &&
            isBrokenConnection(code) &&
            !loginPost &&
            !init?.signal?.aborted &&
            replayable(input, init)
          ) {
            this.log.info(
              { endpoint, url: safeUrl(url), code, attempt },
              "the connection to the authorization server broke before it answered; sending the request again on a new connection",
            );
            o.resetConnections?.();
            continue;
          }
          this.noteFailure(url, init, { code: code ?? "network error" });
          throw err;
        }
      }
    };
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
    this.pendingCode = undefined;
    this.lastFailure = undefined;
    this.refreshFailure = undefined;
    const options: Parameters<typeof auth>[1] = { serverUrl };
    if (challenge.resourceMetadataUrl) options.resourceMetadataUrl = challenge.resourceMetadataUrl;
    if (challenge.scope) options.scope = challenge.scope;
    options.fetchFn = this.fetchFn;
    this.log.info(
      { upstream: safeUrl(serverUrl), action: hadTokens ? "refresh" : "login" },
      hadTokens ? "refreshing the access token" : "logging in (headless OAuth)",
    );
    try {
      let result = await auth(this.provider, options);
      if (result === "REDIRECT") {
        const code = this.pendingCode as string | undefined;
        this.pendingCode = undefined;
        if (!code)
          throw new LoginFormError("the login finished without an authorization code; cannot continue");
        result = await auth(this.provider, { ...options, authorizationCode: code });
        if (result !== "AUTHORIZED") {
          throw new LoginFormError("the authorization server did not accept the authorization code");
        }
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
      this.o.store.clearCodeVerifier(key);
    }
  }

  /** Refresh margin: 60 s by default, but at most half the token's lifetime. */
  private margin(t: StoredTokens): number {
    const margin = this.o.refreshMarginMs ?? 60_000;
    if (t.expiresAt === undefined) return margin;
    return Math.min(margin, Math.max(0, (t.expiresAt - t.obtainedAt) / 2));
  }

  private async runHeadlessLogin(url: URL, state: string): Promise<void> {
    const refresh = this.refreshFailure;
    if (refresh && isTransient(refresh)) {
      // The SDK answers a refresh that failed on the network or with 5xx by starting a new
      // login. The token endpoint is having trouble, not our refresh token: keep it, try later.
      throw new AuthUnavailableError(
        `the token refresh failed: ${describeFailure(refresh)}; will retry later (the refresh token is kept)`,
      );
    }
    let password: string;
    try {
      password = typeof this.o.password === "function" ? await this.o.password() : this.o.password;
    } catch (err) {
      // A failing password command is a configuration error, not the authorization server's.
      const text = truncate(err instanceof Error ? err.message : String(err));
      throw new CredentialsUnavailableError(
        /LOXONE_PASSWORD/.test(text) ? text : `the password could not be obtained: ${text}`,
      );
    }
    // Loaded on first use: the HTML parser and cookie jar (~4 MB resident) are needed only for a
    // login, which a daemon restarted with stored tokens never does.
    const { headlessAuthorize } = await import("./login-form.js");
    const loginOptions: HeadlessLoginOptions = {
      redirectUri: this.provider.redirectUrl,
      user: typeof this.o.user === "function" ? this.o.user() : this.o.user,
      password,
      logger: this.log,
    };
    if (state) loginOptions.expectedState = state;
    loginOptions.fetch = this.fetchFn;
    this.pendingCode = await headlessAuthorize(url, loginOptions);
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
    err = this.nameEndpoint(err);
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

  /** Records a failed request to the authorization server (never its body or headers). */
  private noteFailure(
    url: string,
    init: RequestInit | undefined,
    what: { status?: number; code?: string },
  ): void {
    const f: EndpointFailure = { ...this.endpointOf(url, init), url: safeUrl(url), ...what };
    this.lastFailure = f;
    if (f.endpoint === "token" && f.grant === "refresh_token") this.refreshFailure = f;
  }

  private endpointOf(url: string, init: RequestInit | undefined): { endpoint: Endpoint; grant?: string } {
    let path = "";
    try {
      path = new URL(url).pathname;
    } catch {
      // keep ""
    }
    if (path.includes("/.well-known/oauth-protected-resource")) {
      return { endpoint: "protected-resource metadata" };
    }
    if (
      path.includes("/.well-known/oauth-authorization-server") ||
      path.includes("/.well-known/openid-configuration")
    ) {
      return { endpoint: "authorization-server metadata" };
    }
    const meta = this.o.store.getDiscovery(this.o.key)?.authorizationServerMetadata;
    const body = init?.body;
    const form = body instanceof URLSearchParams ? body : undefined;
    const grant = form?.get("grant_type") ?? undefined;
    if (grant !== undefined || sameEndpoint(url, meta?.token_endpoint)) {
      return grant === undefined ? { endpoint: "token" } : { endpoint: "token", grant };
    }
    if (
      sameEndpoint(url, meta?.registration_endpoint) ||
      (typeof body === "string" && body.includes('"redirect_uris"'))
    ) {
      return { endpoint: "registration" };
    }
    return { endpoint: "authorize" };
  }

  /**
   * Rewrites an SDK error so that it names the endpoint whose request failed (the SDK's own
   * messages say "HTTP 500: Invalid OAuth error response …" or nothing about where). Errors of
   * the login pages already name their URL and pass unchanged.
   */
  private nameEndpoint(err: unknown): unknown {
    const f = this.lastFailure;
    const refresh = this.refreshFailure;
    if (err instanceof AuthError && err.code !== "AUTH_UNAVAILABLE") return err;
    if (err instanceof AuthError) {
      // From the login pages (they name the URL); say when a failed refresh led to that login.
      return refresh && f !== refresh
        ? new AuthUnavailableError(
            `the token refresh failed (${describeFailure(refresh)}), then the new login failed: ${err.message}`,
          )
        : err;
    }
    const issues = (err as { issues?: unknown } | undefined)?.issues;
    if (Array.isArray(issues)) {
      // A zod error from the SDK: a metadata or token answer did not have the expected shape.
      const first = issues[0] as { path?: unknown[]; message?: string } | undefined;
      const at = first?.path?.length ? `${first.path.join(".")}: ` : "";
      return new AuthError(
        "AUTH_FAILED",
        `an answer of the authorization server did not have the expected format (${at}${truncate(first?.message ?? "invalid")})`,
      );
    }
    if (!f) return err;
    const where = describeFailure(f);
    const prefix =
      refresh && f !== refresh ? `the token refresh failed (${describeFailure(refresh)}), then ` : "";
    if (f.code !== undefined || isTransient(f)) {
      return new AuthUnavailableError(`${prefix}${where}; will retry later`);
    }
    const detail =
      err instanceof OAuthError
        ? `${err.errorCode}${err.message ? `: ${truncate(err.message)}` : ""}`
        : truncate(err instanceof Error ? err.message : String(err)).replace(/^HTTP \d+: /, "");
    const e = new AuthError("AUTH_FAILED", `${prefix}${where}: ${detail}`);
    // Keep the SDK's class semantics for classify() (invalid_grant etc. are handled in auth()).
    return Object.assign(e, { cause: err });
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

/** "the authorization server's token endpoint (https://…/token) answered HTTP 503" */
function describeFailure(f: EndpointFailure): string {
  const what =
    f.endpoint === "protected-resource metadata" || f.endpoint === "authorization-server metadata"
      ? `the ${f.endpoint} (${f.url})`
      : `the authorization server's ${f.endpoint} endpoint (${f.url})`;
  if (f.code !== undefined) return `${what} could not be reached (${f.code})`;
  return `${what} answered HTTP ${f.status}`;
}

/** Worth retrying later: network trouble, 429, 5xx. */
function isTransient(f: EndpointFailure): boolean {
  return f.code !== undefined || f.status === 429 || (f.status !== undefined && f.status >= 500);
}

function sameEndpoint(url: string, endpoint: string | undefined): boolean {
  if (!endpoint) return false;
  try {
    const a = new URL(url);
    const b = new URL(endpoint);
    return a.origin === b.origin && a.pathname.replace(/\/+$/, "") === b.pathname.replace(/\/+$/, "");
  } catch {
    return false;
  }
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

function truncate(s: string): string {
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
}
