/**
 * One login or refresh, run in this process: the SDK's `auth()` with our SQLite-backed provider,
 * the headless login form when the SDK asks for an authorization, every request to the
 * authorization server through `AuthServerRequests` (bounded, and named in errors). The manager
 * (manager.ts) decides when a flight runs and what its failure means; this file only flies it.
 *
 * The long-lived daemon flies it in a short-lived child process (flight-child.ts): the SDK's auth
 * module, its zod schemas, the HTML parser, the cookie jar and fetch then never load into the
 * daemon. A flight's errors cross that boundary as `FlightErrorData` (`flightErrorData` /
 * `reviveFlightError`), keeping what the manager's classification reads: class, code, message,
 * network code.
 */
import type { auth as sdkAuth } from "@modelcontextprotocol/sdk/client/auth.js";
import {
  OAuthError,
  ServerError,
  TemporarilyUnavailableError,
} from "@modelcontextprotocol/sdk/server/auth/errors.js";
import type { OAuthClientInformationMixed } from "@modelcontextprotocol/sdk/shared/auth.js";
import type { Logger } from "pino";
import type { TokenStore } from "../../store/tokens.js";
import { networkErrorCode } from "../resolver.js";
import { AuthServerRequests, describeFailure, isTransient, truncate } from "./endpoints.js";
import {
  AuthError,
  AuthFailedError,
  AuthorizationDeniedError,
  AuthUnavailableError,
  CredentialsUnavailableError,
  HelperFailedError,
  LoginFormError,
  LoginRejectedError,
  ResourceMismatchError,
} from "./errors.js";
import type { HeadlessLoginOptions } from "./login-form.js";
import type { AuthChallenge } from "./manager.js";
import { StoreOAuthProvider } from "./provider.js";
import type { ResourcePolicy } from "./resource.js";

/** What a flight did: a new login (the SDK redirected to the authorization pages) or a refresh. */
export type FlightResult = "login" | "refresh";

/** How one flight is asked for: the server it is for, the 401/403's challenge, login or refresh. */
export interface FlightRequest {
  serverUrl: string;
  challenge: AuthChallenge;
}

/** Runs one flight (in this process or in a child); rejects with the error the manager classifies. */
export type FlightRunner = (req: FlightRequest) => Promise<FlightResult>;

/** What a flight needs besides the request; every field but the functions can be sent to a child. */
export interface FlightSettings {
  /** Upstream key: the Loxone serial, or the MCP URL in direct mode. */
  key: string;
  resourcePolicy: ResourcePolicy;
  redirectUri?: string | undefined;
  clientName?: string | undefined;
  scope?: string | undefined;
  tokenEndpointAuthMethod?: string | undefined;
  preRegisteredClient?: OAuthClientInformationMixed | undefined;
  /** Timeout of each HTTP request to the authorization server. */
  httpTimeoutMs: number;
}

export interface LocalFlightOptions extends FlightSettings {
  store: TokenStore;
  /** The user, read at each login. */
  user: () => string;
  /** The password, asked for only when a login needs it. */
  password: () => Promise<string>;
  logger: Logger;
  fetch?: typeof fetch | undefined;
  /** Drops pooled connections (called before a request whose connection broke is sent again). */
  resetConnections?: (() => void) | undefined;
}

/** A flight in this process. One instance serves every flight of one manager (or one child). */
export class LocalFlight {
  private readonly provider: StoreOAuthProvider;
  private readonly requests: AuthServerRequests;
  private pendingCode: string | undefined;

  constructor(private readonly o: LocalFlightOptions) {
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
    this.requests = new AuthServerRequests({
      fetch: o.fetch,
      timeoutMs: o.httpTimeoutMs,
      logger: o.logger,
      resetConnections: o.resetConnections,
      metadata: () => o.store.getDiscovery(o.key)?.authorizationServerMetadata,
    });
  }

  /** One flight; a failure comes back naming the endpoint that failed (endpoints.ts). */
  readonly run: FlightRunner = async ({ serverUrl, challenge }) => {
    this.pendingCode = undefined;
    this.requests.newFlight();
    const options: Parameters<typeof sdkAuth>[1] = { serverUrl };
    if (challenge.resourceMetadataUrl) options.resourceMetadataUrl = challenge.resourceMetadataUrl;
    if (challenge.scope) options.scope = challenge.scope;
    options.fetchFn = this.requests.fetch;
    try {
      // Loaded on the first flight, not at start: the SDK's auth module brings its types and zod
      // schemas (~3 MB), which a process that never logs in or refreshes does not need.
      const { auth } = await import("@modelcontextprotocol/sdk/client/auth.js");
      const result = await auth(this.provider, options);
      if (result !== "REDIRECT") return "refresh";
      const code = this.pendingCode as string | undefined;
      this.pendingCode = undefined;
      if (!code)
        throw new LoginFormError("the login finished without an authorization code; cannot continue");
      const second = await auth(this.provider, { ...options, authorizationCode: code });
      if (second !== "AUTHORIZED") {
        throw new LoginFormError("the authorization server did not accept the authorization code");
      }
      return "login";
    } catch (err) {
      throw this.requests.nameEndpoint(err);
    }
  };

  private async runHeadlessLogin(url: URL, state: string): Promise<void> {
    const refresh = this.requests.refreshFailure;
    if (refresh && isTransient(refresh)) {
      // The SDK answers a refresh that failed on the network or with 5xx by starting a new
      // login. The token endpoint is having trouble, not our refresh token: keep it, try later.
      throw new AuthUnavailableError(
        `the token refresh failed: ${describeFailure(refresh)}; will retry later (the refresh token is kept)`,
      );
    }
    let password: string;
    try {
      password = await this.o.password();
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
      user: this.o.user(),
      password,
      logger: this.o.logger,
    };
    if (state) loginOptions.expectedState = state;
    loginOptions.fetch = this.requests.fetch;
    this.pendingCode = await headlessAuthorize(url, loginOptions);
  }
}

// ------------------------------------------------------------------ errors across processes

/** A flight's error as it crosses from the child: what the manager's classification reads. */
export interface FlightErrorData {
  name: string;
  message: string;
  /** AuthError's code. */
  code?: string | undefined;
  /** The network error code found on the error or its causes (resolver.ts `networkErrorCode`). */
  net?: string | undefined;
  /** OAuthError's errorCode. */
  errorCode?: string | undefined;
  /** AuthorizationDeniedError's oauthError. */
  oauthError?: string | undefined;
}

const AUTH_ERRORS: Record<string, { prototype: Error }> = {
  AuthError,
  LoginRejectedError,
  LoginFormError,
  AuthorizationDeniedError,
  ResourceMismatchError,
  AuthFailedError,
  AuthUnavailableError,
  CredentialsUnavailableError,
  HelperFailedError,
};
/** The SDK's OAuth errors the classification tells apart, by OAuth error code (the rest arrive as plain errors). */
const OAUTH_ERRORS: Record<string, { prototype: Error }> = {
  [ServerError.errorCode]: ServerError,
  [TemporarilyUnavailableError.errorCode]: TemporarilyUnavailableError,
};

export function flightErrorData(err: unknown): FlightErrorData {
  if (!(err instanceof Error)) return { name: "Error", message: String(err) };
  const out: FlightErrorData = { name: err.name, message: err.message };
  if (err instanceof AuthError) {
    out.code = err.code;
    if (err instanceof AuthorizationDeniedError) out.oauthError = err.oauthError;
    return out;
  }
  if (err instanceof OAuthError) out.errorCode = err.errorCode;
  const net = networkErrorCode(err);
  if (net !== undefined) out.net = net;
  return out;
}

/** The error a child reported, as an instance of the class it had (where the class matters). */
export function reviveFlightError(d: FlightErrorData): Error {
  const cls =
    d.code !== undefined
      ? AUTH_ERRORS[d.name]
      : d.errorCode !== undefined
        ? OAUTH_ERRORS[d.errorCode]
        : undefined;
  const e = d.name === "TypeError" ? new TypeError(d.message) : new Error(d.message);
  if (cls) Object.setPrototypeOf(e, cls.prototype);
  if (d.name !== "TypeError")
    Object.defineProperty(e, "name", { value: d.name, configurable: true, writable: true });
  if (d.code !== undefined) Object.assign(e, { code: d.code });
  else if (d.net !== undefined) Object.assign(e, { code: d.net });
  if (d.oauthError !== undefined) Object.assign(e, { oauthError: d.oauthError });
  return e;
}
