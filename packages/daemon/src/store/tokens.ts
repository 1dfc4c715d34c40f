/**
 * OAuth state and relay cache in SQLite. Keyed by the upstream key: the Loxone serial, or the
 * MCP URL in direct mode. Values are kept exactly as the SDK handed them over (it stamps them
 * with `issuer` and expects them back unchanged).
 */
import type { OAuthDiscoveryState } from "@modelcontextprotocol/sdk/client/auth.js";
import type { OAuthClientInformationMixed, OAuthTokens } from "@modelcontextprotocol/sdk/shared/auth.js";
import type { Database, Statement, Transaction } from "better-sqlite3";

export interface StoredTokens {
  tokens: OAuthTokens;
  /** Epoch ms when the access token expires (undefined: the server did not say). */
  expiresAt?: number;
  /** Epoch ms when these tokens were saved. */
  obtainedAt: number;
}

export interface RelayEntry {
  entry: string;
  resolvedAt: number;
}

interface TokenRow {
  tokens_json: string;
  access_expires_at: number | null;
  obtained_at: number;
}

export class TokenStore {
  private readonly st: {
    getTokens: Statement<[string], TokenRow>;
    putTokens: Statement<[string, string, number | null, number]>;
    delTokens: Statement<[string]>;
    getClient: Statement<[string], { client_json: string }>;
    putClient: Statement<[string, string, number]>;
    delClient: Statement<[string]>;
    getDiscovery: Statement<[string], { state_json: string }>;
    putDiscovery: Statement<[string, string, number]>;
    delDiscovery: Statement<[string]>;
    getVerifier: Statement<[string], { code_verifier: string }>;
    putVerifier: Statement<[string, string, number]>;
    delVerifier: Statement<[string]>;
    getRelay: Statement<[string], { entry: string; resolved_at: number }>;
    putRelay: Statement<[string, string, number]>;
    delRelay: Statement<[string]>;
  };
  private readonly saveTokensTx: Transaction<(key: string, tokens: OAuthTokens, now: number) => StoredTokens>;

  constructor(readonly db: Database) {
    const upsert = (table: string, cols: string[]) =>
      `INSERT INTO ${table} (upstream_key, ${cols.join(", ")}) VALUES (?, ${cols.map(() => "?").join(", ")})
       ON CONFLICT(upstream_key) DO UPDATE SET ${cols.map((c) => `${c} = excluded.${c}`).join(", ")}`;
    this.st = {
      getTokens: db.prepare(
        "SELECT tokens_json, access_expires_at, obtained_at FROM oauth_tokens WHERE upstream_key = ?",
      ),
      putTokens: db.prepare(upsert("oauth_tokens", ["tokens_json", "access_expires_at", "obtained_at"])),
      delTokens: db.prepare("DELETE FROM oauth_tokens WHERE upstream_key = ?"),
      getClient: db.prepare("SELECT client_json FROM oauth_clients WHERE upstream_key = ?"),
      putClient: db.prepare(upsert("oauth_clients", ["client_json", "saved_at"])),
      delClient: db.prepare("DELETE FROM oauth_clients WHERE upstream_key = ?"),
      getDiscovery: db.prepare("SELECT state_json FROM oauth_discovery WHERE upstream_key = ?"),
      putDiscovery: db.prepare(upsert("oauth_discovery", ["state_json", "saved_at"])),
      delDiscovery: db.prepare("DELETE FROM oauth_discovery WHERE upstream_key = ?"),
      getVerifier: db.prepare("SELECT code_verifier FROM oauth_pkce WHERE upstream_key = ?"),
      putVerifier: db.prepare(upsert("oauth_pkce", ["code_verifier", "saved_at"])),
      delVerifier: db.prepare("DELETE FROM oauth_pkce WHERE upstream_key = ?"),
      getRelay: db.prepare("SELECT entry, resolved_at FROM relay_cache WHERE serial = ?"),
      putRelay: db.prepare(
        `INSERT INTO relay_cache (serial, entry, resolved_at) VALUES (?, ?, ?)
         ON CONFLICT(serial) DO UPDATE SET entry = excluded.entry, resolved_at = excluded.resolved_at`,
      ),
      delRelay: db.prepare("DELETE FROM relay_cache WHERE serial = ?"),
    };
    // One transaction: read the previous refresh token (kept when the server did not rotate it)
    // and write access + refresh + expiry together, so a rotated refresh token is durable
    // (synchronous=FULL) before anybody uses the new access token.
    this.saveTokensTx = db.transaction((key: string, tokens: OAuthTokens, now: number): StoredTokens => {
      let merged = tokens;
      if (!tokens.refresh_token) {
        const prev = this.st.getTokens.get(key);
        const prevRefresh = prev ? parseJson<OAuthTokens>(prev.tokens_json)?.refresh_token : undefined;
        if (prevRefresh) merged = { ...tokens, refresh_token: prevRefresh };
      }
      const expiresAt =
        typeof tokens.expires_in === "number" && Number.isFinite(tokens.expires_in)
          ? now + tokens.expires_in * 1000
          : undefined;
      this.st.putTokens.run(key, JSON.stringify(merged), expiresAt ?? null, now);
      return expiresAt === undefined
        ? { tokens: merged, obtainedAt: now }
        : { tokens: merged, expiresAt, obtainedAt: now };
    });
  }

  // ------------------------------------------------------------------ tokens

  getTokens(key: string): StoredTokens | undefined {
    const row = this.st.getTokens.get(key);
    if (!row) return undefined;
    const tokens = parseJson<OAuthTokens>(row.tokens_json);
    if (!tokens?.access_token) return undefined;
    return row.access_expires_at === null
      ? { tokens, obtainedAt: row.obtained_at }
      : { tokens, expiresAt: row.access_expires_at, obtainedAt: row.obtained_at };
  }

  /** Saves tokens atomically; a response without refresh_token keeps the previous one. */
  saveTokens(key: string, tokens: OAuthTokens, now: number = Date.now()): StoredTokens {
    return this.saveTokensTx.immediate(key, tokens, now);
  }

  clearTokens(key: string): void {
    this.st.delTokens.run(key);
  }

  // ------------------------------------------------------------------ client registration

  getClient(key: string): OAuthClientInformationMixed | undefined {
    const row = this.st.getClient.get(key);
    return row ? parseJson<OAuthClientInformationMixed>(row.client_json) : undefined;
  }

  saveClient(key: string, info: OAuthClientInformationMixed, now: number = Date.now()): void {
    this.st.putClient.run(key, JSON.stringify(info), now);
  }

  clearClient(key: string): void {
    this.st.delClient.run(key);
  }

  // ------------------------------------------------------------------ discovery state

  getDiscovery(key: string): OAuthDiscoveryState | undefined {
    const row = this.st.getDiscovery.get(key);
    return row ? parseJson<OAuthDiscoveryState>(row.state_json) : undefined;
  }

  saveDiscovery(key: string, state: OAuthDiscoveryState, now: number = Date.now()): void {
    this.st.putDiscovery.run(key, JSON.stringify(state), now);
  }

  clearDiscovery(key: string): void {
    this.st.delDiscovery.run(key);
  }

  // ------------------------------------------------------------------ PKCE verifier

  getCodeVerifier(key: string): string | undefined {
    return this.st.getVerifier.get(key)?.code_verifier;
  }

  saveCodeVerifier(key: string, verifier: string, now: number = Date.now()): void {
    this.st.putVerifier.run(key, verifier, now);
  }

  clearCodeVerifier(key: string): void {
    this.st.delVerifier.run(key);
  }

  // ------------------------------------------------------------------ everything for one key

  /** Drops tokens, client registration, discovery state and verifier for `key`. */
  clearAll(key: string): void {
    this.db.transaction(() => {
      this.st.delTokens.run(key);
      this.st.delClient.run(key);
      this.st.delDiscovery.run(key);
      this.st.delVerifier.run(key);
    })();
  }

  // ------------------------------------------------------------------ relay cache

  getRelayEntry(serial: string): RelayEntry | undefined {
    const row = this.st.getRelay.get(serial);
    return row ? { entry: row.entry, resolvedAt: row.resolved_at } : undefined;
  }

  saveRelayEntry(serial: string, entry: string, now: number = Date.now()): void {
    this.st.putRelay.run(serial, entry, now);
  }

  clearRelayEntry(serial: string): void {
    this.st.delRelay.run(serial);
  }
}

function parseJson<T>(text: string): T | undefined {
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}
