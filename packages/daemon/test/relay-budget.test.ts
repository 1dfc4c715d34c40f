/**
 * connect's rate budget and errors that name what failed, against the simulator over HTTP:
 * - a 404 (unknown serial) is asked again only on its long schedule, and a 429 after it keeps
 *   naming the serial;
 * - our own budget caps GETs to connect; past it the last known entry is tried again;
 * - an entry connect named moments ago that never worked is kept instead of asking again;
 * - OAuth errors name the endpoint that failed (token, registration, authorize), and a refresh
 *   that fails on the token endpoint is not turned into a password login.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { type Simulator, startSimulator } from "@loxmcp/simulator";
import { afterEach, describe, expect, it } from "vitest";
import { runPasswordCommand } from "../src/config.js";
import { UpstreamError } from "../src/contracts.js";
import { ConnectBudgetError, RelayConfigError, RelayResolver } from "../src/relay/resolver.js";
import { type Database, openDatabase } from "../src/store/db.js";
import { TokenStore } from "../src/store/tokens.js";
import { captureLog, makeRig, type Rig } from "./relay-helpers.js";

let sim: Simulator | undefined;
let dir: string | undefined;
let db: Database | undefined;
let rig: Rig | undefined;

afterEach(async () => {
  await sim?.stop();
  await rig?.cleanup();
  db?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  sim = db = dir = rig = undefined;
});

function store(): TokenStore {
  dir = mkdtempSync("/tmp/lx-");
  db = openDatabase(join(dir, "loxmcp.db"));
  return new TokenStore(db);
}

function resolver(
  s: Simulator,
  serial: string,
  extra: Partial<ConstructorParameters<typeof RelayResolver>[0]> = {},
) {
  return new RelayResolver({
    connectUrl: s.connectUrl,
    serial,
    store: store(),
    logger: captureLog().logger,
    minBackoffMs: 10,
    maxBackoffMs: 50,
    ...extra,
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("connect budget", () => {
  it("404: a config error naming LOXONE_SERIAL, asked again only on its schedule (doubling)", async () => {
    sim = await startSimulator({ port: 0 });
    const r = resolver(sim, "504F94A0AAAA", { notFoundRetryMs: 300 });
    const first = await r.resolve("test").catch((e: unknown) => e);
    expect(first).toBeInstanceOf(RelayConfigError);
    expect((first as RelayConfigError).message).toMatch(
      /serial 504F94A0AAAA \(HTTP 404.*check LOXONE_SERIAL; next check/,
    );
    expect((first as RelayConfigError).retryAt).toBeGreaterThan(Date.now() + 200);
    // Asking again before the schedule: the same reason, nothing sent.
    for (let i = 0; i < 5; i++) {
      await expect(r.resolve("again")).rejects.toThrow(/LOXONE_SERIAL/);
    }
    expect(sim.stats().connectRequests).toBe(1);
    expect(r.configProblem()).toMatch(/LOXONE_SERIAL/);
    await sleep(350);
    const second = (await r.resolve("scheduled").catch((e: unknown) => e)) as RelayConfigError;
    expect(sim.stats().connectRequests).toBe(2);
    // The next wait doubles (600 ms).
    expect(second.retryAt! - Date.now()).toBeGreaterThan(450);
  });

  it("a 429 after a 404 keeps naming the serial (the limit is only the symptom)", async () => {
    sim = await startSimulator({ port: 0, connectRateLimit: 2 });
    const r = resolver(sim, "504F94A0AAAA", { notFoundRetryMs: 100 });
    await expect(r.resolve("first")).rejects.toThrow(/LOXONE_SERIAL/);
    // Somebody else on this address spends the rest of connect's limit.
    await fetch(`${sim.connectUrl}/${sim.serial}/mcp`, { redirect: "manual" });
    await sleep(150);
    const err = (await r.resolve("scheduled").catch((e: unknown) => e)) as UpstreamError;
    expect(sim.stats().connectRequests).toBe(3);
    expect(err).toBeInstanceOf(RelayConfigError);
    expect(err.message).toMatch(/does not know Miniserver serial 504F94A0AAAA.*LOXONE_SERIAL/);
    expect(err.message).toMatch(/429/);
    expect((err.data as { retryAt?: number }).retryAt).toBeGreaterThan(Date.now() + 30_000);
    // And while blocked: same root cause, nothing sent.
    await expect(r.resolve("blocked")).rejects.toThrow(/LOXONE_SERIAL/);
    expect(sim.stats().connectRequests).toBe(3);
  });

  it("never more GETs than the budget; past it the last known entry is tried again", async () => {
    sim = await startSimulator({ port: 0, connectRateLimit: 1_000 });
    const r = resolver(sim, sim.serial, { budgetPerMinute: 3 });
    for (let i = 0; i < 3; i++) {
      const e = await r.resolve(`round ${i}`);
      r.confirm(e);
      expect(r.invalidate(e)).toBe(true);
    }
    expect(sim.stats().connectRequests).toBe(3);
    // Budget spent: no GET, the last entry comes back.
    expect(await r.entry()).toBe(sim.relayUrls[0]);
    expect(sim.stats().connectRequests).toBe(3);

    // Without a last known entry (connect never answered with a redirect) the caller is told
    // when to come back: a connect answering 503 gets 2 GETs, not 1 + 3 retries.
    let hits = 0;
    const busy = createServer((_req, res) => {
      hits++;
      res.writeHead(503).end();
    });
    await new Promise<void>((ok) => busy.listen(0, "127.0.0.1", ok));
    try {
      const fresh = new RelayResolver({
        connectUrl: `http://127.0.0.1:${(busy.address() as AddressInfo).port}`,
        serial: "504F94A0C0DE",
        store: store(),
        logger: captureLog().logger,
        minBackoffMs: 10,
        maxBackoffMs: 20,
        budgetPerMinute: 2,
      });
      const err = await fresh.entry().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ConnectBudgetError);
      expect((err as ConnectBudgetError).retryAt).toBeGreaterThan(Date.now() + 50_000);
      expect((err as Error).message).toMatch(/not asking connect .* again before/);
      expect(hits).toBe(2);
    } finally {
      await new Promise((ok) => busy.close(ok));
    }
  });

  it("a fresh entry that never worked is kept when it fails; a confirmed one is re-resolved", async () => {
    sim = await startSimulator({ port: 0 });
    const r = resolver(sim, sim.serial);
    const e = await r.resolve("first");
    expect(r.invalidate(e)).toBe(false);
    expect(r.cached()).toBe(e);
    r.confirm(e);
    expect(r.invalidate(e)).toBe(true);
    expect(r.cached()).toBeUndefined();
    expect(sim.stats().connectRequests).toBe(1);
  });
});

/** A fetch that fails requests whose path matches, while `on()` says so. */
function failing(path: RegExp, mode: "503" | "refused", on: () => boolean): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : String(input);
    if (on() && path.test(new URL(url).pathname)) {
      if (mode === "refused") {
        throw Object.assign(new TypeError("fetch failed"), { cause: { code: "ECONNREFUSED" } });
      }
      return new Response("busy", { status: 503 });
    }
    return fetch(input, init);
  }) as typeof fetch;
}

const READ = { name: "system_status", arguments: {} };

describe("errors name the endpoint that failed", () => {
  for (const mode of ["503", "refused"] as const) {
    it(`a refresh failing on the token endpoint (${mode}) names it, never /authorize, and logs in no one`, async () => {
      rig = await makeRig();
      let broken = false;
      const up = rig.session({ fetch: failing(/\/token$/, mode, () => broken) });
      up.start();
      await up.whenReady(10_000);
      const logins = rig.sim.stats().logins;
      broken = true;
      rig.sim.expireAccessTokens();
      const err = (await up
        .request("tools/call", READ, { retryable: true })
        .catch((e: unknown) => e)) as Error;
      expect(err).toBeInstanceOf(UpstreamError);
      expect(err.message).toMatch(/token endpoint \(http:\/\/127\.0\.0\.1:\d+\/token\)/);
      expect(err.message).toMatch(mode === "503" ? /HTTP 503/ : /ECONNREFUSED/);
      expect(err.message).not.toMatch(/authorize/);
      expect(rig.sim.stats().logins).toBe(logins);
      expect(rig.sim.stats().failedLogins).toBe(0);
      // The refresh token was kept: once the endpoint is back, a refresh (not a login) recovers.
      broken = false;
      await up.request("tools/call", READ, { retryable: true });
      expect(rig.sim.stats().logins).toBe(logins);
      expect(rig.sim.stats().refreshes).toBeGreaterThanOrEqual(1);
    });
  }

  it("registration and authorize failures name their endpoint", async () => {
    rig = await makeRig();
    const reg = rig.session({ fetch: failing(/\/register$/, "503", () => true) });
    reg.start();
    await expect(reg.whenReady(3_000)).rejects.toThrow(
      /registration endpoint \(http:\/\/127\.0\.0\.1:\d+\/register\) answered HTTP 503/,
    );
    expect(reg.status().reason).toMatch(/registration endpoint/);
    await reg.stop();

    const authz = rig.session({ fetch: failing(/\/authorize$/, "refused", () => true) });
    authz.start();
    await expect(authz.whenReady(3_000)).rejects.toThrow(/\/authorize \(ECONNREFUSED\)/);
    expect(authz.status().reason).not.toMatch(/token endpoint|registration/);
  });

  it("a failing password function is auth_failed with its reason, and is not called again until relogin", async () => {
    rig = await makeRig();
    let calls = 0;
    const up = rig.session({
      password: async () => {
        calls++;
        throw new Error("LOXONE_PASSWORD_COMMAND exited with status 3: vault is locked");
      },
    });
    up.start();
    const err = await up.whenReady(10_000).catch((e: unknown) => e);
    expect((err as UpstreamError).code).toBe("AUTH_FAILED");
    expect(up.status().state).toBe("auth_failed");
    expect(up.status().reason).toBe("LOXONE_PASSWORD_COMMAND exited with status 3: vault is locked");
    await sleep(1_500);
    await expect(up.request("tools/call", READ, { retryable: true })).rejects.toMatchObject({
      code: "AUTH_FAILED",
    });
    expect(calls).toBe(1);
    await expect(up.relogin()).rejects.toMatchObject({ code: "AUTH_FAILED" });
    expect(calls).toBe(2);
  });
});

describe("runPasswordCommand errors", () => {
  it("name the exit status and stderr's first line, never what went to stdout", async () => {
    const err = (await runPasswordCommand(
      `echo hunter2-secret; printf '\\n  first: hunter2-secret was refused\\033[31m\\nsecond line\\n' >&2; exit 3`,
    ).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(
      /^LOXONE_PASSWORD_COMMAND exited with status 3: first: \[stdout removed\] was refused\[31m; run it by hand/,
    );
    expect(err.message).not.toMatch(/hunter2|second line/);
    expect(err.message).not.toContain(String.fromCharCode(27));
    const quiet = (await runPasswordCommand("exit 7").catch((e: unknown) => e)) as Error;
    expect(quiet.message).toMatch(/exited with status 7 \(nothing on stderr\)/);
    const slow = (await runPasswordCommand("sleep 5", 200).catch((e: unknown) => e)) as Error;
    expect(slow.message).toMatch(/was stopped after 0 s \(SIGTERM\)/);
  });
});
