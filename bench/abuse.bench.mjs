// Under abuse: one client misbehaves while another (the bystander) keeps pinging the daemon.
// 1. flood: 2,000 reads in flight from one connection while the relay answers after 800 ms;
// 2. deaf: a connection sends 40,000 tools/list and never reads an answer;
// 3. connections: 200 connections opened at once, then `loxmcp/status` from a control connection.
// Reports the daemon's RSS growth (peak sampled every 20 ms) and the bystander's ping latency for
// each; the goals (issue "Bounded under load") are ≤ 40 MB growth and ping p99 < 50 ms.
import { mkdirSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import {
  connectSocket,
  controlCall,
  envInt,
  goal,
  log,
  makeHome,
  memOf,
  round,
  simEnv,
  spawnDaemon,
  startSim,
  summarize,
  withCleanup,
} from "./lib.mjs";

const STALLED_SEC = 5;

function rawSocket(path) {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

async function initialized(path, name) {
  const s = await rawSocket(path);
  let buf = "";
  const lines = [];
  s.setEncoding("utf8").on("data", (d) => {
    buf += d;
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      nl = buf.indexOf("\n");
    }
  });
  s.on("error", () => {});
  s.write(`${JSON.stringify({ jsonrpc: "2.0", method: "loxmcp/hello", params: { kind: "shim", name } })}\n`);
  s.write(
    `${JSON.stringify({ jsonrpc: "2.0", id: "init", method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name, version: "1" } } })}\n`,
  );
  const t0 = Date.now();
  while (!lines.some((l) => l.includes('"id":"init"'))) {
    if (Date.now() - t0 > 15_000) throw new Error("initialize not answered");
    await new Promise((r) => setTimeout(r, 10));
  }
  return { s, lines };
}

/** Pings the bystander every 10 ms while `work` runs; samples the daemon's RSS every 20 ms. */
async function observe(bystander, pid, work) {
  const before = memOf(pid)?.rssMb ?? Number.NaN;
  let peak = before;
  const sampler = setInterval(() => {
    const m = memOf(pid);
    if (m && m.rssMb > peak) peak = m.rssMb;
  }, 20);
  const pings = [];
  let done = false;
  const loop = (async () => {
    while (!done) {
      const t = performance.now();
      await bystander.client.ping();
      pings.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  let extra;
  try {
    extra = await work();
  } finally {
    done = true;
    await loop;
    clearInterval(sampler);
  }
  return { growthMb: round(peak - before, 1), before, peak, ping: summarize(pings), ...extra };
}

export async function run() {
  const floodN = envInt("BENCH_ABUSE_FLOOD", 2000);
  const deafN = envInt("BENCH_ABUSE_DEAF", 40_000);
  const connN = envInt("BENCH_ABUSE_CONNECTIONS", 200);
  return withCleanup(async (defer) => {
    const sim = await startSim();
    defer(() => sim.stop());
    const h = makeHome();
    defer(() => h.cleanup());
    mkdirSync(join(h.home, "config"), { recursive: true, mode: 0o700 });
    writeFileSync(
      join(h.home, "config", "config.json"),
      JSON.stringify({ limits: { stalledClientSec: STALLED_SEC } }),
    );
    const env = simEnv(sim, h.home);
    const daemon = spawnDaemon(env);
    defer(() => daemon.stop());
    await daemon.waitReady();
    const bystander = await connectSocket(daemon.socket, "bystander");
    defer(() => bystander.close());
    const { tools } = await bystander.client.listTools();
    const describe = tools.find((t) => /describe/.test(t.name))?.name ?? tools[0].name;
    const find = await bystander.client.callTool({
      name: tools.find((t) => /find/.test(t.name)).name,
      arguments: {},
    });
    const uuid = /"uuid":\s*"([^"]+)"/.exec(find.content?.[0]?.text ?? "")?.[1];

    // 1. flood
    await fetch(`${sim.adminUrl}/faults`, { method: "POST", body: JSON.stringify({ latencyMs: 800 }) });
    const flooder = await initialized(daemon.socket, "flooder");
    const flood = await observe(bystander, daemon.pid, async () => {
      const frames = [];
      for (let i = 0; i < floodN; i++)
        frames.push(
          JSON.stringify({
            jsonrpc: "2.0",
            id: i,
            method: "tools/call",
            params: { name: describe, arguments: { uuid } },
          }),
        );
      flooder.s.write(`${frames.join("\n")}\n`);
      const t = performance.now();
      await bystander.client.callTool({ name: describe, arguments: { uuid } });
      const bystanderReadMs = round(performance.now() - t, 0);
      const t0 = Date.now();
      while (
        flooder.lines.filter((l) => !l.includes('"id":"init"')).length < floodN &&
        Date.now() - t0 < 120_000
      )
        await new Promise((r) => setTimeout(r, 20));
      const busy = flooder.lines.filter((l) => l.includes("-32008")).length;
      return { refusedTooBusy: busy, answered: flooder.lines.length - 1, bystanderReadMs };
    });
    flooder.s.destroy();
    await fetch(`${sim.adminUrl}/faults`, { method: "POST", body: JSON.stringify({ latencyMs: 0 }) });
    log(`abuse flood: +${flood.growthMb} MB, ping p99 ${flood.ping.p99} ms`);

    // 2. deaf
    const deaf = await initialized(daemon.socket, "deaf");
    deaf.s.pause();
    const deafResult = await observe(bystander, daemon.pid, async () => {
      let closedAfterMs;
      const t0 = performance.now();
      deaf.s.on("close", () => {
        closedAfterMs = round(performance.now() - t0, 0);
      });
      const line = `${JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" })}\n`;
      for (let i = 0; i < deafN / 1000; i++) deaf.s.write(line.repeat(1000));
      const end = Date.now() + (STALLED_SEC + 10) * 1000;
      while (closedAfterMs === undefined && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
      return { disconnectedAfterMs: closedAfterMs ?? null };
    });
    deaf.s.destroy();
    log(`abuse deaf: +${deafResult.growthMb} MB, ping p99 ${deafResult.ping.p99} ms`);

    // 3. connections
    const conns = await observe(bystander, daemon.pid, async () => {
      const socks = [];
      let refused = 0;
      for (let i = 0; i < connN; i++) {
        try {
          const s = await rawSocket(daemon.socket);
          s.on("error", () => {});
          s.on("close", () => refused++);
          s.resume(); // read (and drop) what the daemon says, so its close is seen
          s.write(
            `${JSON.stringify({ jsonrpc: "2.0", method: "loxmcp/hello", params: { kind: "shim", name: `c${i}` } })}\n`,
          );
          socks.push(s);
        } catch {
          refused++;
        }
      }
      await new Promise((r) => setTimeout(r, 500));
      const t = performance.now();
      const st = await controlCall(daemon.socket, "loxmcp/status");
      const statusMs = round(performance.now() - t, 1);
      for (const s of socks) s.destroy();
      return { opened: connN, refused, statusMs, clientsSeen: st.clients.length };
    });
    log(`abuse connections: refused ${conns.refused}/${connN}, status in ${conns.statusMs} ms`);

    const scenarios = [
      [`flood: ${floodN} reads in flight, relay 800 ms`, flood],
      [`deaf: ${deafN} tools/list, never read`, deafResult],
      [`connections: ${connN} at once`, conns],
    ];
    return {
      name: "Under abuse: daemon memory and a bystander's ping while one client misbehaves",
      flood,
      deaf: deafResult,
      connections: conns,
      rows: scenarios.map(([what, r]) => ({
        scenario: what,
        "RSS growth MB": r.growthMb,
        "ping p50 ms": r.ping.p50,
        "ping p99 ms": r.ping.p99,
        pings: r.ping.n,
        note:
          r.refusedTooBusy !== undefined
            ? `${r.refusedTooBusy} TooBusy; bystander read ${r.bystanderReadMs} ms`
            : r.disconnectedAfterMs !== undefined
              ? `disconnected after ${r.disconnectedAfterMs} ms`
              : `${r.refused} refused; status ${r.statusMs} ms`,
      })),
      goals: scenarios.flatMap(([what, r]) => [
        goal(`${what.split(":")[0]}: daemon RSS growth`, r.growthMb, 40, "MB"),
        goal(`${what.split(":")[0]}: bystander ping p99`, r.ping.p99, 50, "ms"),
      ]),
    };
  });
}
