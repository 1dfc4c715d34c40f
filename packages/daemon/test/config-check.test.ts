/**
 * Every configuration problem is found and named, by the daemon's own validation:
 * `checkConfig` collects all of them (environment, .env, config.json), unknown keys anywhere in
 * config.json are refused with the closest known key, a config.json syntax error is named with
 * line and column and never quotes the file; the real `loxmcpd --check-config [--json]` lists
 * them, and a daemon that refuses to start leaves its one-line reason in
 * <state>/last-start-error.json (removed by the next successful start).
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DAEMON_BIN, REPO_ROOT, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { withSimulator } from "../../../test-support/sim.js";
import { checkConfig, closest, locateJsonError } from "../src/config.js";

const SERIAL = "504F94A00001";
const SECRET = "Pw-S3ntinel-9c1d";
let homes: TempHome[] = [];

function home(): { home: string; config: string } {
  const h = makeHome();
  homes.push(h);
  const config = join(h.home, "config");
  mkdirSync(config, { recursive: true, mode: 0o700 });
  return { home: h.home, config };
}

afterEach(() => {
  for (const h of homes) h.cleanup();
  homes = [];
});

function runDaemon(args: string[], env: Record<string, string>) {
  return spawnSync(process.execPath, [DAEMON_BIN, ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? "", ...env },
    encoding: "utf8",
    timeout: 15_000,
  });
}

describe("checkConfig collects every problem", () => {
  it("names each bad key of the environment, .env and config.json, not just the first", () => {
    const h = home();
    writeFileSync(join(h.config, ".env"), "LOXMCP_LOG_LEVEL=loud\n", { mode: 0o600 });
    writeFileSync(
      join(h.config, "config.json"),
      JSON.stringify({ serial: SERIAL, user: "u", password: SECRET, pingIntervalSec: -1 }),
      { mode: 0o600 },
    );
    const r = checkConfig({ env: { LOXMCP_HOME: h.home, LOXMCP_POLICY: "readonly" } });
    expect(r.config).toBeUndefined();
    const keys = r.problems.map((p) => p.key);
    expect(keys).toEqual(
      expect.arrayContaining(["LOXMCP_POLICY", "LOXMCP_LOG_LEVEL", "config.json:pingIntervalSec"]),
    );
    // config.json's credentials are read even though other parts of it are wrong
    expect(keys).not.toContain("LOXONE_SERIAL");
    expect(keys).not.toContain("LOXONE_PASSWORD");
    const policy = r.problems.find((p) => p.key === "LOXMCP_POLICY");
    expect(policy?.message).toContain('LOXMCP_POLICY "readonly" is not one of read-only, confirm, full');
    expect(policy?.message).toContain('did you mean "read-only"');
    expect(policy?.message).toContain("environment");
    expect(r.problems.find((p) => p.key === "LOXMCP_LOG_LEVEL")?.message).toContain(join(h.config, ".env"));
    for (const p of r.problems) expect(p.message).not.toContain(SECRET);
  });

  it("refuses unknown keys at every level with the closest known key", () => {
    const h = home();
    writeFileSync(
      join(h.config, "config.json"),
      JSON.stringify({
        serial: SERIAL,
        user: "u",
        password: SECRET,
        logLevl: "info",
        LOXONE_USER: "x",
        motorPerMinute: 3,
        policy: {
          rateLimit: { motorPerMinute: 3 },
          rateLimits: { motorPerMinut: 3 },
          temperature: { mx: 26 },
          volume: { maxx: 50 },
          clients: { cursor: "read-only" },
        },
        limits: { maxConection: 10 },
        log: { file: 2 },
      }),
      { mode: 0o600 },
    );
    const r = checkConfig({ env: { LOXMCP_HOME: h.home } });
    const byKey = new Map(r.problems.map((p) => [p.key, p.message]));
    const expected: Array<[string, string]> = [
      ["config.json:logLevl", 'did you mean "logLevel"?'],
      ["config.json:LOXONE_USER", 'in config.json it is called "user"'],
      ["config.json:motorPerMinute", 'it belongs under "policy.rateLimits"'],
      ["config.json:policy.rateLimit", 'did you mean "policy.rateLimits"?'],
      ["config.json:policy.rateLimits.motorPerMinut", 'did you mean "policy.rateLimits.motorPerMinute"?'],
      ["config.json:policy.temperature.mx", 'did you mean "policy.temperature.max"?'],
      ["config.json:policy.volume.maxx", 'did you mean "policy.volume.max"?'],
      ["config.json:limits.maxConection", 'did you mean "limits.maxConnections"?'],
      ["config.json:log.file", 'did you mean "log.files"?'],
    ];
    for (const [key, hint] of expected) {
      expect(byKey.get(key), `${key} in ${[...byKey.keys()].join(", ")}`).toContain(hint);
      expect(byKey.get(key)).toContain("unknown key");
    }
    // client names under policy.clients are free-form: not unknown keys
    expect([...byKey.keys()].some((k) => k.includes("cursor"))).toBe(false);
    expect(r.problems).toHaveLength(expected.length);
  });

  it("names a config.json syntax error with line and column and never quotes the file", () => {
    const h = home();
    const file = join(h.config, "config.json");
    const env = { LOXMCP_HOME: h.home };
    const cases: Array<[string, number, number]> = [
      [`{\n  "password": "${SECRET}",,\n  "user": "u"\n}`, 2, 34],
      [`{\n  "password": "${SECRET}",\n  "user": tru\n}`, 3, 11],
      [`{\n  "password": "${SECRET}"\n  "user": "u"\n}`, 3, 3],
      [`{\n  "password": "${SECRET}",\n`, 3, 1],
      [`{ "password": "${SECRET}", } // trailing`, 1, 35],
    ];
    for (const [text, line, column] of cases) {
      writeFileSync(file, text, { mode: 0o600 });
      const p = checkConfig({ env }).problems.find((x) => x.key === "config.json");
      expect(p, text).toBeDefined();
      expect(p?.message).toContain(`${file} is not valid JSON at line ${line}, column ${column}`);
      expect(p).toMatchObject({ line, column });
      expect(p?.message).not.toContain(SECRET);
    }
  });

  it("locateJsonError and closest", () => {
    expect(locateJsonError('{"a": 1}')).toBeUndefined();
    expect(locateJsonError('{"a": [1, 2,]}')).toBe(12);
    expect(locateJsonError('{"a": "x\ny"}')).toBe(8);
    expect(locateJsonError('{"a": 1} x')).toBe(9);
    expect(closest("rateLimit", ["rateLimits", "temperature"])).toBe("rateLimits");
    expect(closest("zzzzzz", ["rateLimits", "temperature"])).toBeUndefined();
  });
});

describe("loxmcpd --check-config and the start error (real process)", () => {
  it("--check-config lists every problem (exit 78); --json gives them as data; a valid config exits 0", () => {
    const h = home();
    writeFileSync(
      join(h.config, "config.json"),
      JSON.stringify({ serial: SERIAL, user: "u", password: SECRET, policy: { rateLimit: {} } }),
      { mode: 0o600 },
    );
    const env = { LOXMCP_HOME: h.home, LOXMCP_POLICY: "readonly", LOXMCP_LOG_LEVEL: "loud" };
    const human = runDaemon(["--check-config"], env);
    expect(human.status, human.stderr).toBe(78);
    const lines = human.stdout.trim().split("\n");
    expect(lines.filter((l) => l.startsWith("loxmcpd: config error: "))).toHaveLength(3);
    expect(human.stdout).toContain('unknown key "policy.rateLimit" (did you mean "policy.rateLimits"?)');
    expect(human.stdout).toContain('LOXMCP_POLICY "readonly"');
    expect(human.stdout).toContain('LOXMCP_LOG_LEVEL "loud"');
    expect(human.stdout + human.stderr).not.toContain(SECRET);
    // nothing was started: no state, no log
    expect(existsSync(join(h.home, "state"))).toBe(false);

    const json = runDaemon(["--check-config", "--json"], env);
    expect(json.status).toBe(78);
    const doc = JSON.parse(json.stdout) as { ok: boolean; problems: Array<{ key: string }> };
    expect(doc.ok).toBe(false);
    expect(doc.problems.map((p) => p.key).sort()).toEqual(
      ["LOXMCP_LOG_LEVEL", "LOXMCP_POLICY", "config.json:policy.rateLimit"].sort(),
    );

    writeFileSync(
      join(h.config, "config.json"),
      JSON.stringify({ serial: SERIAL, user: "u", password: SECRET }),
    );
    const ok = runDaemon(["--check-config", "--json"], { LOXMCP_HOME: h.home });
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);
    const okDoc = JSON.parse(ok.stdout) as { ok: boolean; config: Record<string, unknown> };
    expect(okDoc.ok).toBe(true);
    expect(okDoc.config).toMatchObject({ serial: SERIAL, user: "u", passwordSource: "config.json" });
    expect(ok.stdout).not.toContain(SECRET);
  });

  it("an unknown key stops the daemon (exit 78, one line naming it); the reason is kept for the starters until a start succeeds", async () => {
    const sim = await withSimulator();
    try {
      const h = home();
      const env = sim.env(h.home);
      writeFileSync(
        join(h.config, "config.json"),
        JSON.stringify({ policy: { rateLimit: { motorPerMinute: 2 } } }),
      );
      const bad = runDaemon([], env);
      expect(bad.status).toBe(78);
      const lines = bad.stderr.trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(
        /^loxmcpd: config error: .*unknown key "policy\.rateLimit" \(did you mean "policy\.rateLimits"\?\)/,
      );
      const recFile = join(h.home, "state", "last-start-error.json");
      const rec = JSON.parse(readFileSync(recFile, "utf8")) as Record<string, unknown>;
      expect(rec).toMatchObject({ exitCode: 78 });
      expect(String(rec.message)).toContain('unknown key "policy.rateLimit"');
      expect(String(rec.message)).not.toContain(sim.sim.password);

      writeFileSync(
        join(h.config, "config.json"),
        JSON.stringify({ policy: { rateLimits: { motorPerMinute: 2 } } }),
      );
      const d = spawnDaemon(env);
      try {
        await d.waitReady();
        expect(existsSync(recFile)).toBe(false);
      } finally {
        await d.stop();
      }
    } finally {
      await sim.stop();
    }
  });
});
