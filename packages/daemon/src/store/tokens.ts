/**
 * OAuth state and relay cache in SQLite. Keyed by the upstream key: the Loxone serial, or the
 * MCP URL in direct mode. Values are kept exactly as the SDK handed them over (it stamps them
 * with `issuer` and expects them back unchanged).
 */
import type { OAuthDiscoveryState } from "@modelcontextprotocol/sdk/client/auth.js";
import type { OAuthClientInformationMixed, OAuthTokens } from "@modelcontextprotocol/sdk/shared/auth.js";
import type { Database } from "better-sqlite3";
import { guardRead, guardWrite, healthOf, StorageError, statement } from "./health.js";

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

type Table = "tokens" | "client" | "discovery" | "verifier" | "relay";
type Row = Record<string, unknown>;

const upsert = (table: string, keyCol: string, cols: readonly string[]) =>
  `INSERT INTO ${table} (${keyCol}, ${cols.join(", ")}) VALUES (?, ${cols.map(() => "?").join(", ")})
   ON CONFLICT(${keyCol}) DO UPDATE SET ${cols.map((c) => `${c} = excluded.${c}`).join(", ")}`;

const table = (name: string, keyCol: string, cols: readonly string[]) => ({
  cols,
  get: `SELECT ${cols.join(", ")} FROM ${name} WHERE ${keyCol} = ?`,
  put: upsert(name, keyCol, cols),
  del: `DELETE FROM ${name} WHERE ${keyCol} = ?`,
});

const TABLES: Record<Table, ReturnType<typeof table>> = {
  tokens: table("oauth_tokens", "upstream_key", ["tokens_json", "access_expires_at", "obtained_at"]),
  client: table("oauth_clients", "upstream_key", ["client_json", "saved_at"]),
  discovery: table("oauth_discovery", "upstream_key", ["state_json", "saved_at"]),
  verifier: table("oauth_pkce", "upstream_key", ["code_verifier", "saved_at"]),
  relay: table("relay_cache", "serial", ["entry", "resolved_at"]),
};

interface Change {
  table: Table;
  key: string;
  /** null: delete the row. */
  row: Row | null;
}
/** A change not yet written (plain data: it crosses from the OAuth helper child to the daemon). */
export type TokenStoreChange = Change;

/**
 * The store never throws a database error at the relay: a value that cannot be written (disk
 * full, read-only, I/O error) is kept in memory, used by the getters, and written as soon as the
 * database takes writes again; a read that fails returns the last value read. The failure is
 * reported to the storage health (`loxmcp/status` shows it).
 */
export class TokenStore {
  /** Changes not yet in the database, by `${table}\0${key}`. */
  private readonly pending = new Map<string, Change>();
  /** Last value read or written per row, for reads that fail. */
  private readonly lastGood = new Map<string, Row | null>();
  /**
   * Tokens as last parsed, by key, valid while nobody else committed to the database (SQLite's
   * `data_version` of this connection is unchanged: `loxmcp login-check` may write tokens from its
   * own process) and we wrote none since. The relay asks for the token on every request.
   */
  private readonly parsedTokens = new Map<
    string,
    { seen: object; version: number; value: StoredTokens | undefined }
  >();

  constructor(readonly db: Database) {
    healthOf(db).on("recovered", () => this.flush());
  }

  // ------------------------------------------------------------------ rows

  private read(t: Table, key: string): Row | undefined {
    const id = `${t}\0${key}`;
    const p = this.pending.get(id);
    if (p) {
      // Retry while we are here: another store may have found the database writable again.
      if (healthOf(this.db).ok) this.flush();
      return p.row ?? undefined;
    }
    try {
      const row = guardRead(
        this.db,
        "tokens",
        () => statement(this.db, TABLES[t].get).get(key) as Row | undefined,
      );
      this.lastGood.set(id, row ?? null);
      return row;
    } catch (err) {
      if (!(err instanceof StorageError)) throw err;
      return this.lastGood.get(id) ?? undefined;
    }
  }

  private write(...changes: Change[]): void {
    for (const c of changes) {
      this.pending.set(`${c.table}\0${c.key}`, c);
      if (c.table === "tokens") this.parsedTokens.delete(c.key);
    }
    this.flush();
  }

  /** Writes every pending change in one transaction; false when the database refused. */
  private flush(): boolean {
    if (this.pending.size === 0) return true;
    const changes = [...this.pending.values()];
    try {
      guardWrite(this.db, "tokens", () =>
        this.db
          .transaction(() => {
            for (const c of changes) {
              const spec = TABLES[c.table];
              if (c.row === null) statement(this.db, spec.del).run(c.key);
              else statement(this.db, spec.put).run(c.key, ...spec.cols.map((col) => c.row?.[col] ?? null));
            }
          })
          .immediate(),
      );
    } catch (err) {
      if (!(err instanceof StorageError)) throw err;
      return false;
    }
    for (const c of changes) {
      const id = `${c.table}\0${c.key}`;
      if (this.pending.get(id) === c) this.pending.delete(id);
      this.lastGood.set(id, c.row);
    }
    return true;
  }

  /** How many changes wait for the database (0 when everything is stored). */
  unsaved(): number {
    return this.pending.size;
  }

  /**
   * The changes that still wait for the database, handed over and forgotten here: the OAuth helper
   * child (relay/auth/flight-helper.ts) passes them to the daemon before it exits, so that tokens
   * it could not write (database busy or full) are not lost with it.
   */
  takeUnsaved(): TokenStoreChange[] {
    const out = [...this.pending.values()].map((c) => ({ ...c }));
    this.pending.clear();
    return out;
  }

  /** Changes another store could not write (`takeUnsaved`): stored now, or kept in memory until they can be. */
  adopt(changes: readonly TokenStoreChange[]): void {
    const valid = changes.filter((c) => Object.hasOwn(TABLES, c.table) && typeof c.key === "string");
    if (valid.length > 0) this.write(...valid);
  }

  // ------------------------------------------------------------------ tokens

  getTokens(key: string): StoredTokens | undefined {
    if (this.pending.has(`tokens\0${key}`)) return this.parseTokens(key);
    const v = this.dataVersion();
    const cached = this.parsedTokens.get(key);
    if (v && cached && cached.seen === v.seen && cached.version === v.version) return cached.value;
    const value = this.parseTokens(key);
    if (v) this.parsedTokens.set(key, { ...v, value });
    return value;
  }

  /** This connection's view of the database's version, and which handle it is (undefined: unreadable). */
  private dataVersion(): { seen: object; version: number } | undefined {
    try {
      const st = statement(this.db, "PRAGMA data_version");
      const row = st.get() as { data_version?: unknown } | undefined;
      return typeof row?.data_version === "number" ? { seen: st, version: row.data_version } : undefined;
    } catch {
      return undefined;
    }
  }

  private parseTokens(key: string): StoredTokens | undefined {
    const row = this.read("tokens", key);
    if (!row) return undefined;
    const tokens = parseJson<OAuthTokens>(String(row.tokens_json));
    if (!tokens?.access_token) return undefined;
    const exp = row.access_expires_at;
    const obtainedAt = Number(row.obtained_at);
    Object.freeze(tokens);
    return Object.freeze(
      typeof exp === "number" ? { tokens, expiresAt: exp, obtainedAt } : { tokens, obtainedAt },
    );
  }

  /**
   * Saves tokens; a response without refresh_token keeps the previous one. Access + refresh +
   * expiry are written in one transaction, so a rotated refresh token is durable
   * (synchronous=FULL) before anybody uses the new access token, or, when the database cannot
   * be written, kept in memory until it can.
   */
  saveTokens(key: string, tokens: OAuthTokens, now: number = Date.now()): StoredTokens {
    let merged = tokens;
    if (!tokens.refresh_token) {
      const prev = this.read("tokens", key);
      const prevRefresh = prev ? parseJson<OAuthTokens>(String(prev.tokens_json))?.refresh_token : undefined;
      if (prevRefresh) merged = { ...tokens, refresh_token: prevRefresh };
    }
    const expiresAt =
      typeof tokens.expires_in === "number" && Number.isFinite(tokens.expires_in)
        ? now + tokens.expires_in * 1000
        : undefined;
    this.write({
      table: "tokens",
      key,
      row: { tokens_json: JSON.stringify(merged), access_expires_at: expiresAt ?? null, obtained_at: now },
    });
    return expiresAt === undefined
      ? { tokens: merged, obtainedAt: now }
      : { tokens: merged, expiresAt, obtainedAt: now };
  }

  clearTokens(key: string): void {
    this.write({ table: "tokens", key, row: null });
  }

  // ------------------------------------------------------------------ client registration

  getClient(key: string): OAuthClientInformationMixed | undefined {
    const row = this.read("client", key);
    return row ? parseJson<OAuthClientInformationMixed>(String(row.client_json)) : undefined;
  }

  saveClient(key: string, info: OAuthClientInformationMixed, now: number = Date.now()): void {
    this.write({ table: "client", key, row: { client_json: JSON.stringify(info), saved_at: now } });
  }

  clearClient(key: string): void {
    this.write({ table: "client", key, row: null });
  }

  // ------------------------------------------------------------------ discovery state

  getDiscovery(key: string): OAuthDiscoveryState | undefined {
    const row = this.read("discovery", key);
    return row ? parseJson<OAuthDiscoveryState>(String(row.state_json)) : undefined;
  }

  saveDiscovery(key: string, state: OAuthDiscoveryState, now: number = Date.now()): void {
    this.write({ table: "discovery", key, row: { state_json: JSON.stringify(state), saved_at: now } });
  }

  clearDiscovery(key: string): void {
    this.write({ table: "discovery", key, row: null });
  }

  // ------------------------------------------------------------------ PKCE verifier

  getCodeVerifier(key: string): string | undefined {
    const row = this.read("verifier", key);
    return row ? String(row.code_verifier) : undefined;
  }

  saveCodeVerifier(key: string, verifier: string, now: number = Date.now()): void {
    this.write({ table: "verifier", key, row: { code_verifier: verifier, saved_at: now } });
  }

  clearCodeVerifier(key: string): void {
    this.write({ table: "verifier", key, row: null });
  }

  // ------------------------------------------------------------------ everything for one key

  /** Drops tokens, client registration, discovery state and verifier for `key`. */
  clearAll(key: string): void {
    this.write(
      { table: "tokens", key, row: null },
      { table: "client", key, row: null },
      { table: "discovery", key, row: null },
      { table: "verifier", key, row: null },
    );
  }

  // ------------------------------------------------------------------ relay cache

  getRelayEntry(serial: string): RelayEntry | undefined {
    const row = this.read("relay", serial);
    return row ? { entry: String(row.entry), resolvedAt: Number(row.resolved_at) } : undefined;
  }

  saveRelayEntry(serial: string, entry: string, now: number = Date.now()): void {
    this.write({ table: "relay", key: serial, row: { entry, resolved_at: now } });
  }

  clearRelayEntry(serial: string): void {
    this.write({ table: "relay", key: serial, row: null });
  }
}

function parseJson<T>(text: string): T | undefined {
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}
