// Overhead per tools/call: SDK Client → simulator directly (Streamable HTTP, Bearer token from a
// headless login) versus SDK Client → loxmcp-shim (stdio) → daemon (socket) → simulator.
// A third path, SDK Client → daemon socket directly, separates the daemon's cost from the shim hop.
// A fourth, SDK Client → bench/floor-pipe.cjs (a Node process that only pipes bytes) → daemon, is
// the reference floor: what any separate shim process costs at least on this machine.
// Calls are sequential (one in flight) so each sample is a latency, and the paths take turns call
// by call so that machine noise hits all alike. Added latency = difference of the percentiles.
import { performance } from "node:perf_hooks";
import {
  connectDirect,
  connectFloorPipe,
  connectShim,
  connectSocket,
  envInt,
  goal,
  log,
  pickReadTool,
  round,
  seededRandom,
  shuffled,
  startRig,
  summarize,
  withCleanup,
} from "./lib.mjs";

async function timeCalls(client, tool, n, into) {
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const r = await client.callTool({ name: tool, arguments: {} });
    into.push(performance.now() - t0);
    if (r.isError) throw new Error(`${tool} returned an error: ${JSON.stringify(r.content)}`);
  }
}

export async function run() {
  const calls = envInt("BENCH_CALLS", 5000);
  return withCleanup(async (defer) => {
    const { sim, env, daemon } = await startRig(defer);

    const direct = await connectDirect(sim, defer);
    const shim = await connectShim(env, "bench-overhead");
    defer(() => shim.close());
    const sock = await connectSocket(daemon.socket, "bench-overhead-socket");
    defer(() => sock.close());
    const pipe = await connectFloorPipe(env, daemon.socket);
    defer(() => pipe.close());

    const { tools } = await direct.client.listTools();
    const tool = pickReadTool(tools);
    // Warm-up both paths (JIT, connection pools, caches).
    await timeCalls(direct.client, tool, 200, []);
    await timeCalls(shim.client, tool, 200, []);
    await timeCalls(sock.client, tool, 200, []);
    await timeCalls(pipe.client, tool, 200, []);

    const d = [];
    const s = [];
    const k = [];
    const f = [];
    // One call per path in turn, in an order shuffled anew every round: machine noise hits all
    // paths alike, and each path follows every other one equally often (a call right after a
    // direct call meets the simulator still finishing that call's HTTP exchange; with a fixed or
    // rotating order the same path would always pay for it).
    const paths = [
      [direct.client, d],
      [shim.client, s],
      [sock.client, k],
      [pipe.client, f],
    ];
    const random = seededRandom(envInt("BENCH_SEED", 1));
    for (let i = 0; i < calls; i++) {
      for (const [client, into] of shuffled(paths, random)) await timeCalls(client, tool, 1, into);
    }
    log(
      `overhead: ${d.length} direct, ${s.length} via shim, ${k.length} via socket, ${f.length} via the floor pipe calls of ${tool}`,
    );
    const ds = summarize(d);
    const ss = summarize(s);
    const ks = summarize(k);
    const fs = summarize(f);
    const diff = (a, b) => ({
      p50: round(a.p50 - b.p50, 3),
      p90: round(a.p90 - b.p90, 3),
      p99: round(a.p99 - b.p99, 3),
    });
    const added = diff(ss, ds);
    const addedDaemonOnly = diff(ks, ds);
    const addedFloor = diff(fs, ds);
    const shimAboveFloor = diff(ss, fs);
    const row = (path, x) => ({ path, n: x.n, p50_ms: x.p50, p90_ms: x.p90, p99_ms: x.p99, max_ms: x.max });
    return {
      name: `Overhead per tools/call (${tool}, sequential)`,
      tool,
      calls: d.length,
      direct: ds,
      viaShim: ss,
      viaSocket: ks,
      viaFloorPipe: fs,
      addedMs: added,
      addedMsDaemonOnly: addedDaemonOnly,
      addedMsFloorPipe: addedFloor,
      shimAboveFloorMs: shimAboveFloor,
      rows: [
        row("direct SDK Client → simulator", ds),
        row("SDK Client → shim → daemon → simulator", ss),
        row("SDK Client → daemon socket → simulator (no shim)", ks),
        row("SDK Client → floor pipe → daemon → simulator (reference)", fs),
        { path: "added by loxmcp (shim + daemon)", p50_ms: added.p50, p90_ms: added.p90, p99_ms: added.p99 },
        {
          path: "added by the daemon alone",
          p50_ms: addedDaemonOnly.p50,
          p90_ms: addedDaemonOnly.p90,
          p99_ms: addedDaemonOnly.p99,
        },
        {
          path: "added with a bare pipe as shim (floor)",
          p50_ms: addedFloor.p50,
          p90_ms: addedFloor.p90,
          p99_ms: addedFloor.p99,
        },
        {
          path: "shim above the bare pipe",
          p50_ms: shimAboveFloor.p50,
          p90_ms: shimAboveFloor.p90,
          p99_ms: shimAboveFloor.p99,
        },
      ],
      goals: [goal("added latency p50", added.p50, 1, "ms"), goal("added latency p99", added.p99, 5, "ms")],
    };
  });
}
