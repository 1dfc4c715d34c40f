/**
 * Logins and refreshes flown in a child process (relay/auth/flight-child.ts, `loxmcpd
 * --oauth-helper`), against the simulator over real HTTP and the rig's real SQLite file: the tokens
 * the child stores are what the manager reads; a rejected password, a failing password command and
 * a dead or hung helper come back as the errors the manager classifies (auth_failed only for the
 * first two); the password never reaches the child through its environment.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { AuthError, CredentialsUnavailableError, LoginRejectedError } from "../src/relay/auth/errors.js";
import { AuthManager, type AuthManagerOptions } from "../src/relay/auth/manager.js";
import { openDatabase } from "../src/store/db.js";
import { TokenStore } from "../src/store/tokens.js";
import { makeRig, type Rig } from "./relay-helpers.js";

/** The built daemon entry: run with --oauth-helper it flies one login or refresh. */
const ENTRY = fileURLToPath(new URL("../dist/main.js", import.meta.url));

let rig: Rig | undefined;
afterEach(async () => {
  await rig?.cleanup();
  rig = undefined;
});

function manager(r: Rig, extra: Partial<AuthManagerOptions> = {}): AuthManager {
  return new AuthManager({
    key: r.sim.serial,
    store: r.store,
    user: r.sim.user,
    password: r.sim.password,
    logger: r.log.logger,
    resourcePolicy: { serial: r.sim.serial },
    childProcess: { entry: ENTRY, dbPath: r.dbFile },
    ...extra,
  });
}

describe("OAuth flights in a child process", () => {
  it("logs in and refreshes; the tokens the child stored are the manager's; its log lines reach the daemon's log", async () => {
    rig = await makeRig();
    const r = rig;
    const url = r.sim.relayUrls[0] as string;
    const auth = manager(r);
    await auth.login(url);
    const first = r.store.getTokens(r.sim.serial)?.tokens.access_token;
    expect(first).toBeTruthy();
    expect(auth.counters).toEqual({ logins: 1, refreshes: 0 });
    expect(r.sim.stats().logins).toBe(1);
    await auth.handleUnauthorized(url, first, {});
    const second = r.store.getTokens(r.sim.serial)?.tokens.access_token;
    expect(second).toBeTruthy();
    expect(second).not.toBe(first);
    expect(auth.counters).toEqual({ logins: 1, refreshes: 1 });
    expect(r.sim.stats()).toMatchObject({ logins: 1, refreshes: 1 });
    expect(await auth.accessToken(url)).toBe(second);
    expect(r.log.lines().some((l) => l.component === "oauth")).toBe(true);
  });

  it("the database locked by another writer during the login: the child hands what it could not write to the daemon, nothing is lost", async () => {
    rig = await makeRig();
    const r = rig;
    r.db.pragma("busy_timeout = 50");
    const locker = openDatabase(r.dbFile);
    locker.exec("BEGIN IMMEDIATE");
    let locked = true;
    try {
      const auth = manager(r);
      await auth.login(r.sim.relayUrls[0] as string);
      expect(auth.counters.logins).toBe(1);
      // The daemon's store holds the tokens (in memory: the database is still locked) …
      const held = r.store.getTokens(r.sim.serial)?.tokens.access_token;
      expect(held).toBeTruthy();
      expect(r.store.unsaved()).toBeGreaterThan(0);
      expect(r.log.text()).toMatch(/could not write to the database; the daemon keeps its changes/);
      locker.exec("ROLLBACK");
      locked = false;
      // … and writes them once it can: a fresh connection reads the same token from the file.
      expect(r.store.getTokens(r.sim.serial)?.tokens.access_token).toBe(held);
      expect(r.store.unsaved()).toBe(0);
      const fresh = new TokenStore(locker);
      expect(fresh.getTokens(r.sim.serial)?.tokens.access_token).toBe(held);
    } finally {
      if (locked) locker.exec("ROLLBACK");
      locker.close();
    }
  });

  it("a wrong password: LoginRejectedError from the child, auth_failed, no password in the log", async () => {
    rig = await makeRig();
    const r = rig;
    const sentinel = "wrong-SENTINEL-pw-7f3a";
    const auth = manager(r, { password: sentinel });
    const err = await auth.login(r.sim.relayUrls[0] as string).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LoginRejectedError);
    expect(auth.failedReason).toMatch(/login was rejected/);
    expect(r.log.text()).not.toContain(sentinel);
  });

  it("a failing password command: CredentialsUnavailableError naming it, auth_failed", async () => {
    rig = await makeRig();
    const r = rig;
    const auth = manager(r, {
      password: async () => {
        throw new Error("LOXONE_PASSWORD_COMMAND exited with status 3: vault locked");
      },
    });
    const err = await auth.login(r.sim.relayUrls[0] as string).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CredentialsUnavailableError);
    expect((err as Error).message).toMatch(/LOXONE_PASSWORD_COMMAND exited with status 3/);
    expect(auth.failedReason).toMatch(/LOXONE_PASSWORD_COMMAND/);
  });

  it("a helper that dies or hangs fails the flight as 'retry later', never auth_failed", async () => {
    rig = await makeRig();
    const r = rig;
    const dies = join(r.dir, "dies.mjs");
    writeFileSync(dies, 'process.stderr.write("boom: helper broke\\n"); process.exit(3);\n');
    // A crash prints a code location first: the message names the error line, the log has it all.
    const crashes = join(r.dir, "crashes.mjs");
    writeFileSync(crashes, 'throw new TypeError("cannot read the flight");\n');
    const hangs = join(r.dir, "hangs.mjs");
    writeFileSync(hangs, "setInterval(() => {}, 1000);\n");
    for (const [entry, what] of [
      [dies, /exited \(code 3\) before it answered \(boom: helper broke\)/],
      [crashes, /exited \(code 1\) before it answered \(TypeError: cannot read the flight\)/],
      [hangs, /did not finish in 0\.5 s/],
    ] as const) {
      const auth = manager(r, { childProcess: { entry, dbPath: r.dbFile, deadlineMs: 500 } });
      const err = await auth.login(r.sim.relayUrls[0] as string).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AuthError);
      expect((err as AuthError).code).toBe("AUTH_UNAVAILABLE");
      expect((err as Error).message).toMatch(what);
      expect(auth.failedReason).toBeUndefined();
    }
  });

  it("a helper of another version (an upgrade under a running daemon) refuses: 'retry later' naming `loxmcp restart`", async () => {
    rig = await makeRig();
    const r = rig;
    const auth = manager(r, { childProcess: { entry: ENTRY, dbPath: r.dbFile, version: "0.0.0-older" } });
    const err = await auth.login(r.sim.relayUrls[0] as string).catch((e: unknown) => e);
    expect((err as AuthError).code).toBe("AUTH_UNAVAILABLE");
    expect((err as Error).message).toMatch(/running daemon 0\.0\.0-older: run `loxmcp restart`/);
    expect(auth.failedReason).toBeUndefined();
    expect(r.sim.stats().logins).toBe(0);
  });

  it("started by hand (no IPC channel), the helper refuses and exits 2", () => {
    const out = spawnSync(process.execPath, [ENTRY, "--oauth-helper"], { encoding: "utf8", timeout: 10_000 });
    expect(out.status).toBe(2);
    expect(out.stderr).toMatch(/started by loxmcpd itself, not by hand/);
  });

  it("the password is not in the child's environment; it is handed over only when the child asks", async () => {
    rig = await makeRig();
    const r = rig;
    const spy = join(r.dir, "spy.mjs");
    // Reports which LOXONE_* variables it got, as a flight error (the manager passes the message on).
    writeFileSync(
      spy,
      `process.once("message", () => process.send({ type: "failed", error: { name: "Error", message: "env:" + Object.keys(process.env).filter((k) => k.startsWith("LOXONE_")).sort().join(",") } }, () => process.exit(0)));\n`,
    );
    const before = { ...process.env };
    process.env.LOXONE_PASSWORD = "env-SENTINEL";
    process.env.LOXONE_PASSWORD_COMMAND = "echo x";
    process.env.LOXONE_USER = "someone";
    try {
      let asked = 0;
      const auth = manager(r, {
        childProcess: { entry: spy, dbPath: r.dbFile },
        password: async () => {
          asked++;
          return "x";
        },
      });
      const err = await auth.login(r.sim.relayUrls[0] as string).catch((e: unknown) => e);
      expect((err as Error).message).toContain("env:LOXONE_USER");
      expect((err as Error).message).not.toMatch(/LOXONE_PASSWORD/);
      expect(asked).toBe(0);
    } finally {
      for (const k of ["LOXONE_PASSWORD", "LOXONE_PASSWORD_COMMAND", "LOXONE_USER"]) {
        if (before[k] === undefined) delete process.env[k];
        else process.env[k] = before[k];
      }
    }
  });
});
