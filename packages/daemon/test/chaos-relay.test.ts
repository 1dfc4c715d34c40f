/**
 * Chaos: the relay and the login misbehave while several clients keep calling (reads and unique
 * writes). Relay rotation, killing the relay in use, session expiry, access-token expiry and
 * finally token revocation. Proves: every request gets exactly one answer, reads succeed after
 * each recovery, no write runs twice (simulator execution log), one login until tokens are revoked.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ChaosRig,
  checkExecutions,
  LoadGenerator,
  outcomeSummary,
  startChaosRig,
  uniqueWrites,
} from "../../../test-support/chaos.js";

describe("chaos: relay rotation/kill, session expiry, token expiry/revocation under load", () => {
  let rig: ChaosRig;

  beforeAll(async () => {
    rig = await startChaosRig(4);
  });
  afterAll(async () => {
    await rig?.close();
  });

  it("answers every request exactly once, recovers reads, never runs a write twice", async () => {
    const { sim } = rig.sim;
    const load = new LoadGenerator(rig.clients, {
      readTool: rig.readTool,
      writeTool: rig.writeTool,
      nextWrite: uniqueWrites(sim.house()),
    });
    const recovered = (what: string) => load.waitRecovered(what);

    load.start();
    try {
      await recovered("start");

      sim.rotateRelay();
      await recovered("relay rotation");

      const inUse = await rig.relayInUse();
      expect(inUse, "daemon status names the relay entry it uses").toBeGreaterThanOrEqual(0);
      sim.killRelay(inUse);
      await recovered("killing the relay in use");
      await sim.reviveRelay(inUse);

      sim.expireSessions();
      await recovered("session expiry");

      sim.expireAccessTokens();
      await recovered("access token expiry");
      expect(sim.stats().logins, "no re-login before tokens are revoked").toBe(1);

      sim.revokeTokens();
      await recovered("token revocation");
    } finally {
      await load.stop();
    }

    const problems = rig.ledgers.flatMap((l, i) => l.problems().map((p) => `client ${i}: ${p}`));
    const counters = (await rig.daemon.status()).counters;
    console.info(
      `${expect.getState().currentTestName}: ${JSON.stringify(outcomeSummary(load.records))} daemon ${JSON.stringify(counters)}`,
    );
    expect(problems).toEqual([]);
    const stats = sim.stats();
    expect(checkExecutions(stats, rig.writeTool, load.records)).toEqual([]);
    expect(stats.logins, "exactly one re-login after revocation").toBe(2);
    for (const r of load.records.filter((x) => x.outcome !== "ok")) {
      expect(r.message, `error for ${r.kind} is explained`).toMatch(/\w{3,}/);
      expect(r.message).not.toMatch(/timed out/i);
    }
    const summary = outcomeSummary(load.records);
    expect(summary["write:ok"] ?? 0, JSON.stringify(summary)).toBeGreaterThan(10);
    const after = await rig.daemon.status();
    expect(after.state).toBe("ready");
  });
});
