/**
 * Sleep and wake, in process, with an injected clock:
 * - the detector tells a frozen process (timers far too late) from a suspend (the wall clock ran
 *   ahead of the monotonic one) and ignores jitter and a wall clock set back;
 * - after a wall-clock jump (a suspend: the monotonic clock stood still) the session, before anything
 *   queued is sent and in one flight, refreshes the expired token, finds the expired MCP session
 *   and opens a new one, and only then sends the waiting calls — state `ready` throughout, no
 *   connect request, no login;
 * - a connection that breaks before any answer (a pooled keep-alive connection the server closed)
 *   is never a reason to ask connect: an OAuth request is sent again on a new connection, a read is
 *   resent on the same session, a write is reported as outcome unknown (it is never resent).
 */
import { afterEach, describe, expect, it } from "vitest";
import { UpstreamError } from "../src/contracts.js";
import type { RelayWire } from "../src/relay/transport.js";
import { type Wake, type WakeClock, WakeDetector } from "../src/relay/wake.js";
import { makeRig, type Rig } from "./relay-helpers.js";

let rig: Rig | undefined;
const detectors: WakeDetector[] = [];
afterEach(async () => {
  for (const d of detectors.splice(0)) d.stop();
  await rig?.cleanup();
  rig = undefined;
});

const READ = { name: "system_status", arguments: {} };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function fakeClock(): WakeClock & { wallAt: number; monoAt: number } {
  const c = {
    wallAt: 1_700_000_000_000,
    monoAt: 50_000,
    wall: () => c.wallAt,
    mono: () => c.monoAt,
  };
  return c;
}

describe("wake detector (injected clock)", () => {
  function detector(clock: WakeClock, wakes: Wake[]) {
    // The tests run synchronously, so the background tick never fires: every check is explicit.
    const d = new WakeDetector({ clock, tickMs: 1_000, thresholdMs: 4_000, onWake: (w) => wakes.push(w) });
    detectors.push(d);
    return d;
  }

  it("a suspend: the wall clock jumps ahead of the monotonic clock (timers are not late)", () => {
    const clock = fakeClock();
    const wakes: Wake[] = [];
    const d = detector(clock, wakes);
    expect(d.check()).toBeUndefined(); // not started: nothing to compare with
    d.start();
    clock.wallAt += 1_000;
    clock.monoAt += 1_000;
    expect(d.check()).toBeUndefined();
    // 10 minutes of suspend: the monotonic clock stood still, the next tick came on time.
    clock.wallAt += 600_000 + 1_000;
    clock.monoAt += 1_000;
    expect(d.check()).toEqual({ kind: "suspended", sleptMs: 600_000 });
    expect(wakes).toEqual([{ kind: "suspended", sleptMs: 600_000 }]);
    // Reported once.
    clock.wallAt += 1_000;
    clock.monoAt += 1_000;
    expect(d.check()).toBeUndefined();
    expect(d.wakes).toBe(1);
  });

  it("a frozen process: no check for far longer than a tick, on both clocks", () => {
    const clock = fakeClock();
    const wakes: Wake[] = [];
    const d = detector(clock, wakes);
    d.start();
    clock.wallAt += 15_000;
    clock.monoAt += 15_000;
    expect(d.check()).toEqual({ kind: "frozen", sleptMs: 15_000 });
    expect(wakes).toHaveLength(1);
  });

  it("ignores a late tick within the threshold, a wall clock set back, and small NTP steps", () => {
    const clock = fakeClock();
    const wakes: Wake[] = [];
    const d = detector(clock, wakes);
    d.start();
    clock.wallAt += 4_500; // a busy event loop: 3.5 s late
    clock.monoAt += 4_500;
    expect(d.check()).toBeUndefined();
    clock.wallAt -= 3_600_000; // wall clock set back an hour
    clock.monoAt += 1_000;
    expect(d.check()).toBeUndefined();
    clock.wallAt += 1_000 + 2_000; // NTP steps 2 s ahead
    clock.monoAt += 1_000;
    expect(d.check()).toBeUndefined();
    expect(wakes).toEqual([]);
  });
});

/** `POST /mcp tools/call` … for the relay's MCP endpoint. */
function mcpWhat(method: string, body: string | undefined): string {
  let what = `${method} /mcp`;
  if (body === undefined) return what;
  try {
    const m = JSON.parse(body) as { method?: string };
    if (m.method) what += ` ${m.method}`;
  } catch {
    // not JSON
  }
  return what;
}

/**
 * Records what the session sends: `POST /token refresh_token` (fetch: OAuth), `POST /mcp tools/call`
 * (the relay transport's wire), `→ 404` …
 */
function recording(log: string[]): { fetch: typeof fetch; relayWire: RelayWire } {
  return {
    fetch: recordingFetch(log),
    relayWire: { answered: (method, body, status) => void log.push(`${mcpWhat(method, body)} → ${status}`) },
  };
}

function recordingFetch(log: string[]): typeof fetch {
  return (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const method = (init?.method ?? "GET").toUpperCase();
    let what = `${method} ${url.pathname}`;
    const body = init?.body;
    if (body instanceof URLSearchParams) what += ` ${body.get("grant_type") ?? ""}`;
    else if (typeof body === "string") {
      try {
        const m = JSON.parse(body) as { method?: string };
        if (m.method) what += ` ${m.method}`;
      } catch {
        // a form
      }
    }
    const res = await fetch(input, init);
    log.push(`${what} → ${res.status}`);
    return res;
  }) as typeof fetch;
}

describe("after a wall-clock jump (a suspend)", () => {
  it("refreshes, renews the expired session, then sends what waited; ready throughout, no connect, no login", async () => {
    rig = await makeRig({ accessTtl: 4, sessionTtl: 2 });
    const sent: string[] = [];
    let wallOffset = 0;
    const up = rig.session({
      clock: { wall: () => Date.now() + wallOffset, mono: () => performance.now() },
      wakeTickMs: 100,
      ...recording(sent),
      requestTimeoutMs: 10_000,
    });
    up.start();
    await up.whenReady(10_000);
    await up.request("tools/call", READ, { retryable: true });
    // Idle past the session's lifetime and into the token's refresh margin (half of 4 s), with no
    // ping (interval 60 s): what a long sleep leaves behind.
    await sleep(2_600);
    const before = rig.sim.stats();
    const states: string[] = [];
    up.on("state", (st) => states.push(`${st.state}${st.reason ? `: ${st.reason}` : ""}`));
    sent.length = 0;

    // The machine slept 10 minutes: the wall clock is ahead, the monotonic clock stood still.
    wallOffset += 600_000;
    const write = {
      name: "control_command",
      arguments: {
        uuid: rig.sim.house().controls.find((c) => c.type === "LightControllerV2")!.uuid,
        command: "changeTo/42",
      },
    };
    const results = await Promise.all([
      up.request("tools/call", READ, { retryable: true }),
      up.request("tools/call", write, { retryable: false }),
      up.request("tools/call", READ, { retryable: true }),
      up.request("tools/call", READ, { retryable: true }),
    ]);
    expect(results).toHaveLength(4);

    const after = rig.sim.stats();
    expect(after.refreshes - before.refreshes, "one refresh for everything").toBe(1);
    expect(after.logins).toBe(before.logins);
    expect(after.connectRequests, "no request to connect").toBe(before.connectRequests);
    expect(after.sessions - before.sessions, "one new session").toBe(1);
    expect(after.executions.find((e) => e.tool === "control_command")?.count).toBe(1);

    // Order: token refresh, the session check (404), the new session — and only then the calls.
    const calls = sent.filter((x) => /tools\/call/.test(x));
    expect(calls).toHaveLength(4);
    expect(
      calls.every((x) => x.endsWith("→ 200")),
      sent.join("\n"),
    ).toBe(true);
    const firstCall = sent.findIndex((x) => /tools\/call/.test(x));
    const beforeCalls = sent.slice(0, firstCall);
    expect(beforeCalls[0], sent.join("\n")).toBe("POST /token refresh_token → 200");
    expect(beforeCalls).toContain("POST /mcp ping → 404");
    expect(beforeCalls.some((x) => /POST \/mcp initialize → 200/.test(x))).toBe(true);

    // Never left `ready`: a call (a write too) made right after the wake is queued, not refused.
    expect(
      states.every((x) => x.startsWith("ready")),
      states.join("\n"),
    ).toBe(true);
    expect(states[0]).toMatch(/^ready: woke up \(the machine slept about 600 s\); checking/);
    expect(up.status().state).toBe("ready");
    expect(up.status().reason).toBeUndefined();
    const wake = rig.log.lines().find((l) => /^woke up/.test(String(l.msg)));
    expect(wake).toMatchObject({ kind: "suspended" });
    expect(String(wake?.msg)).toMatch(/dropping pooled connections/);
  });

  it("with nothing to send, the wake is noticed by the tick and the session is ready before the next call", async () => {
    rig = await makeRig({ accessTtl: 4, sessionTtl: 2 });
    let wallOffset = 0;
    const up = rig.session({
      clock: { wall: () => Date.now() + wallOffset, mono: () => performance.now() },
      wakeTickMs: 50,
    });
    up.start();
    await up.whenReady(10_000);
    await sleep(2_600);
    const before = rig.sim.stats();
    wallOffset += 120_000;
    const deadline = Date.now() + 5_000;
    while (rig.sim.stats().sessions === before.sessions && Date.now() < deadline) await sleep(20);
    while (up.status().reason !== undefined && Date.now() < deadline) await sleep(20);
    const mid = rig.sim.stats();
    expect(mid.refreshes - before.refreshes).toBe(1);
    expect(mid.sessions - before.sessions).toBe(1);
    await up.request("tools/call", READ, { retryable: true });
    // The call went straight out: no refresh, no new session.
    const after = rig.sim.stats();
    expect(after.sessions).toBe(mid.sessions);
    expect(after.refreshes).toBe(mid.refreshes);
    expect(after.connectRequests).toBe(before.connectRequests);
  });
});

/**
 * Fails the next `n` requests matching `match` as a broken connection: `fetch` (OAuth) with
 * UND_ERR_SOCKET, the relay transport's wire with ECONNRESET (what a kept-alive socket the server
 * had closed gives).
 */
function breaking(match: (what: string) => boolean): {
  fetch: typeof fetch;
  relayWire: RelayWire;
  arm(n: number): void;
  broke(): number;
} {
  let armed = 0;
  let broke = 0;
  const hit = (what: string) => {
    if (armed <= 0 || !match(what)) return false;
    armed--;
    broke++;
    return true;
  };
  const f = (async (input: string | URL | Request, init?: RequestInit) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const body = typeof init?.body === "string" ? init.body : String(init?.body ?? "");
    if (hit(`${(init?.method ?? "GET").toUpperCase()} ${url.pathname} ${body}`)) {
      throw Object.assign(new TypeError("fetch failed"), {
        cause: Object.assign(new Error("other side closed"), { code: "UND_ERR_SOCKET" }),
      });
    }
    return fetch(input, init);
  }) as typeof fetch;
  const relayWire: RelayWire = {
    sending(method, body) {
      if (hit(`${method} /mcp ${body ?? ""}`)) {
        throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
      }
    },
  };
  const arm = (n: number) => {
    armed = n;
  };
  return { fetch: f, relayWire, arm, broke: () => broke };
}

describe("a connection that breaks before any answer is never a reason to ask connect", () => {
  it("a token refresh is sent again on a new connection: refreshed, no login", async () => {
    rig = await makeRig({ accessTtl: 2 });
    const b = breaking((w) => /^POST \/token .*refresh_token/.test(w));
    const up = rig.session({ fetch: b.fetch, relayWire: b.relayWire });
    up.start();
    await up.whenReady(10_000);
    await sleep(1_100); // within the refresh margin (half of 2 s)
    const before = rig.sim.stats();
    b.arm(1);
    await up.request("tools/call", READ, { retryable: true });
    expect(b.broke()).toBe(1);
    const after = rig.sim.stats();
    expect(after.refreshes - before.refreshes).toBe(1);
    expect(after.logins).toBe(before.logins);
    expect(after.connectRequests).toBe(before.connectRequests);
    expect(rig.log.text()).toMatch(/broke before it answered; sending the request again on a new connection/);
  });

  it("a read is resent on the same session; a write is outcome unknown, never resent; no re-resolve", async () => {
    rig = await makeRig();
    const b = breaking((w) => /^POST \/mcp .*tools\/call/.test(w));
    const up = rig.session({ fetch: b.fetch, relayWire: b.relayWire });
    up.start();
    await up.whenReady(10_000);
    const before = rig.sim.stats();
    b.arm(1);
    await up.request("tools/call", READ, { retryable: true });
    const uuid = rig.sim.house().controls.find((c) => c.type === "LightControllerV2")!.uuid;
    b.arm(1);
    const err = await up
      .request(
        "tools/call",
        { name: "control_command", arguments: { uuid, command: "changeTo/7" } },
        { retryable: false },
      )
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).code).toBe("OUTCOME_UNKNOWN");
    await up.request("tools/call", READ, { retryable: true });
    const after = rig.sim.stats();
    expect(b.broke()).toBe(2);
    expect(after.connectRequests, "no request to connect").toBe(before.connectRequests);
    expect(after.sessions, "the session was kept").toBe(before.sessions);
    expect(up.status().counters.reconnects).toBe(0);
    expect(up.status().state).toBe("ready");
  });
});
