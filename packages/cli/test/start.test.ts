/**
 * `loxmcp start` waits for the login, not just the socket: a daemon that ends in auth_failed
 * (it will not retry until relogin) is a failed start — exit 1 and the reason — while a ready
 * one is exit 0. Real CLI, real detached daemon, the simulator.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { CliSandbox } from "./helpers.js";

const WRONG = "S3NTINEL-not-the-password";

let sb: CliSandbox;
let s: SimHandle;

beforeEach(async () => {
  s = await withSimulator();
  sb = new CliSandbox();
  sb.env = { ...sb.env, ...s.env(sb.loxmcpHome) };
});
afterEach(async () => {
  await sb.run(["stop"]).catch(() => undefined);
  await s.stop();
  sb.cleanup();
});

describe("loxmcp start and the login", () => {
  it("exits 1 and says why when the daemon ends in auth_failed; 0 once the login works", async () => {
    const bad = await sb.run(["start"], { timeoutMs: 40_000 }, { LOXONE_PASSWORD: WRONG });
    expect(bad.code, bad.stdout + bad.stderr).toBe(1);
    expect(bad.stdout).toMatch(/loxmcpd started: pid \d+, state auth_failed/);
    expect(bad.stderr).toMatch(/loxmcp: loxmcpd could not log in: .*rejected/);
    expect(bad.stderr).toContain("hint: check LOXONE_USER/LOXONE_PASSWORD");
    expect(bad.stdout + bad.stderr).not.toContain(WRONG);

    // Already running and still auth_failed: still not a success.
    const again = await sb.run(["start"], {}, { LOXONE_PASSWORD: WRONG });
    expect(again.code).toBe(1);
    expect(again.stdout).toContain("already running");

    expect((await sb.run(["stop"])).code).toBe(0);
    const good = await sb.run(["start"], { timeoutMs: 40_000 });
    expect(good.code, good.stdout + good.stderr).toBe(0);
    expect(good.stdout).toMatch(/loxmcpd started: pid \d+, state ready/);
  });
});
