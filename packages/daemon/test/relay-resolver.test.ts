import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { type Simulator, startSimulator } from "@loxmcp/simulator";
import { afterEach, describe, expect, it } from "vitest";
import { parseRetryAfter, RelayResolver, RelayUnavailableError } from "../src/relay/resolver.js";
import { InsecureUrlError } from "../src/relay/url.js";
import { type Database, openDatabase } from "../src/store/db.js";
import { TokenStore } from "../src/store/tokens.js";
import { captureLog } from "./relay-helpers.js";

let sim: Simulator | undefined;
let server: Server | undefined;
let dir: string | undefined;
let db: Database | undefined;

afterEach(async () => {
  await sim?.stop();
  if (server) await new Promise((r) => server!.close(r));
  db?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  sim = server = db = dir = undefined;
});

function store(): TokenStore {
  dir = mkdtempSync("/tmp/lx-");
  db = openDatabase(join(dir, "loxmcp.db"));
  return new TokenStore(db);
}

function resolver(connectUrl: string, serial: string, s: TokenStore, extra = {}) {
  return new RelayResolver({
    connectUrl,
    serial,
    store: s,
    logger: captureLog().logger,
    minBackoffMs: 10,
    maxBackoffMs: 50,
    ...extra,
  });
}

/** A stand-in connect that answers each GET with the next canned response. */
async function cannedConnect(responses: Array<{ status: number; headers?: Record<string, string> }>) {
  let hits = 0;
  server = createServer((_req, res) => {
    const r = responses[Math.min(hits, responses.length - 1)]!;
    hits++;
    res.writeHead(r.status, r.headers ?? {});
    res.end();
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits: () => hits };
}

describe("RelayResolver", () => {
  it("resolves the 307 entry once for concurrent callers, caches it in SQLite, re-resolves after invalidate", async () => {
    sim = await startSimulator({ port: 0 });
    const s = store();
    const r = resolver(sim.connectUrl, sim.serial, s);
    const entries = await Promise.all([r.entry(), r.entry(), r.resolve("test"), r.entry()]);
    expect(new Set(entries)).toEqual(new Set([sim.relayUrls[0]]));
    expect(sim.stats().connectRequests).toBe(1);
    expect(s.getRelayEntry(sim.serial)?.entry).toBe(sim.relayUrls[0]);
    // A new resolver (restart) uses the cache: no request.
    const again = resolver(sim.connectUrl, sim.serial, s);
    expect(await again.entry()).toBe(sim.relayUrls[0]);
    expect(sim.stats().connectRequests).toBe(1);
    // Invalidating a stale entry does nothing; the current one forces a resolve.
    sim.rotateRelay();
    again.invalidate("http://127.0.0.1:1/mcp");
    expect(await again.entry()).toBe(sim.relayUrls[0]);
    again.invalidate(sim.relayUrls[0]!);
    expect(await again.entry()).toBe(sim.relayUrls[1]);
    expect(sim.stats().connectRequests).toBe(2);
  });

  it("refuses plain http to a non-loopback connect URL, and a bad serial", () => {
    const s = store();
    expect(() => resolver("http://connect.loxonecloud.com", "504F94A0C0DE", s)).toThrow(InsecureUrlError);
    expect(() => resolver("http://connect.loxonecloud.com", "504F94A0C0DE", s)).toThrow(
      /only accepted for 127/,
    );
    expect(() => resolver("https://connect.loxonecloud.com", "../x", s)).toThrow(/LOXONE_SERIAL/);
    expect(() => resolver("http://127.0.0.1:1", "504F94A0C0DE", s)).not.toThrow();
  });

  it("unknown serial ⇒ clear error naming LOXONE_SERIAL, no retries", async () => {
    sim = await startSimulator({ port: 0 });
    const r = resolver(sim.connectUrl, "504F94A0AAAA", store());
    await expect(r.entry()).rejects.toThrow(/does not know Miniserver serial 504F94A0AAAA.*LOXONE_SERIAL/);
    expect(sim.stats().connectRequests).toBe(1);
  });

  it("429 with a long Retry-After ⇒ UNAVAILABLE with retryAt, and no further request until then", async () => {
    const c = await cannedConnect([{ status: 429, headers: { "retry-after": "120" } }]);
    const r = resolver(c.url, "504F94A0C0DE", store(), { maxRetryAfterMs: 1_000 });
    const err = await r.entry().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RelayUnavailableError);
    expect((err as RelayUnavailableError).code).toBe("UNAVAILABLE");
    expect((err as RelayUnavailableError).retryAt).toBeGreaterThan(Date.now() + 100_000);
    expect((err as Error).message).toMatch(/rate limit \(HTTP 429\).*not asking again before/);
    await expect(r.resolve("again")).rejects.toBeInstanceOf(RelayUnavailableError);
    expect(c.hits()).toBe(1);
  });

  it("429 with a short Retry-After ⇒ waits that long once, then succeeds", async () => {
    const c = await cannedConnect([
      { status: 429, headers: { "retry-after": "1" } },
      { status: 307, headers: { location: "http://127.0.0.1:9/mcp" } },
    ]);
    const r = resolver(c.url, "504F94A0C0DE", store(), { maxRetryAfterMs: 2_000 });
    const t0 = Date.now();
    expect(await r.entry()).toBe("http://127.0.0.1:9/mcp");
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(c.hits()).toBe(2);
  });

  it("transient 5xx backs off and retries a bounded number of times; refuses an http:// entry off loopback", async () => {
    const c = await cannedConnect([{ status: 502 }]);
    const r = resolver(c.url, "504F94A0C0DE", store(), { retries: 2 });
    await expect(r.entry()).rejects.toThrow(/HTTP 502.*will retry later/);
    expect(c.hits()).toBe(3);
    await new Promise((res) => server!.close(res));
    const c2 = await cannedConnect([{ status: 307, headers: { location: "http://10.0.0.1/mcp" } }]);
    await expect(resolver(c2.url, "504F94A0C0DE", store()).entry()).rejects.toThrow(/not loopback/);
  });

  it("parses Retry-After seconds and dates", () => {
    expect(parseRetryAfter("30")).toBe(30_000);
    expect(parseRetryAfter(new Date(10_000 + 5_000).toUTCString(), 10_000)).toBe(5_000);
    expect(parseRetryAfter("soon")).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});
