import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseDotenv } from "@loxmcp/common";
import { afterEach, describe, expect, it } from "vitest";
import { spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { ConfigError, loadConfig } from "../src/config.js";

const SERIAL = "504F94A00001";
let homes: TempHome[] = [];

function home(): TempHome {
  const h = makeHome();
  homes.push(h);
  return h;
}

function configDir(h: TempHome): string {
  const dir = join(h.home, "config");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

afterEach(() => {
  for (const h of homes) h.cleanup();
  homes = [];
});

function expectConfigError(fn: () => unknown, key: string, text?: RegExp): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.key).toBe(key);
    expect(e.message).toContain(key.startsWith("config.json") ? "config.json" : key);
    if (text) expect(e.message).toMatch(text);
    return e;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("refuses a config.json or .env that other users can write (it decides credentials and policy)", () => {
    const h = home();
    const dir = configDir(h);
    const env = { LOXMCP_HOME: h.home, LOXONE_SERIAL: SERIAL, LOXONE_USER: "u", LOXONE_PASSWORD: "p" };
    writeFileSync(join(dir, "config.json"), JSON.stringify({ policy: { mode: "full" } }));
    chmodSync(join(dir, "config.json"), 0o666);
    expectConfigError(
      () => loadConfig({ env }),
      "config.json",
      /writable by other users \(mode 666\).*chmod 600/,
    );
    chmodSync(join(dir, "config.json"), 0o644);
    expect(loadConfig({ env }).policy.mode).toBe("full");
    writeFileSync(join(dir, ".env"), "LOXONE_USER=x\n");
    chmodSync(join(dir, ".env"), 0o620);
    expectConfigError(() => loadConfig({ env }), ".env", /writable by other users/);
  });

  it("takes environment over .env over config.json", () => {
    const h = home();
    const dir = configDir(h);
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({
        serial: "AAAAAAAAAAAA",
        user: "json-user",
        password: "json-pw",
        logLevel: "warn",
        policy: { mode: "full", clients: { claude: "read-only" } },
      }),
    );
    writeFileSync(
      join(dir, ".env"),
      "# comment\nexport LOXONE_USER=\"dotenv user\"\nLOXONE_PASSWORD='dot pw'\n",
    );
    const cfg = loadConfig({ env: { LOXMCP_HOME: h.home, LOXONE_SERIAL: SERIAL } });
    expect(cfg.serial).toBe(SERIAL);
    expect(cfg.user).toBe("dotenv user");
    expect(cfg.password).toBe("dot pw");
    expect(cfg.passwordSource).toBe(".env");
    expect(cfg.logLevel).toBe("warn");
    expect(cfg.policy.mode).toBe("full");
    expect(cfg.policy.clients).toEqual({ claude: "read-only" });
    expect(cfg.connectUrl).toBe("https://connect.loxonecloud.com");
    expect(cfg.pingIntervalMs).toBe(30_000);

    const cfg2 = loadConfig({
      env: { LOXMCP_HOME: h.home, LOXONE_SERIAL: SERIAL, LOXMCP_POLICY: "read-only", LOXONE_USER: "env" },
    });
    expect(cfg2.policy.mode).toBe("read-only");
    expect(cfg2.user).toBe("env");
  });

  it("reads the password from a file, and names the key when it cannot", () => {
    const h = home();
    const pwFile = join(h.home, "pw");
    writeFileSync(pwFile, "s3cret-from-file\n");
    chmodSync(pwFile, 0o600);
    const base = { LOXMCP_HOME: h.home, LOXONE_SERIAL: SERIAL, LOXONE_USER: "u" };
    const cfg = loadConfig({ env: { ...base, LOXONE_PASSWORD_FILE: pwFile } });
    expect(cfg.password).toBe("s3cret-from-file");
    expect(cfg.passwordSource).toBe(`file:${pwFile}`);
    expect(cfg.warnings).toEqual([]);
    chmodSync(pwFile, 0o644);
    const loose = loadConfig({ env: { ...base, LOXONE_PASSWORD_FILE: pwFile } });
    expect(loose.warnings).toEqual([expect.stringContaining(`chmod 600 ${pwFile}`)]);
    expectConfigError(
      () => loadConfig({ env: { ...base, LOXONE_PASSWORD_FILE: `${pwFile}.missing` } }),
      "LOXONE_PASSWORD_FILE",
      /ENOENT/,
    );
  });

  it("runs the password command only when the password is needed", async () => {
    const h = home();
    const cfg = loadConfig({
      env: {
        LOXMCP_HOME: h.home,
        LOXONE_SERIAL: SERIAL,
        LOXONE_USER: "u",
        LOXONE_PASSWORD_COMMAND: "printf 'pw-from-cmd\\n'",
      },
    });
    expect(typeof cfg.password).toBe("function");
    expect(await (cfg.password as () => Promise<string>)()).toBe("pw-from-cmd");
    const bad = loadConfig({
      env: {
        LOXMCP_HOME: h.home,
        LOXONE_SERIAL: SERIAL,
        LOXONE_USER: "u",
        LOXONE_PASSWORD_COMMAND: "echo leaked; exit 3",
      },
    });
    const err = await (bad.password as () => Promise<string>)().catch((e: unknown) => e as Error);
    expect((err as Error).message).toContain("LOXONE_PASSWORD_COMMAND");
    expect((err as Error).message).not.toContain("leaked");
  });

  it("rejects bad values with the key named", () => {
    const h = home();
    const ok = { LOXMCP_HOME: h.home, LOXONE_SERIAL: SERIAL, LOXONE_USER: "u", LOXONE_PASSWORD: "p" };
    expectConfigError(() => loadConfig({ env: { ...ok, LOXONE_SERIAL: "" } }), "LOXONE_SERIAL", /missing/);
    expectConfigError(
      () => loadConfig({ env: { ...ok, LOXONE_SERIAL: "not a serial!" } }),
      "LOXONE_SERIAL",
      /12 hex/,
    );
    expectConfigError(() => loadConfig({ env: { ...ok, LOXONE_USER: undefined } }), "LOXONE_USER", /missing/);
    expectConfigError(
      () => loadConfig({ env: { ...ok, LOXONE_PASSWORD: undefined } }),
      "LOXONE_PASSWORD",
      /missing/,
    );
    expectConfigError(
      () => loadConfig({ env: { ...ok, LOXONE_CONNECT_URL: "nope" } }),
      "LOXONE_CONNECT_URL",
      /not a URL/,
    );
    expectConfigError(
      () => loadConfig({ env: { ...ok, LOXONE_CONNECT_URL: "http://connect.example.com" } }),
      "LOXONE_CONNECT_URL",
      /loopback/,
    );
    expectConfigError(
      () => loadConfig({ env: { ...ok, LOXMCP_UPSTREAM_URL: "ftp://x" } }),
      "LOXMCP_UPSTREAM_URL",
      /https/,
    );
    expectConfigError(
      () => loadConfig({ env: { ...ok, LOXMCP_POLICY: "yolo" } }),
      "LOXMCP_POLICY",
      /read-only, confirm, full/,
    );
    expectConfigError(() => loadConfig({ env: { ...ok, LOXMCP_LOG_LEVEL: "loud" } }), "LOXMCP_LOG_LEVEL");
    expectConfigError(
      () => loadConfig({ env: { ...ok, LOXMCP_PING_INTERVAL: "0" } }),
      "LOXMCP_PING_INTERVAL",
    );
    expectConfigError(
      () =>
        loadConfig({ env: { ...ok, LOXONE_CONNECT_URL: "https://connect.example.com" }, insecureTls: true }),
      "--insecure-tls",
    );
    // http on loopback is fine, with or without --insecure-tls
    expect(loadConfig({ env: { ...ok, LOXONE_CONNECT_URL: "http://127.0.0.1:9/" } }).connectUrl).toBe(
      "http://127.0.0.1:9",
    );
    expect(
      loadConfig({ env: { ...ok, LOXONE_CONNECT_URL: "https://localhost:9" }, insecureTls: true })
        .insecureTls,
    ).toBe(true);

    writeFileSync(join(configDir(h), "config.json"), "{ not json");
    expectConfigError(() => loadConfig({ env: ok }), "config.json", /not valid JSON/);
    writeFileSync(join(configDir(h), "config.json"), JSON.stringify({ policy: { mode: "yolo" } }));
    expectConfigError(() => loadConfig({ env: ok }), "config.json:policy.mode");
  });

  it("parses .env files with quotes, comments and export", () => {
    expect(parseDotenv("A=1\n# c\nexport B=\"two words\"\nC='x=y'\n\nD=4 # trailing\n")).toMatchObject({
      A: "1",
      B: "two words",
      C: "x=y",
      D: "4",
    });
  });
});

describe("loxmcpd configuration errors (real process)", () => {
  const cases: Array<[string, Record<string, string>, string, RegExp]> = [
    [
      "missing serial",
      { LOXONE_USER: "u", LOXONE_PASSWORD: "p" },
      "LOXONE_SERIAL",
      /missing — set it in the environment or in .*\.env/,
    ],
    [
      "bad connect URL",
      { LOXONE_SERIAL: SERIAL, LOXONE_USER: "u", LOXONE_PASSWORD: "p", LOXONE_CONNECT_URL: "::nope" },
      "LOXONE_CONNECT_URL",
      /not a URL/,
    ],
    [
      "http to a non-loopback host",
      {
        LOXONE_SERIAL: SERIAL,
        LOXONE_USER: "u",
        LOXONE_PASSWORD: "p",
        LOXONE_CONNECT_URL: "http://connect.loxonecloud.com",
      },
      "LOXONE_CONNECT_URL",
      /plain http/,
    ],
  ];
  for (const [name, env, key, text] of cases) {
    it(`${name} ⇒ one line naming ${key}, exit 78`, async () => {
      const h = home();
      const d = spawnDaemon({ LOXMCP_HOME: h.home, ...env });
      const exit = await d.waitExit(15_000);
      expect(exit.code).toBe(78);
      const lines = d.stderr().trim().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^loxmcpd: config error: /);
      expect(lines[0]).toContain(key);
      expect(lines[0]).toMatch(text);
      expect(d.stderr()).not.toContain("p\n");
    });
  }
});
