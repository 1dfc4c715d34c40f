/**
 * The socket under abuse and at the JSON-RPC edges, against the REAL daemon process and the
 * simulator: one client flooding reads while the relay is slow, a client that never reads its
 * answers, too many connections, ids of every valid shape, the MCP lifecycle and protocol
 * versions. Another client is watched throughout: its pings keep being answered. Memory is read
 * from /proc (the goal, at most 40 MB of growth, is also recorded in docs/benchmarks.md).
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { controlCall, RawConnection, SocketClientTransport } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";

// biome-ignore lint/suspicious/noExplicitAny: loose JSON-RPC frames
type J = any;

const TOO_BUSY = -32008;
let h: TempHome;
let s: SimHandle;
let d: DaemonProcess;
let bystander: Client;
const raws: RawConnection[] = [];
const sockets: Socket[] = [];

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) / 1024;
}

async function mcp(name: string, protocolVersion = "2025-06-18"): Promise<RawConnection> {
  const r = await RawConnection.open(d.socketPath);
  raws.push(r);
  await r.send({ jsonrpc: "2.0", method: "loxmcp/hello", params: { kind: "shim", name, pid: 1 } });
  await r.send({
    jsonrpc: "2.0",
    id: "init",
    method: "initialize",
    params: { protocolVersion, capabilities: {}, clientInfo: { name, version: "1" } },
  });
  await r.waitMessage((m) => m.id === "init", 15_000);
  return r;
}

/** A socket whose answers are collected as raw text lines (ids must come back as written). */
async function rawText(): Promise<{ sock: Socket; lines: () => string[] }> {
  const sock = connect(d.socketPath);
  sockets.push(sock);
  await new Promise((r) => sock.once("connect", r));
  let buf = "";
  sock.setEncoding("utf8").on("data", (c: string) => {
    buf += c;
  });
  return { sock, lines: () => buf.split("\n").filter(Boolean) };
}

/** Pings the bystander every 20 ms while `work` runs; returns the round-trip times in ms. */
async function watchPings<T>(work: () => Promise<T>): Promise<{ result: T; pings: number[] }> {
  const pings: number[] = [];
  let done = false;
  const loop = (async () => {
    while (!done) {
      const t0 = performance.now();
      await bystander.ping();
      pings.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    return { result: await work(), pings };
  } finally {
    done = true;
    await loop;
  }
}

const p99 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.99)] ?? 0;

beforeAll(async () => {
  h = makeHome();
  s = await withSimulator();
  mkdirSync(join(h.home, "config"), { recursive: true, mode: 0o700 });
  writeFileSync(
    join(h.home, "config", "config.json"),
    JSON.stringify({
      limits: {
        maxConnections: 12,
        controlReserve: 4,
        upstreamConcurrency: 4,
        upstreamQueue: 40,
        stalledClientSec: 2,
      },
    }),
  );
  d = spawnDaemon(s.env(h.home));
  await d.waitReady(30_000);
  bystander = new Client({ name: "bystander", version: "1" });
  await bystander.connect(new SocketClientTransport(d.socketPath, { name: "bystander" }));
}, 60_000);

afterAll(async () => {
  for (const r of raws) r.close();
  for (const x of sockets) x.destroy();
  await bystander?.close().catch(() => {});
  await d?.stop().catch(() => d?.kill9());
  await s?.stop();
  h?.cleanup();
});

describe("JSON-RPC edges", () => {
  it("every valid id comes back exactly as written; id null and invalid ids get -32600 with id null", async () => {
    const { sock, lines } = await rawText();
    sock.write('{"jsonrpc":"2.0","method":"loxmcp/hello","params":{"kind":"shim","name":"ids"}}\n');
    sock.write(
      '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"ids","version":"1"}}}\n',
    );
    const ids = ["1.5", "9007199254740993", "9007199254740994", "1e400", "1.50", "-0", "1E5", '"s-1"', "0"];
    for (const id of ids) sock.write(`{"jsonrpc":"2.0","id":${id},"method":"ping"}\n`);
    sock.write('{"jsonrpc":"2.0","id":"t","method":"tools/list"}\n');
    sock.write('{"jsonrpc":"2.0","id":null,"method":"ping"}\n');
    sock.write('{"jsonrpc":"2.0","id":true,"method":"ping"}\n');
    sock.write('{"jsonrpc":"2.0","id":"\\u0000num:7","method":"ping"}\n');
    await waitFor(() => lines().length >= ids.length + 5, { timeoutMs: 10_000, what: "all answers" });
    for (const id of ids) {
      expect(
        lines().filter((l) => l.includes(`"id":${id},`) || l.endsWith(`"id":${id}}`)),
        id,
      ).toHaveLength(1);
    }
    const nulls = lines()
      .map((l) => JSON.parse(l))
      .filter((m: J) => m.id === null);
    expect(nulls).toHaveLength(3);
    for (const m of nulls) expect(m.error.code).toBe(-32600);
    expect(nulls[0].error.message).toMatch(/id null is not allowed/);
  });

  it("requests before initialize and a second initialize are refused; a request right behind initialize waits for it", async () => {
    const r = await RawConnection.open(d.socketPath);
    raws.push(r);
    await r.send({ jsonrpc: "2.0", method: "loxmcp/hello", params: { kind: "shim", name: "early" } });
    await r.send({ jsonrpc: "2.0", id: 1, method: "tools/list" });
    expect(((await r.waitMessage((m) => m.id === 1)).error as J).message).toMatch(/send initialize first/);
    await r.send({ jsonrpc: "2.0", id: 2, method: "ping" });
    expect((await r.waitMessage((m) => m.id === 2)).result).toEqual({});
    const init = {
      protocolVersion: "2025-06-18",
      capabilities: {},
      clientInfo: { name: "early", version: "1" },
    };
    await r.send({ jsonrpc: "2.0", id: 3, method: "initialize", params: init });
    await r.send({ jsonrpc: "2.0", id: 4, method: "tools/list" });
    await r.send({ jsonrpc: "2.0", id: 5, method: "initialize", params: init });
    expect((await r.waitMessage((m) => m.id === 3)).result).toBeDefined();
    expect(((await r.waitMessage((m) => m.id === 4)).result as J).tools.length).toBeGreaterThan(0);
    expect(((await r.waitMessage((m) => m.id === 5)).error as J).message).toMatch(/already done/);
  });

  it("fields follow the negotiated protocol version; logging/setLevel is per client and answered locally", async () => {
    const old = await mcp("old-client", "2024-11-05");
    const now = await mcp("new-client", "2025-06-18");
    await old.send({ jsonrpc: "2.0", id: 1, method: "tools/list" });
    await now.send({ jsonrpc: "2.0", id: 1, method: "tools/list" });
    const oldTools = ((await old.waitMessage((m) => m.id === 1)).result as J).tools as J[];
    const newTools = ((await now.waitMessage((m) => m.id === 1)).result as J).tools as J[];
    expect(newTools.some((t) => t.annotations !== undefined)).toBe(true);
    expect(newTools.some((t) => t.title !== undefined)).toBe(true);
    for (const t of oldTools) {
      expect(Object.keys(t).sort()).toEqual(expect.arrayContaining(["description", "inputSchema", "name"]));
      expect(t.annotations).toBeUndefined();
      expect(t.title).toBeUndefined();
      expect(t.outputSchema).toBeUndefined();
    }
    const before = s.sim.stats().mcpRequests;
    await old.send({ jsonrpc: "2.0", id: 2, method: "logging/setLevel", params: { level: "error" } });
    expect((await old.waitMessage((m) => m.id === 2)).result).toEqual({});
    await old.send({ jsonrpc: "2.0", id: 3, method: "logging/setLevel", params: { level: "loud" } });
    expect(((await old.waitMessage((m) => m.id === 3)).error as J).code).toBe(-32602);
    expect(s.sim.stats().mcpRequests).toBe(before);
  });
});

describe("limits under abuse", () => {
  it("2000 reads in flight from one client while the relay is slow: refused beyond the limit, fair to others, bounded memory", async () => {
    const a = await mcp("flooder");
    const uuid = s.sim.house().controls[0]!.uuid;
    s.sim.setFaults({ latencyMs: 800 });
    const rss0 = rssMb(d.pid);
    let peak = rss0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssMb(d.pid));
    }, 50);
    try {
      const { result, pings } = await watchPings(async () => {
        const lines: string[] = [];
        for (let i = 0; i < 2000; i++) {
          lines.push(
            JSON.stringify({
              jsonrpc: "2.0",
              id: i,
              method: "tools/call",
              params: { name: "control_describe", arguments: { uuid } },
            }),
          );
        }
        await a.write(`${lines.join("\n")}\n`);
        // Another client's single read gets a relay slot in its turn, before the flood drains.
        const t0 = Date.now();
        await bystander.callTool({ name: "system_status", arguments: {} });
        const bystanderMs = Date.now() - t0;
        const answeredBefore = a.messages.filter((m) => typeof m.id === "number" && m.result).length;
        await waitFor(() => a.messages.filter((m) => typeof m.id === "number").length >= 2000, {
          timeoutMs: 60_000,
          what: "every flood request answered",
        });
        return { bystanderMs, answeredBefore };
      });
      const busy = a.messages.filter((m) => (m.error as J)?.code === TOO_BUSY);
      const ok = a.messages.filter((m) => typeof m.id === "number" && m.result);
      expect(busy.length).toBeGreaterThanOrEqual(2000 - 32);
      expect(ok.length).toBeLessThanOrEqual(32);
      expect((busy[0]?.error as J)?.message).toMatch(/too many requests in flight on this connection/);
      // Fairness: the bystander did not wait for the flooder's 32 reads (8 rounds of 800 ms).
      expect(result.answeredBefore).toBeLessThan(ok.length);
      expect(pings.length).toBeGreaterThan(10);
      console.log(
        `[mux-limits] flood: bystander read ${result.bystanderMs} ms, ping p99 ${p99(pings).toFixed(1)} ms over ${pings.length}, RSS +${(peak - rss0).toFixed(1)} MB`,
      );
      expect(peak - rss0).toBeLessThan(40);
    } finally {
      clearInterval(sampler);
      s.sim.setFaults({ latencyMs: 0 });
    }
  });

  it("a client that never reads its answers is paused, then disconnected; memory stays bounded", async () => {
    const { sock } = await rawText();
    sock.pause(); // never read
    sock.write('{"jsonrpc":"2.0","method":"loxmcp/hello","params":{"kind":"shim","name":"deaf"}}\n');
    sock.write(
      '{"jsonrpc":"2.0","id":"i","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"deaf","version":"1"}}}\n',
    );
    const before = (await d.status()).counters as J;
    const rss0 = rssMb(d.pid);
    let closed = false;
    sock.on("close", () => {
      closed = true;
    });
    sock.on("error", () => {});
    const { pings } = await watchPings(async () => {
      const line = '{"jsonrpc":"2.0","id":1,"method":"tools/list"}\n';
      for (let i = 0; i < 40; i++) sock.write(line.repeat(1000));
      await waitFor(() => closed, { timeoutMs: 30_000, what: "the deaf client is disconnected" });
    });
    const after = (await d.status()).counters as J;
    expect(after.slowClientsDropped).toBeGreaterThan(before.slowClientsDropped);
    const growth = rssMb(d.pid) - rss0;
    console.log(
      `[mux-limits] deaf client: ping p99 ${p99(pings).toFixed(1)} ms, RSS +${growth.toFixed(1)} MB`,
    );
    expect(growth).toBeLessThan(40);
    await bystander.ping();
  });

  it("too many MCP clients are refused, but slots are kept for the CLI", async () => {
    for (const r of raws) r.close();
    raws.length = 0;
    for (const x of sockets) x.destroy();
    await waitFor(async () => ((await d.status()).clients as J[]).length === 1, {
      what: "only the bystander",
    });
    const extra: RawConnection[] = [];
    let refused: RawConnection | undefined;
    for (let i = 0; i < 12 && !refused; i++) {
      const r = await RawConnection.open(d.socketPath);
      raws.push(r);
      await r.send({ jsonrpc: "2.0", method: "loxmcp/hello", params: { kind: "shim", name: `c${i}` } });
      await r.send({ jsonrpc: "2.0", id: 1, method: "ping" });
      await Promise.race([r.closedPromise, r.waitMessage((m) => m.id === 1).catch(() => {})]);
      if (r.closed) refused = r;
      else extra.push(r);
    }
    // 12 connections, 4 kept for control: 8 MCP clients (the bystander is one).
    expect(extra).toHaveLength(7);
    expect(refused?.messages.some((m) => (m.error as J)?.code === TOO_BUSY)).toBe(true);
    expect(((refused?.messages[0]?.error as J)?.message ?? "") as string).toMatch(/too many MCP clients/);
    const st = (await controlCall(d.socketPath, "loxmcp/status")) as J;
    expect(st.clients).toHaveLength(8);
    expect(st.counters.refusedConnections).toBeGreaterThan(0);
    for (const r of extra) r.close();
    await waitFor(async () => ((await d.status()).clients as J[]).length === 1, { what: "slots freed" });
    await mcp("after");
    for (const r of raws) r.close();
    raws.length = 0;
  });

  // Last: the emergency stop it triggers blocks writes for the rest of the daemon's life.
  it("a flood that fills the relay queue neither refuses nor delays the person's stop-all", async () => {
    const uuid = s.sim.house().controls[0]!.uuid;
    const floods = [await mcp("flood-a"), await mcp("flood-b")];
    s.sim.setFaults({ latencyMs: 800 });
    try {
      // 64 reads: 4 at the relay, 40 waiting (limits.upstreamQueue), the rest refused as busy.
      for (const [k, f] of floods.entries()) {
        const lines = Array.from({ length: 32 }, (_, i) =>
          JSON.stringify({
            jsonrpc: "2.0",
            id: k * 100 + i,
            method: "tools/call",
            params: { name: "control_describe", arguments: { uuid } },
          }),
        );
        await f.write(`${lines.join("\n")}\n`);
      }
      const answered = () => floods.flatMap((f) => f.messages.filter((m) => typeof m.id === "number"));
      await waitFor(() => answered().some((m) => (m.error as J)?.code === TOO_BUSY), {
        what: "the relay queue is full (a read refused as busy)",
      });
      const waitingBefore = 44 - answered().filter((m) => m.result).length;

      const out = (await controlCall(
        d.socketPath,
        "loxmcp/stop-all",
        { reason: "flood test" },
        { timeoutMs: 30_000 },
      )) as J;
      const okWhenStopped = answered().filter((m) => m.result).length;
      expect(out.stopped.length).toBeGreaterThan(0);
      expect(out.stopped.filter((x: J) => !x.ok)).toEqual([]);
      // It went ahead of the reads that waited: most of them were still waiting when it was done.
      expect(waitingBefore).toBeGreaterThan(30);
      expect(okWhenStopped).toBeLessThan(44 - 20);
      await waitFor(() => answered().length === 64, { timeoutMs: 30_000, what: "every flood read answered" });
    } finally {
      s.sim.setFaults({ latencyMs: 0 });
    }
  });
});
