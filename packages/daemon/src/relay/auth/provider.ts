/**
 * The SDK's `OAuthClientProvider`, backed by SQLite (TokenStore) under one upstream key.
 * A public client (token_endpoint_auth_method "none", PKCE) whose redirect_uri is never
 * listened on: `redirectToAuthorization` hands the URL to the headless driver, which keeps
 * the code for the exchange.
 */
import { randomBytes } from "node:crypto";
import type { OAuthClientProvider, OAuthDiscoveryState } from "@modelcontextprotocol/sdk/client/auth.js";
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from "@modelcontextprotocol/sdk/shared/auth.js";
import type { TokenStore } from "../../store/tokens.js";
import { type ResourcePolicy, validateResource } from "./resource.js";

export const DEFAULT_REDIRECT_URI = "http://127.0.0.1:8976/callback";

export interface StoreProviderOptions {
  /** Upstream key: the Loxone serial, or the MCP URL in direct mode. */
  key: string;
  store: TokenStore;
  /** Called with the authorization URL; must run the (headless) login and keep the code. */
  onAuthorizationUrl: (url: URL, state: string) => Promise<void>;
  resourcePolicy: ResourcePolicy;
  redirectUri?: string;
  clientName?: string;
  /** Scope asked when neither WWW-Authenticate nor the resource metadata names one. */
  scope?: string;
  /** Client metadata auth method for dynamic registration (default "none": public client). */
  tokenEndpointAuthMethod?: string;
  /** Pre-registered client (conformance, or a config with a fixed client id). */
  preRegisteredClient?: OAuthClientInformationMixed;
}

export class StoreOAuthProvider implements OAuthClientProvider {
  private lastState: string | undefined;

  constructor(private readonly o: StoreProviderOptions) {}

  get redirectUrl(): string {
    return this.o.redirectUri ?? DEFAULT_REDIRECT_URI;
  }

  get clientMetadata(): OAuthClientMetadata {
    const meta: OAuthClientMetadata = {
      client_name: this.o.clientName ?? "loxmcp",
      redirect_uris: [this.redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: this.o.tokenEndpointAuthMethod ?? "none",
    };
    if (this.o.scope) meta.scope = this.o.scope;
    return meta;
  }

  state(): string {
    this.lastState = randomBytes(24).toString("base64url");
    return this.lastState;
  }

  clientInformation(): OAuthClientInformationMixed | undefined {
    return this.o.store.getClient(this.o.key) ?? this.o.preRegisteredClient;
  }

  saveClientInformation(info: OAuthClientInformationMixed): void {
    this.o.store.saveClient(this.o.key, info);
  }

  tokens(): OAuthTokens | undefined {
    return this.o.store.getTokens(this.o.key)?.tokens;
  }

  saveTokens(tokens: OAuthTokens): void {
    this.o.store.saveTokens(this.o.key, tokens);
  }

  async redirectToAuthorization(url: URL): Promise<void> {
    addOfflineAccess(url, this.discoveryState()?.authorizationServerMetadata?.scopes_supported);
    const state = url.searchParams.get("state") ?? this.lastState ?? "";
    await this.o.onAuthorizationUrl(url, state);
  }

  saveCodeVerifier(verifier: string): void {
    this.o.store.saveCodeVerifier(this.o.key, verifier);
  }

  codeVerifier(): string {
    const v = this.o.store.getCodeVerifier(this.o.key);
    if (!v) throw new Error("no PKCE code verifier saved for this login; start the login again");
    return v;
  }

  async validateResourceURL(serverUrl: string | URL, resource?: string): Promise<URL | undefined> {
    return validateResource(serverUrl, resource, this.o.resourcePolicy);
  }

  invalidateCredentials(scope: "all" | "client" | "tokens" | "verifier" | "discovery"): void {
    const { store, key } = this.o;
    switch (scope) {
      case "all":
        store.clearAll(key);
        break;
      case "client":
        store.clearClient(key);
        break;
      case "tokens":
        store.clearTokens(key);
        break;
      case "verifier":
        store.clearCodeVerifier(key);
        break;
      case "discovery":
        store.clearDiscovery(key);
        break;
    }
  }

  saveDiscoveryState(state: OAuthDiscoveryState): void {
    this.o.store.saveDiscovery(this.o.key, state);
  }

  discoveryState(): OAuthDiscoveryState | undefined {
    return this.o.store.getDiscovery(this.o.key);
  }
}

/**
 * SEP-2207: the daemon lives on refresh tokens, so when the authorization server lists
 * `offline_access` in scopes_supported we ask for it (and never when it does not).
 */
export function addOfflineAccess(url: URL, scopesSupported: readonly string[] | undefined): void {
  if (!scopesSupported?.includes("offline_access")) return;
  const scopes = (url.searchParams.get("scope") ?? "").split(" ").filter(Boolean);
  if (scopes.includes("offline_access")) return;
  url.searchParams.set("scope", [...scopes, "offline_access"].join(" "));
}
