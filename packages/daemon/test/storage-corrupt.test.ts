/**
 * A corrupt database is set aside, not a dead end.
 *
 * Through the real daemon: start, stop, overwrite a page in the middle of loxmcp.db with random
 * bytes (checked to really be "database disk image is malformed" for SQLite), start again: the
 * daemon comes up ready, logged in again, the damaged file is kept as `loxmcp.db.corrupt-<time>`
 * (byte for byte), and status, the log and `loxmcp doctor` say what happened and where the file is.
 *
 * In-process (store/storage.ts): a file that is no database at all, SQLITE_CORRUPT met at run time
 * (the stores carry on with a fresh file), and what is salvaged from the damaged one.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { writeChaosConfig } from "../../../test-support/chaos.js";
import { type DaemonProcess, REPO_ROOT, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { controlCall, SocketClientTransport } from "../../../test-support/socket-client.js";
import { AuditStore } from "../src/store/audit.js";
import { healthOf } from "../src/store/health.js";
import { PinStore } from "../src/store/person.js";
import { SnapshotStore } from "../src/store/snapshots.js";
import { Storage } from "../src/store/storage.js";
import { TokenStore } from "../src/store/tokens.js";

const CLI_BIN = join(REPO_ROOT, "packages/cli/bin/loxmcp.js");
// biome-ignore lint/suspicious/noExplicitAny: loose JSON from control methods and SQLite rows
type J = Record<string, any>;

/** What SQLite says about the file: "ok", or the first problem (open or quick_check). */
function sqliteVerdict(file: string): string {
  try {
    const db = new Database(file, { readonly: true, fileMustExist: true });
    try {
      const rows = db.pragma("quick_check") as Array<{ quick_check: string }>;
      return rows.map((r) => r.quick_check).join("; ");
    } finally {
      db.close();
    }
  } catch (err) {
    return (err as Error).message;
  }
}

function asideFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => /^loxmcp\.db\.corrupt-/.test(f));
}

describe("a corrupt database at start (real daemon)", () => {
  let home: TempHome | undefined;
  let sim: SimHandle | undefined;
  const daemons: DaemonProcess[] = [];
  afterEach(async () => {
    for (const d of daemons.splice(0)) await d.stop().catch(() => d.kill9());
    await sim?.stop();
    home?.cleanup();
  });

  it("is moved aside as loxmcp.db.corrupt-<time>, a fresh one is created, the daemon logs in and is ready", async () => {
    home = makeHome();
    sim = await withSimulator();
    writeChaosConfig(home.home);
    const env = sim.env(home.home);
    const first = spawnDaemon(env);
    daemons.push(first);
    await first.waitReady(30_000);
    await first.waitStatus((st) => Boolean((st.policy as J | undefined)?.structure), 20_000, "a snapshot");
    expect((await first.status()).storage).toMatchObject({ ok: true });
    expect((await first.stop()).code).toBe(0);
    const db = first.paths.db;
    expect(existsSync(`${db}-wal`), "a clean stop leaves no WAL").toBe(false);

    // One page in the middle of the file: random bytes.
    const pages = Math.floor(statSync(db).size / 4096);
    expect(pages, "a database of several pages").toBeGreaterThanOrEqual(4);
    const fd = openSync(db, "r+");
    writeSync(fd, randomBytes(4096), 0, 4096, 4096 * Math.floor(pages / 2));
    closeSync(fd);
    const damaged = readFileSync(db);
    expect(sqliteVerdict(db), "the file really is damaged").toMatch(
      /malformed|corrupt|not a database|Page \d+|btree/i,
    );
    expect(sim.sim.stats().logins).toBe(1);

    const second = spawnDaemon(env);
    daemons.push(second);
    const st = await second.waitReady(30_000);
    const storage = st.storage as J;
    expect(storage).toMatchObject({ ok: true });
    expect(storage.recovered).toMatchObject({ when: "start" });
    expect(storage.recovered.from).toMatch(/\/loxmcp\.db\.corrupt-\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$/);
    expect(storage.recovered.reason).toMatch(/damaged/);
    const aside = storage.recovered.from as string;
    expect(readFileSync(aside).equals(damaged), "the damaged file is kept byte for byte").toBe(true);
    expect(asideFiles(second.paths.state)).toHaveLength(1);
    expect(sqliteVerdict(db), "the new file is sound").toBe("ok");
    expect(sim.sim.stats().logins, "logged in again (the tokens were in the damaged file)").toBe(2);

    const log = readFileSync(second.paths.logFile, "utf8");
    expect(log).toMatch(/the database was corrupt/);
    expect(log).toContain(aside);

    const doctor = spawnSync(process.execPath, [CLI_BIN, "doctor", "--json"], {
      env: { PATH: process.env.PATH ?? "", HOME: home.home, LOXMCP_HOME: home.home },
      encoding: "utf8",
      timeout: 30_000,
    });
    const check = (JSON.parse(doctor.stdout) as { checks: J[] }).checks.find(
      (c) => c.id === "storage.recovered",
    );
    expect(check, doctor.stdout).toMatchObject({ level: "warn" });
    expect(check?.message).toContain(aside);
    const status = spawnSync(process.execPath, [CLI_BIN, "status"], {
      env: { PATH: process.env.PATH ?? "", HOME: home.home, LOXMCP_HOME: home.home },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(status.stdout).toMatch(/the database was corrupt.*old file is kept as .*loxmcp\.db\.corrupt-/);

    // A write works on the fresh database, and is audited there.
    const c = new Client({ name: "after-corruption", version: "1.0.0" });
    await c.connect(new SocketClientTransport(second.socketPath, { name: "after-corruption" }));
    await second.waitStatus((x) => Boolean((x.policy as J | undefined)?.structure), 20_000, "a snapshot");
    const light = sim.sim.house().controls.find((x) => x.type === "LightControllerV2")?.uuid as string;
    const res = await c.callTool({ name: "control_command", arguments: { uuid: light, command: "on" } });
    expect(res.isError, JSON.stringify(res)).toBeFalsy();
    const { events } = (await controlCall(second.socketPath, "loxmcp/audit", {})) as { events: J[] };
    expect(events.at(-1)).toMatchObject({ tool: "control_command", outcome: "ok" });
    await c.close();
    expect((await second.stop()).code).toBe(0);
    expect(readdirSync(second.paths.state).filter((f) => f.includes("lock"))).toEqual([]);
  });
});

describe("Storage (in process)", () => {
  let dir: string;
  const open: Storage[] = [];
  afterEach(() => {
    for (const s of open.splice(0)) {
      try {
        s.close();
      } catch {
        // closed
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const fresh = () => {
    dir = mkdtempSync("/tmp/lx-st-");
    return join(dir, "loxmcp.db");
  };

  it("a file that is no database at all is set aside and replaced", () => {
    const file = fresh();
    writeFileSync(file, randomBytes(20_000), { mode: 0o600 });
    const s = Storage.open(file);
    open.push(s);
    expect(s.recovered?.from).toMatch(/loxmcp\.db\.corrupt-/);
    expect(s.recovered?.reason).toMatch(/not a database|NOTADB/i);
    expect(statSync(s.recovered?.from as string).size).toBe(20_000);
    new TokenStore(s.db).saveRelayEntry("S1", "https://x/mcp");
    expect(new TokenStore(s.db).getRelayEntry("S1")?.entry).toBe("https://x/mcp");
    expect(s.status()).toMatchObject({ ok: true, recovered: { when: "start" } });
  });

  it("a page found damaged by a query at run time: the query fails, the file is replaced right after", async () => {
    const file = fresh();
    const s = Storage.open(file);
    open.push(s);
    const audit = new AuditStore(s.db);
    const row = {
      client: "c",
      tool: "t",
      args: { pad: "x".repeat(400) },
      kind: "read" as const,
      decision: "allowed",
      outcome: "ok",
      latencyMs: 1,
    };
    audit.recordMany(Array.from({ length: 400 }, (_, i) => ({ ...row, ts: i })));
    s.db.pragma("wal_checkpoint(TRUNCATE)");
    const pages = Math.floor(statSync(file).size / 4096);
    const fd = openSync(file, "r+");
    writeSync(fd, randomBytes(4096), 0, 4096, 4096 * Math.floor(pages / 2));
    closeSync(fd);
    // Another connection writes: ours drops its page cache and reads the damaged page from disk.
    const other = new Database(file);
    other.prepare("INSERT INTO policy_state (key, value, updated_at) VALUES ('x', '1', 1)").run();
    other.close();
    const replaced = new Promise((r) => s.once("replaced", r));
    expect(() => audit.query({ limit: 10_000 })).toThrow(/corrupt \(SQLITE_CORRUPT/);
    expect(s.status()).toMatchObject({ ok: false, cause: "corrupt" });
    await replaced;
    expect(s.status()).toMatchObject({ ok: true, recovered: { when: "runtime" } });
    expect(audit.query({})).toEqual([]);
    audit.record({ ...row, ts: 1 });
    expect(audit.query({})).toHaveLength(1);
  });

  it("SQLITE_CORRUPT at run time: the file is set aside, the stores carry on with a fresh one, the PIN and the stop are salvaged", async () => {
    const file = fresh();
    const s = Storage.open(file);
    open.push(s);
    const tokens = new TokenStore(s.db);
    const audit = new AuditStore(s.db);
    const snaps = new SnapshotStore(s.db);
    const pins = new PinStore(s.db);
    tokens.saveTokens("S1", { access_token: "a1", token_type: "Bearer", refresh_token: "r1" });
    audit.record({
      ts: 1,
      client: "c",
      tool: "t",
      args: {},
      kind: "read",
      decision: "allowed",
      outcome: "ok",
      latencyMs: 1,
    });
    snaps.setState("emergencyStop", { active: true, since: 5, by: "person" });
    pins.setHash("scrypt$1$2$3$salt$hash", 7);
    const replaced = new Promise((r) => s.once("replaced", r));
    // What a store reports when SQLite answers SQLITE_CORRUPT for a query.
    healthOf(s.db).fail(
      Object.assign(new Error("database disk image is malformed"), { code: "SQLITE_CORRUPT" }),
      "test",
    );
    await replaced;
    const r = s.recovered;
    expect(r).toMatchObject({ when: "runtime" });
    expect(existsSync(r?.from as string)).toBe(true);
    expect(asideFiles(dir).filter((f) => !/-(wal|shm)$/.test(f))).toHaveLength(1);
    expect(r?.salvaged).toEqual(expect.arrayContaining(["emergency stop state", "approval PIN"]));
    // The same store objects work on the fresh file.
    expect(snaps.getState("emergencyStop")).toMatchObject({ active: true, by: "person" });
    expect(pins.get().hash).toBe("scrypt$1$2$3$salt$hash");
    expect(tokens.getTokens("S1"), "tokens are not salvaged: the daemon logs in again").toBeUndefined();
    const id = audit.record({
      ts: 2,
      client: "c",
      tool: "t",
      args: {},
      kind: "read",
      decision: "allowed",
      outcome: "ok",
      latencyMs: 1,
    });
    expect(id, "new audit ids do not collide with the old file's").toBeGreaterThan(1_000_000);
    expect(audit.query({}).map((e) => e.ts)).toEqual([2]);
    expect(s.status()).toMatchObject({ ok: true, recovered: { when: "runtime" } });
  });
});
