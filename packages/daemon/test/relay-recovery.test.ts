import { afterEach, describe, expect, it } from "vitest";
import { UpstreamError } from "../src/contracts.js";
import { makeRig, type Rig } from "./relay-helpers.js";

let rig: Rig | undefined;
afterEach(async () => {
  await rig?.cleanup();
  rig = undefined;
});

const READ = { name: "system_status", arguments: {} };

async function readyRig(simOptions = {}, extra = {}) {
  const r = await makeRig(simOptions);
  const up = r.session(extra);
  up.start();
  await up.whenReady(15_000);
  return { r, up };
}

async function waitFor<T>(fn: () => T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((res) => setTimeout(res, 20));
  }
}

describe("upstream recovery", () => {
  it("relay killed ⇒ re-resolves via connect, reconnects, and a retryable read succeeds", async () => {
    const { r, up } = await readyRig();
    rig = r;
    const oldEntry = up.status().entry;
    const before = r.sim.stats();
    r.sim.killRelay();
    const res = (await up.request("tools/call", READ, { retryable: true })) as { content: unknown[] };
    expect(res.content.length).toBeGreaterThan(0);
    const st = up.status();
    expect(st.state).toBe("ready");
    expect(st.entry).not.toBe(oldEntry);
    expect(st.entry).toBe(r.sim.relayUrls[r.sim.currentRelay()]);
    expect(st.counters.reconnects).toBe(1);
    const after = r.sim.stats();
    expect(after.connectRequests - before.connectRequests).toBe(1);
    expect(after.logins).toBe(before.logins);
  });

  it("session expired (404) ⇒ new transport + initialize, transparently, without re-resolving", async () => {
    const { r, up } = await readyRig();
    rig = r;
    const before = r.sim.stats();
    let toolsChanged = 0;
    up.on("toolsChanged", () => toolsChanged++);
    r.sim.expireSessions();
    await up.request("tools/call", READ, { retryable: true });
    // A write is also safe after a 404: the server never ran it.
    r.sim.expireSessions();
    const uuid = r.sim.house().controls.find((c) => c.type === "LightControllerV2")!.uuid;
    await up.request(
      "tools/call",
      { name: "control_command", arguments: { uuid, command: "on" } },
      { retryable: false },
    );
    const after = r.sim.stats();
    expect(after.sessions - before.sessions).toBe(2);
    expect(after.connectRequests).toBe(before.connectRequests);
    expect(up.status().counters.reconnects).toBe(2);
    expect(toolsChanged).toBeGreaterThanOrEqual(1);
  });

  it("write dropped after execution ⇒ OUTCOME_UNKNOWN, never resent (execution log shows one run)", async () => {
    const { r, up } = await readyRig();
    rig = r;
    const light = r.sim.house().controls.find((c) => c.type === "LightControllerV2")!;
    r.sim.setFaults({ dropAfterExecute: 1 });
    const args = { uuid: light.uuid, command: "changeTo/3" };
    const err = await up
      .request("tools/call", { name: "control_command", arguments: args }, { retryable: false })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).code).toBe("OUTCOME_UNKNOWN");
    expect((err as UpstreamError).message).toMatch(
      /outcome unknown: it may or may not have run; not retried/,
    );
    const runs = r.sim.stats().executions.filter((e) => e.tool === "control_command");
    expect(runs).toHaveLength(1);
    expect(runs[0]?.count).toBe(1);
    expect(runs[0]?.arguments).toEqual(args);
    // The session recovers for the next call.
    await up.request("tools/call", READ, { retryable: true });
    expect(r.sim.stats().executions.find((e) => e.tool === "control_command")?.count).toBe(1);
  });

  it("read dropped after execution ⇒ resent after recovery and succeeds", async () => {
    const { r, up } = await readyRig();
    rig = r;
    r.sim.setFaults({ dropAfterExecute: 1 });
    const res = (await up.request("tools/call", READ, { retryable: true })) as { content: unknown[] };
    expect(res.content.length).toBeGreaterThan(0);
    expect(r.sim.stats().executions.find((e) => e.tool === "system_status")?.count).toBe(2);
  });

  it("HTTP 503 from the relay ⇒ not executed: even a write is resent once the relay is back", async () => {
    const { r, up } = await readyRig();
    rig = r;
    r.sim.setFaults({ httpErrors: 1, httpErrorStatus: 503 });
    const uuid = r.sim.house().controls.find((c) => c.type === "LightControllerV2")!.uuid;
    await up.request(
      "tools/call",
      { name: "control_command", arguments: { uuid, command: "off" } },
      { retryable: false },
    );
    expect(r.sim.stats().executions.find((e) => e.tool === "control_command")?.count).toBe(1);
  });

  it("connect 429 is honoured: no request storm, clear UNAVAILABLE with the retry time", async () => {
    const { r, up } = await readyRig({ connectRateLimit: 1 });
    rig = r;
    expect(r.sim.stats().connectRequests).toBe(1);
    r.sim.killRelay();
    const first = await up.request("tools/call", READ, { retryable: true }).catch((e: unknown) => e);
    expect(first).toBeInstanceOf(UpstreamError);
    expect((first as UpstreamError).code).toBe("UNAVAILABLE");
    const results = await Promise.all(
      Array.from({ length: 5 }, () =>
        up.request("tools/call", READ, { retryable: true }).catch((e: unknown) => e),
      ),
    );
    for (const e of results) {
      expect(e).toBeInstanceOf(UpstreamError);
      expect((e as UpstreamError).code).toBe("UNAVAILABLE");
      expect((e as UpstreamError).data).toMatchObject({ retryAt: expect.any(Number) });
    }
    const st = up.status();
    expect(st.state).toBe("degraded");
    expect(st.reason).toMatch(/429/);
    // One resolve for the start, one after the kill that got the 429; nothing more.
    expect(r.sim.stats().connectRequests).toBe(2);
  });

  it("server-side expired access token ⇒ 401 ⇒ exactly one refresh for many concurrent calls", async () => {
    const { r, up } = await readyRig();
    rig = r;
    r.sim.resetStats();
    r.sim.expireAccessTokens();
    const results = await Promise.all(
      Array.from({ length: 8 }, () => up.request("tools/call", READ, { retryable: true })),
    );
    expect(results).toHaveLength(8);
    const s = r.sim.stats();
    expect(s.refreshes).toBe(1);
    expect(s.logins).toBe(0);
  });

  it("proactive refresh before expiry: many concurrent calls share exactly one /token refresh", async () => {
    const { r, up } = await readyRig({ accessTtl: 2 });
    rig = r;
    // The margin is min(60 s, half the lifetime) = 1 s: wait until the token is inside it.
    await waitFor(() => (up.status().tokenExpiresAt ?? 0) - Date.now() < 900, "token inside refresh margin");
    r.sim.resetStats();
    const results = await Promise.all(
      Array.from({ length: 10 }, () => up.request("tools/call", READ, { retryable: true })),
    );
    expect(results).toHaveLength(10);
    const s = r.sim.stats();
    expect(s.refreshes).toBe(1);
    expect(s.logins).toBe(0);
    expect(up.status().tokenExpiresAt).toBeGreaterThan(Date.now() + 1000);
  });

  it("refresh token revoked ⇒ one full re-login, the call still succeeds", async () => {
    const { r, up } = await readyRig();
    rig = r;
    r.sim.resetStats();
    r.sim.revokeTokens();
    await up.request("tools/call", READ, { retryable: true });
    const s = r.sim.stats();
    expect(s.logins).toBe(1);
    expect(s.failedLogins).toBe(0);
    expect(up.status().counters.logins).toBe(2);
  });

  it("nothing sent while the relay is unreachable ⇒ UNAVAILABLE within the deadline", async () => {
    const { r, up } = await readyRig({ relays: 1 }, { requestTimeoutMs: 1_500 });
    rig = r;
    r.sim.killRelay(0);
    const t0 = Date.now();
    const err = await up.request("tools/call", READ, { retryable: true }).catch((e: unknown) => e);
    expect((err as UpstreamError).code).toBe("UNAVAILABLE");
    expect(Date.now() - t0).toBeLessThan(4_000);
    await r.sim.reviveRelay(0);
    await up.whenReady(10_000);
    await up.request("tools/call", READ, { retryable: true });
  });

  it("periodic ping notices a dead relay and recovers with no request in flight", async () => {
    const { r, up } = await readyRig({}, { pingIntervalMs: 300 });
    rig = r;
    await waitFor(() => up.status().lastPingAt, "first ping");
    const oldEntry = up.status().entry;
    const states: string[] = [];
    up.on("state", (s) => states.push(s.state));
    r.sim.killRelay();
    await waitFor(
      () => up.status().state === "ready" && up.status().entry !== oldEntry,
      "recovery onto the new relay",
    );
    expect(states).toContain("degraded");
    expect(up.status().counters.reconnects).toBe(1);
  });

  it("idle check: a ping before use replaces an expired session before the request is sent", async () => {
    const { r, up } = await readyRig({}, { idleCheckMs: 1 });
    rig = r;
    r.sim.expireSessions();
    r.sim.resetStats();
    const uuid = r.sim.house().controls.find((c) => c.type === "LightControllerV2")!.uuid;
    await new Promise((res) => setTimeout(res, 5)); // let the session become "idle" (> 1 ms)
    await up.request(
      "tools/call",
      { name: "control_command", arguments: { uuid, command: "on" } },
      { retryable: false },
    );
    expect(up.status().counters.reconnects).toBe(1);
    expect(r.sim.stats().executions.find((e) => e.tool === "control_command")?.count).toBe(1);
  });

  it("stop() ends the session cleanly and later requests fail as UNAVAILABLE", async () => {
    const { r, up } = await readyRig();
    rig = r;
    await up.stop();
    expect(up.status().state).toBe("stopped");
    await expect(up.request("tools/call", READ, { retryable: true })).rejects.toMatchObject({
      code: "UNAVAILABLE",
    });
  });

  it("many reads in flight across a relay kill: one re-resolve, all answered, no listener-leak warning", async () => {
    const { r, up } = await readyRig();
    rig = r;
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on("warning", onWarning);
    try {
      const before = r.sim.stats().connectRequests;
      r.sim.killRelay();
      const results = await Promise.all(
        Array.from({ length: 30 }, () => up.request("tools/call", READ, { retryable: true })),
      );
      expect(results).toHaveLength(30);
      expect(r.sim.stats().connectRequests - before).toBe(1);
      expect(up.status().counters.reconnects).toBe(1);
    } finally {
      process.off("warning", onWarning);
    }
    expect(warnings).not.toContain("MaxListenersExceededWarning");
  });

  it("429 from the relay: UNAVAILABLE (nothing ran), session kept, no re-resolve", async () => {
    const { r, up } = await readyRig();
    rig = r;
    const before = r.sim.stats();
    r.sim.setFaults({ httpErrors: 1, httpErrorStatus: 429 });
    const uuid = r.sim.house().controls.find((c) => c.type === "LightControllerV2")!.uuid;
    const call = { name: "control_command", arguments: { uuid, command: "on" } };
    await expect(up.request("tools/call", call, { retryable: false })).rejects.toMatchObject({
      code: "UNAVAILABLE",
      message: expect.stringMatching(/rate limiting.*was not sent/),
    });
    expect(r.sim.stats().executions.find((e) => e.tool === "control_command")).toBeUndefined();
    await up.request("tools/call", call, { retryable: false });
    const after = r.sim.stats();
    expect(after.connectRequests).toBe(before.connectRequests);
    expect(after.sessions).toBe(before.sessions);
    expect(up.status().counters.reconnects).toBe(0);
  });
});
