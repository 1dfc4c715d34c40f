/**
 * The OAuth driver's (manager.ts) requests to the authorization server: the fetch every one of
 * them goes through, and which endpoint failed last in the current flight, so that errors name
 * the endpoint that failed instead of the SDK's "HTTP 500: Invalid OAuth error response …".
 */
import { OAuthError } from "@modelcontextprotocol/sdk/server/auth/errors.js";
import type { Logger } from "pino";
import { isBrokenConnection, replayable } from "../http.js";
import { networkErrorCode } from "../resolver.js";
import { safeUrl } from "../url.js";
import { AuthError, AuthUnavailableError } from "./errors.js";

/** Which endpoint of the authorization server a request went to (named in errors). */
type Endpoint =
  | "protected-resource metadata"
  | "authorization-server metadata"
  | "registration"
  | "authorize"
  | "token";

/** The last request to the authorization server that failed in the current flight. */
export interface EndpointFailure {
  endpoint: Endpoint;
  /** grant_type of a token request. */
  grant?: string;
  url: string;
  status?: number;
  code?: string;
}

export interface AuthServerRequestsOptions {
  fetch?: typeof fetch | undefined;
  /** Timeout of each request. */
  timeoutMs: number;
  logger: Logger;
  /** Drops pooled connections (called before a request whose connection broke is sent again). */
  resetConnections?: (() => void) | undefined;
  /** The discovered authorization-server metadata (its token and registration endpoints). */
  metadata: () =>
    | { token_endpoint?: string | undefined; registration_endpoint?: string | undefined }
    | undefined;
}

export class AuthServerRequests {
  /** The fetch for every request to the authorization server (the SDK's and the login pages'). */
  readonly fetch: typeof fetch;
  /** The last failed request to the authorization server in the current flight. */
  private lastFailure: EndpointFailure | undefined;
  /** A refresh in the current flight failed at the token endpoint (the SDK then tries a new login). */
  private refreshFailure_: EndpointFailure | undefined;

  constructor(private readonly o: AuthServerRequestsOptions) {
    const base = o.fetch ?? fetch;
    const timeoutMs = o.timeoutMs;
    // Every call to the authorization server is bounded, so a hanging server cannot wedge the
    // single flight that every request waits on.
    // Failures are recorded per endpoint, so errors name the endpoint that failed.
    // A request whose connection broke before any answer (typically a pooled keep-alive connection
    // the server closed while the daemon slept) is sent again on a new connection: the OAuth
    // requests may be repeated. A refresh that did reach the server and rotated the refresh token
    // then ends in invalid_grant and one full login — the last resort, not the rule. A form posted
    // on the login pages is not: a repeated post could meet a used one-time field and read as a
    // rejected password; that login fails as "retry later" and starts again from /authorize.
    this.fetch = async (input, init) => {
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
            o.logger.info(
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

  /** A refresh in the current flight that failed at the token endpoint. */
  get refreshFailure(): EndpointFailure | undefined {
    return this.refreshFailure_;
  }

  /** A new flight: the failures of the last one no longer count. */
  newFlight(): void {
    this.lastFailure = undefined;
    this.refreshFailure_ = undefined;
  }

  /**
   * Rewrites an SDK error so that it names the endpoint whose request failed (the SDK's own
   * messages say "HTTP 500: Invalid OAuth error response …" or nothing about where). Errors of
   * the login pages already name their URL and pass unchanged.
   */
  nameEndpoint(err: unknown): unknown {
    const f = this.lastFailure;
    const refresh = this.refreshFailure_;
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

  /** Records a failed request to the authorization server (never its body or headers). */
  private noteFailure(
    url: string,
    init: RequestInit | undefined,
    what: { status?: number; code?: string },
  ): void {
    const f: EndpointFailure = { ...this.endpointOf(url, init), url: safeUrl(url), ...what };
    this.lastFailure = f;
    if (f.endpoint === "token" && f.grant === "refresh_token") this.refreshFailure_ = f;
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
    const meta = this.o.metadata();
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
}

/** "the authorization server's token endpoint (https://…/token) answered HTTP 503" */
export function describeFailure(f: EndpointFailure): string {
  const what =
    f.endpoint === "protected-resource metadata" || f.endpoint === "authorization-server metadata"
      ? `the ${f.endpoint} (${f.url})`
      : `the authorization server's ${f.endpoint} endpoint (${f.url})`;
  if (f.code !== undefined) return `${what} could not be reached (${f.code})`;
  return `${what} answered HTTP ${f.status}`;
}

/** Worth retrying later: network trouble, 429, 5xx. */
export function isTransient(f: EndpointFailure): boolean {
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

export function truncate(s: string): string {
  return s.length > 300 ? `${s.slice(0, 300)}…` : s;
}
