/**
 * Fuzz (fast-check) of configuration parsing through the real `loxmcpd` process: random values for
 * the environment keys and random config.json contents. Whenever the configuration is invalid
 * (decided by the daemon's own `loadConfig`), the process exits 78 (EX_CONFIG) with exactly one
 * line on stderr naming the key — never a stack trace, never the password.
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DAEMON_BIN, REPO_ROOT } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { ConfigError, loadConfig } from "../src/config.js";

const SENTINEL_PASSWORD = "S3ntinel-Pw-7f1c2e9a";
const KEYS = [
  "LOXONE_SERIAL",
  "LOXONE_USER",
  "LOXONE_CONNECT_URL",
  "LOXMCP_LOG_LEVEL",
  "LOXMCP_POLICY",
  "LOXMCP_PING_INTERVAL",
  "LOXMCP_IDLE_CHECK",
  "LOXMCP_REQUEST_TIMEOUT",
  "LOXMCP_UPSTREAM_URL",
  "LOXMCP_ALLOWED_RESOURCES",
] as const;

/** A valid base configuration pointing at a closed loopback port (never reached: only invalid configs run). */
function validEnv(home: string): Record<string, string> {
  return {
    LOXMCP_HOME: home,
    LOXONE_SERIAL: "504F94A00001",
    LOXONE_USER: "fuzz",
    LOXONE_PASSWORD: SENTINEL_PASSWORD,
    LOXONE_CONNECT_URL: "http://127.0.0.1:9",
  };
}

const envValue = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.constantFrom(
    "",
    " ",
    "-1",
    "0",
    "1e9",
    "NaN",
    "Infinity",
    "http://example.com",
    "ftp://x",
    "true",
    "null",
  ),
  fc.stringMatching(/^[a-z]{1,10}:\/\/[a-z0-9.]{0,20}(:\d{0,6})?\/?.{0,10}$/),
);

describe("fuzz: configuration → exit 78 with one clear line", () => {
  let home: TempHome;

  beforeAll(() => {
    home = makeHome();
    mkdirSync(join(home.home, "config"), { recursive: true, mode: 0o700 });
  });
  afterAll(() => home?.cleanup());

  function runDaemon(env: Record<string, string>) {
    return spawnSync(process.execPath, [DAEMON_BIN], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? "", ...env },
      encoding: "utf8",
      timeout: 15_000,
    });
  }

  function expectConfigExit(env: Record<string, string>, err: unknown) {
    const r = runDaemon(env);
    const stderr = r.stderr.trim();
    const ctx = `env ${JSON.stringify(env)}\nstderr:\n${stderr}`;
    expect(r.signal, ctx).toBeNull();
    expect(r.status, ctx).toBe(78);
    expect(stderr.split("\n"), ctx).toHaveLength(1);
    expect(stderr, ctx).not.toMatch(/^\s+at /m);
    expect(stderr, ctx).not.toContain(SENTINEL_PASSWORD);
    expect(r.stdout, "nothing on stdout").toBe("");
    if (err instanceof ConfigError) expect(stderr, ctx).toContain(String(err.key).split(":")[0]);
  }

  /** The daemon's own parser decides whether the input is invalid; valid ones are skipped. */
  function configErrorFor(env: Record<string, string>): unknown {
    try {
      loadConfig({ env });
      return undefined;
    } catch (e) {
      return e;
    }
  }

  it("random environment values", () => {
    rmSync(join(home.home, "config", "config.json"), { force: true });
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom(...KEYS), envValue, { minKeys: 1, maxKeys: 3 }),
        fc.subarray([...KEYS], { maxLength: 2 }),
        (overrides, removed) => {
          const env = validEnv(home.home);
          for (const k of removed) delete env[k];
          for (const [k, v] of Object.entries(overrides)) env[k] = v.replace(/\0/g, "");
          const err = configErrorFor(env);
          fc.pre(err !== undefined);
          expectConfigExit(env, err);
        },
      ),
      { numRuns: 15 },
    );
  });

  it("random config.json contents", () => {
    const file = join(home.home, "config", "config.json");
    const content = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? "null"),
      fc
        .record(
          {
            serial: fc.jsonValue({ maxDepth: 1 }),
            pingIntervalSec: fc.jsonValue({ maxDepth: 1 }),
            policy: fc.jsonValue({ maxDepth: 2 }),
            allowedResources: fc.jsonValue({ maxDepth: 2 }),
            logLevel: fc.jsonValue({ maxDepth: 1 }),
          },
          { requiredKeys: [] },
        )
        .map((o) => JSON.stringify(o)),
    );
    try {
      fc.assert(
        fc.property(content, (text) => {
          writeFileSync(file, text, { mode: 0o600 });
          const env = validEnv(home.home);
          const err = configErrorFor(env);
          fc.pre(err !== undefined);
          expectConfigExit(env, err);
        }),
        { numRuns: 15 },
      );
    } finally {
      rmSync(file, { force: true });
    }
  });

  it("a missing required key names it", () => {
    for (const key of ["LOXONE_SERIAL", "LOXONE_USER", "LOXONE_PASSWORD"]) {
      const env = validEnv(home.home);
      delete env[key];
      const err = configErrorFor(env);
      expect(err).toBeInstanceOf(ConfigError);
      expectConfigExit(env, err);
    }
  });
});
