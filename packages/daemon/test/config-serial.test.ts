/**
 * The Miniserver serial and the connect URL as people actually paste them: MAC style serials,
 * a typo'd character, a full connect URL that already holds `/<serial>/mcp`. loadConfig decides,
 * and the REAL daemon against the simulator proves that what it accepts really connects.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { ConfigError, loadConfig } from "../src/config.js";

let homes: TempHome[] = [];
const daemons: DaemonProcess[] = [];

function home(): TempHome {
  const h = makeHome();
  homes.push(h);
  return h;
}

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.stop().catch(() => d.kill9());
  for (const h of homes) h.cleanup();
  homes = [];
});

function load(env: Record<string, string>) {
  return loadConfig({ env: { LOXMCP_HOME: home().home, LOXONE_USER: "u", LOXONE_PASSWORD: "p", ...env } });
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

describe("serial and connect URL (loadConfig)", () => {
  it("takes 12 hex digits in any case and MAC style with : or -, normalised", () => {
    expect(load({ LOXONE_SERIAL: "504f94a0c0de" }).serial).toBe("504F94A0C0DE");
    expect(load({ LOXONE_SERIAL: "50:4F:94:A0:C0:DE" }).serial).toBe("504F94A0C0DE");
    expect(load({ LOXONE_SERIAL: " 50-4f-94-a0-c0-de " }).serial).toBe("504F94A0C0DE");
  });

  it("names the bad character, or the wrong length, and never takes a near-serial", () => {
    const x = configError(() => load({ LOXONE_SERIAL: "504F94A0C0DX" }));
    expect(x.key).toBe("LOXONE_SERIAL");
    expect(x.message).toMatch(/LOXONE_SERIAL "504F94A0C0DX".*"X" at position 12 is not a hex digit/);
    const o = configError(() => load({ LOXONE_SERIAL: "5O4F94A0C0DE" }));
    expect(o.message).toMatch(/"O" at position 2 .*digit 0/);
    const short = configError(() => load({ LOXONE_SERIAL: "504F94A0C0D" }));
    expect(short.message).toMatch(/11 hex digits, a serial has exactly 12/);
    // Mixed separators are not a MAC address: the separator itself is named.
    const mixed = configError(() => load({ LOXONE_SERIAL: "50:4F-94:A0:C0:DE" }));
    expect(mixed.message).toMatch(/":" at position 3/);
    // The old check let 6–32 letters and digits through.
    expect(() => load({ LOXONE_SERIAL: "ABCDEFGHIJ" })).toThrow(/"G" at position 7/);
  });

  it("a connect URL holding /<serial>/mcp gives the base and the serial; a conflict names both", () => {
    const full = load({ LOXONE_CONNECT_URL: "https://connect.loxonecloud.com/504F94A0C0DE/mcp" });
    expect(full).toMatchObject({ serial: "504F94A0C0DE", connectUrl: "https://connect.loxonecloud.com" });
    const same = load({
      LOXONE_CONNECT_URL: "https://connect.loxonecloud.com/504f94a0c0de/mcp/",
      LOXONE_SERIAL: "50:4F:94:A0:C0:DE",
    });
    expect(same).toMatchObject({ serial: "504F94A0C0DE", connectUrl: "https://connect.loxonecloud.com" });
    // Without /mcp, and behind a proxy prefix, too.
    expect(load({ LOXONE_CONNECT_URL: "https://proxy.example/loxone/504F94A0C0DE" })).toMatchObject({
      serial: "504F94A0C0DE",
      connectUrl: "https://proxy.example/loxone",
    });
    // A prefix that is not a serial stays part of the base.
    expect(
      load({ LOXONE_CONNECT_URL: "https://proxy.example/loxone/", LOXONE_SERIAL: "504F94A0C0DE" }).connectUrl,
    ).toBe("https://proxy.example/loxone");

    const conflict = configError(() =>
      load({
        LOXONE_CONNECT_URL: "https://connect.loxonecloud.com/504F94A0C0DE/mcp",
        LOXONE_SERIAL: "504F94A00001",
      }),
    );
    expect(conflict.key).toBe("LOXONE_CONNECT_URL");
    expect(conflict.message).toMatch(/names Miniserver 504F94A0C0DE but LOXONE_SERIAL is 504F94A00001/);
    expect(conflict.message).toContain("https://connect.loxonecloud.com (the base only)");

    // An entry path whose serial is broken blames the URL, precisely, not LOXONE_SERIAL.
    const broken = configError(() =>
      load({
        LOXONE_CONNECT_URL: "https://connect.loxonecloud.com/504F94A0C0DX/mcp",
        LOXONE_SERIAL: "504F94A0C0DE",
      }),
    );
    expect(broken.key).toBe("LOXONE_CONNECT_URL");
    expect(broken.message).toMatch(/ends in \/504F94A0C0DX\/mcp.*"X" at position 12/);
    const bare = configError(() => load({ LOXONE_CONNECT_URL: "https://connect.loxonecloud.com/mcp" }));
    expect(bare.key).toBe("LOXONE_CONNECT_URL");
    expect(bare.message).toMatch(/names no Miniserver serial/);
    // Neither a serial nor a URL naming one: LOXONE_SERIAL is missing.
    expect(configError(() => load({})).key).toBe("LOXONE_SERIAL");
  });
});

describe("the real daemon against the simulator", () => {
  let s: SimHandle;
  beforeAll(async () => {
    s = await withSimulator(); // serial 504F94A0C0DE
  });
  afterAll(async () => {
    await s?.stop();
  });

  it("connects with a MAC-style serial, and with only a full connect URL (no LOXONE_SERIAL)", async () => {
    const mac = spawnDaemon(s.env(home().home, { LOXONE_SERIAL: "50:4f:94:a0:c0:de" }));
    daemons.push(mac);
    await mac.waitReady(30_000);
    await mac.stop();

    s.sim.resetStats();
    const { LOXONE_SERIAL: _unused, ...env } = s.env(home().home, {
      LOXONE_CONNECT_URL: `${s.sim.connectUrl}/${s.sim.serial}/mcp`,
    });
    const full = spawnDaemon(env);
    daemons.push(full);
    const st = await full.waitReady(30_000);
    expect(st.state).toBe("ready");
    // It asked connect for <base>/<serial>/mcp exactly once: no doubled path, no 404 blamed on the serial.
    expect(s.sim.stats().connectRequests).toBe(1);
  });

  it("a typo'd serial or a conflicting full URL stops the daemon with exit 78 and one line naming it", async () => {
    const typo = spawnDaemon(s.env(home().home, { LOXONE_SERIAL: "504F94A0C0DX" }));
    daemons.push(typo);
    expect((await typo.waitExit(15_000)).code).toBe(78);
    expect(typo.stderr().trim().split("\n")).toHaveLength(1);
    expect(typo.stderr()).toMatch(
      /LOXONE_SERIAL "504F94A0C0DX" is not a Miniserver serial: the character "X" at position 12/,
    );

    const conflict = spawnDaemon(
      s.env(home().home, { LOXONE_CONNECT_URL: `${s.sim.connectUrl}/504F94A00001/mcp` }),
    );
    daemons.push(conflict);
    expect((await conflict.waitExit(15_000)).code).toBe(78);
    expect(conflict.stderr()).toMatch(
      /LOXONE_CONNECT_URL .* names Miniserver 504F94A00001 but LOXONE_SERIAL is 504F94A0C0DE/,
    );
    expect(conflict.stderr()).not.toMatch(/HTTP 404|check LOXONE_SERIAL/);
  });
});
