import { afterEach, describe, expect, it } from "vitest";
import { type Simulator, startSimulator } from "../src/index.js";

let sim: Simulator | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

describe("connect", () => {
  it("answers 307 with the current relay's MCP URL", async () => {
    sim = await startSimulator();
    const res = await fetch(`${sim.connectUrl}/${sim.serial}/mcp`, { redirect: "manual" });
    expect(res.status).toBe(307);
    expect(res.headers.get("location")).toBe(sim.relayUrls[0]);
    expect(sim.currentRelay()).toBe(0);
    expect(sim.stats().connectRequests).toBe(1);
  });

  it("answers 404 for an unknown serial", async () => {
    sim = await startSimulator({ serial: "504F94A00001" });
    const res = await fetch(`${sim.connectUrl}/504F94A0FFFF/mcp`, { redirect: "manual" });
    expect(res.status).toBe(404);
    expect(res.headers.get("location")).toBeNull();
  });

  it("rate-limits per client with 429 and Retry-After; admin calls do not count", async () => {
    sim = await startSimulator({ connectRateLimit: 3 });
    const entry = `${sim.connectUrl}/${sim.serial}/mcp`;
    for (let i = 0; i < 3; i++) {
      expect((await fetch(entry, { redirect: "manual" })).status).toBe(307);
      expect((await fetch(`${sim.adminUrl}/stats`)).status).toBe(200);
    }
    const limited = await fetch(entry, { redirect: "manual" });
    expect(limited.status).toBe(429);
    const retry = Number(limited.headers.get("retry-after"));
    expect(retry).toBeGreaterThanOrEqual(1);
    expect(retry).toBeLessThanOrEqual(60);
    const stats = (await (await fetch(`${sim.adminUrl}/stats`)).json()) as { connectRequests: number };
    expect(stats.connectRequests).toBe(4);
  });

  it("rotates the relay it points at", async () => {
    sim = await startSimulator({ relays: 2 });
    expect(sim.rotateRelay()).toBe(sim.relayUrls[1]);
    const res = await fetch(`${sim.connectUrl}/${sim.serial}/mcp`, { redirect: "manual" });
    expect(res.headers.get("location")).toBe(sim.relayUrls[1]);
    const viaAdmin = await fetch(`${sim.adminUrl}/rotate-relay`, { method: "POST" });
    expect(((await viaAdmin.json()) as { relayUrl: string }).relayUrl).toBe(sim.relayUrls[0]);
    expect(sim.currentRelay()).toBe(0);
  });
});
