import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type Database, openDatabase, StoreError } from "../src/store/db.js";
import { healthOf } from "../src/store/health.js";
import { migrations } from "../src/store/migrations.js";
import { TokenStore } from "../src/store/tokens.js";

let dir: string;
const open: Database[] = [];

beforeEach(() => {
  dir = mkdtempSync("/tmp/lx-");
});
afterEach(() => {
  for (const db of open.splice(0)) if (db.open) db.close();
  rmSync(dir, { recursive: true, force: true });
});

function openDb(file = join(dir, "state", "loxmcp.db")): Database {
  const db = openDatabase(file);
  open.push(db);
  return db;
}

describe("openDatabase", () => {
  it("creates the file 0600 with WAL, synchronous=FULL, foreign keys and the latest schema", () => {
    const file = join(dir, "state", "loxmcp.db");
    const db = openDb(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("synchronous", { simple: true })).toBe(2);
    expect(db.pragma("foreign_keys", { simple: true })).toBe(1);
    expect(db.pragma("busy_timeout", { simple: true })).toBeGreaterThan(0);
    expect(db.pragma("user_version", { simple: true })).toBe(migrations.length);
    new TokenStore(db).saveRelayEntry("S1", "https://x/mcp");
    for (const f of [file, `${file}-wal`, `${file}-shm`]) {
      if (existsSync(f)) expect(statSync(f).mode & 0o777).toBe(0o600);
    }
  });

  it("tightens an existing 0644 file and keeps data across reopen", () => {
    const file = join(dir, "loxmcp.db");
    writeFileSync(file, "", { mode: 0o644 });
    const db = openDb(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    new TokenStore(db).saveRelayEntry("S1", "https://a/mcp", 5);
    db.close();
    const again = openDb(file);
    expect(again.pragma("synchronous", { simple: true })).toBe(2);
    expect(new TokenStore(again).getRelayEntry("S1")).toEqual({ entry: "https://a/mcp", resolvedAt: 5 });
  });

  it("applies appended migrations once, in order, by user_version", () => {
    const file = join(dir, "m.db");
    openDatabase(file, { migrations: ["CREATE TABLE a (x INTEGER)"] }).close();
    const db = openDatabase(file, {
      migrations: [
        "CREATE TABLE a (x INTEGER)",
        (d) => {
          d.exec("CREATE TABLE b (y INTEGER)");
          d.prepare("INSERT INTO b (y) VALUES (42)").run();
        },
      ],
    });
    open.push(db);
    expect(db.pragma("user_version", { simple: true })).toBe(2);
    expect(db.prepare("SELECT y FROM b").get()).toEqual({ y: 42 });
  });

  it("rolls a failing migration back and says which version failed", () => {
    const file = join(dir, "f.db");
    expect(() =>
      openDatabase(file, {
        migrations: ["CREATE TABLE a (x INTEGER)", "CREATE TABLE c (z); SELECT nope FROM nowhere"],
      }),
    ).toThrow(/migration to schema version 2 failed/);
    const db = openDatabase(file, { migrations: ["CREATE TABLE a (x INTEGER)"] });
    open.push(db);
    expect(db.pragma("user_version", { simple: true })).toBe(1);
    expect(db.prepare("SELECT name FROM sqlite_master WHERE name = 'c'").get()).toBeUndefined();
  });

  it("refuses a database newer than the code and a symlinked file", () => {
    const file = join(dir, "n.db");
    openDatabase(file, { migrations: ["SELECT 1", "SELECT 2"] }).close();
    expect(() => openDatabase(file, { migrations: ["SELECT 1"] })).toThrow(StoreError);
    const link = join(dir, "link.db");
    symlinkSync(file, link);
    expect(() => openDatabase(link)).toThrow(/not a regular file/);
  });
});

describe("openDatabase({ check: true })", () => {
  it("says DB_CORRUPT for a damaged page (quick_check) and for a file that is no database", () => {
    const file = join(dir, "c.db");
    const db = openDatabase(file);
    db.exec("CREATE TABLE pad (x TEXT)");
    const ins = db.prepare("INSERT INTO pad VALUES (?)");
    for (let i = 0; i < 200; i++) ins.run("y".repeat(300));
    db.close();
    expect(() => openDatabase(file, { check: true }).close()).not.toThrow();
    const size = statSync(file).size;
    const bytes = readFileSync(file);
    bytes.fill(0x5a, 4096 * Math.floor(size / 4096 / 2), 4096 * Math.floor(size / 4096 / 2) + 4096);
    writeFileSync(file, bytes);
    expect(() => openDatabase(file, { check: true })).toThrow(
      expect.objectContaining({ code: "DB_CORRUPT", message: expect.stringMatching(/is damaged/) }),
    );
    const junk = join(dir, "junk.db");
    writeFileSync(junk, "this is not a database, just text, long enough to have a header ".repeat(100));
    expect(() => openDatabase(junk, { check: true })).toThrow(
      expect.objectContaining({ code: "DB_CORRUPT" }),
    );
  });
});

describe("TokenStore", () => {
  it("saves tokens with expiry, keeps the old refresh token when not rotated, clears", () => {
    const store = new TokenStore(openDb());
    const saved = store.saveTokens(
      "S1",
      { access_token: "a1", token_type: "Bearer", expires_in: 60, refresh_token: "r1", issuer: "http://as/" },
      1_000,
    );
    expect(saved.expiresAt).toBe(61_000);
    expect(store.getTokens("S1")?.tokens.refresh_token).toBe("r1");
    store.saveTokens("S1", { access_token: "a2", token_type: "Bearer", expires_in: 10 }, 2_000);
    const got = store.getTokens("S1");
    expect(got).toEqual({
      tokens: { access_token: "a2", token_type: "Bearer", expires_in: 10, refresh_token: "r1" },
      expiresAt: 12_000,
      obtainedAt: 2_000,
    });
    store.saveTokens("S1", { access_token: "a3", token_type: "Bearer", refresh_token: "r2" }, 3_000);
    expect(store.getTokens("S1")).toEqual({
      tokens: { access_token: "a3", token_type: "Bearer", refresh_token: "r2" },
      obtainedAt: 3_000,
    });
    expect(store.getTokens("other")).toBeUndefined();
    store.clearTokens("S1");
    expect(store.getTokens("S1")).toBeUndefined();
  });

  it("keeps client info, discovery, verifier per key and clearAll drops them", () => {
    const store = new TokenStore(openDb());
    store.saveClient("k", { client_id: "c1", issuer: "http://as/" });
    store.saveDiscovery("k", { authorizationServerUrl: "http://as/" });
    store.saveCodeVerifier("k", "v1");
    store.saveTokens("k", { access_token: "a", token_type: "Bearer" });
    store.saveClient("k2", { client_id: "c2" });
    expect(store.getClient("k")).toEqual({ client_id: "c1", issuer: "http://as/" });
    expect(store.getDiscovery("k")).toEqual({ authorizationServerUrl: "http://as/" });
    expect(store.getCodeVerifier("k")).toBe("v1");
    store.clearAll("k");
    expect(store.getClient("k")).toBeUndefined();
    expect(store.getDiscovery("k")).toBeUndefined();
    expect(store.getCodeVerifier("k")).toBeUndefined();
    expect(store.getTokens("k")).toBeUndefined();
    expect(store.getClient("k2")).toEqual({ client_id: "c2" });
  });

  it("never throws a database error at the relay: what cannot be written is kept and written later", () => {
    const file = join(dir, "state", "loxmcp.db");
    const db = openDb(file);
    const store = new TokenStore(db);
    store.saveTokens("S1", { access_token: "a1", token_type: "Bearer", refresh_token: "r1" }, 1_000);
    db.pragma("query_only = 1"); // SQLite answers SQLITE_READONLY to every write, like a read-only disk
    store.saveTokens("S1", { access_token: "a2", token_type: "Bearer" }, 2_000);
    store.saveRelayEntry("S1", "https://relay/mcp", 2_000);
    expect(store.unsaved()).toBe(2);
    expect(healthOf(db).problem).toMatchObject({
      cause: "read-only",
      code: "SQLITE_READONLY",
      what: "tokens",
    });
    // The relay sees the new values (the refresh token kept across the unsaved rotation) …
    expect(store.getTokens("S1")?.tokens).toEqual({
      access_token: "a2",
      token_type: "Bearer",
      refresh_token: "r1",
    });
    expect(store.getRelayEntry("S1")?.entry).toBe("https://relay/mcp");
    // … a second connection still sees the old ones …
    expect(new TokenStore(openDb(file)).getTokens("S1")?.tokens.access_token).toBe("a1");
    // … until the database takes writes again.
    db.pragma("query_only = 0");
    store.clearCodeVerifier("S1");
    expect(store.unsaved()).toBe(0);
    expect(healthOf(db).ok).toBe(true);
    const again = new TokenStore(openDb(file));
    expect(again.getTokens("S1")?.tokens.access_token).toBe("a2");
    expect(again.getRelayEntry("S1")?.entry).toBe("https://relay/mcp");
  });

  it("is visible to a second connection on the same file (tokens survive a restart)", () => {
    const file = join(dir, "state", "loxmcp.db");
    const a = new TokenStore(openDb(file));
    a.saveTokens("S1", { access_token: "tok", token_type: "Bearer", refresh_token: "ref" });
    const b = new TokenStore(openDb(file));
    expect(b.getTokens("S1")?.tokens.access_token).toBe("tok");
  });
});

describe("TokenStore: the token the relay asks for on every request", () => {
  it("is read from memory until this or another connection writes, then the new one is read", () => {
    const file = join(dir, "state", "loxmcp.db");
    const daemonDb = openDb(file);
    const daemon = new TokenStore(daemonDb);
    daemon.saveTokens("S1", {
      access_token: "a1",
      token_type: "Bearer",
      refresh_token: "r1",
      expires_in: 600,
    });
    const first = daemon.getTokens("S1");
    expect(first?.tokens.access_token).toBe("a1");
    // Unchanged database: the same parsed value, no new parse.
    expect(daemon.getTokens("S1")).toBe(first);

    // `loxmcp login-check` writes from its own process (its own connection to the same file).
    const probe = new TokenStore(openDb(file));
    probe.saveTokens("S1", {
      access_token: "a2",
      token_type: "Bearer",
      refresh_token: "r2",
      expires_in: 600,
    });
    expect(daemon.getTokens("S1")?.tokens).toMatchObject({ access_token: "a2", refresh_token: "r2" });

    // Its own write (a refresh) is seen at once too; a refresh without refresh_token keeps r2.
    daemon.saveTokens("S1", { access_token: "a3", token_type: "Bearer", expires_in: 600 });
    expect(daemon.getTokens("S1")?.tokens).toMatchObject({ access_token: "a3", refresh_token: "r2" });
    daemon.clearTokens("S1");
    expect(daemon.getTokens("S1")).toBeUndefined();
  });
});
