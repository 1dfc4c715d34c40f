// Fan-in: many shims (20 by default) share one daemon and issue calls concurrently.
// Reports throughput, latency percentiles, errors, and what the simulator saw: logins and
// upstream MCP sessions (both should stay 1), plus daemon and shim memory under that load.
import { performance } from "node:perf_hooks";
import {
  connectDirect,
  connectShim,
  envInt,
  goal,
  log,
  memOf,
  pickReadTool,
  round,
  startRig,
  summarize,
  withCleanup,
} from "./lib.mjs";

export async function run() {
  const shims = envInt("BENCH_FANIN_SHIMS", 20);
  const total = envInt("BENCH_FANIN_CALLS", 1000);
  const concurrency = envInt("BENCH_FANIN_CONCURRENCY", 5); // in flight per shim
  const perShim = Math.ceil(total / shims);
  return withCleanup(async (defer) => {
    const { sim, env, daemon } = await startRig(defer);
    const daemonIdle = memOf(daemon.pid);

    const clients = await Promise.all(
      Array.from({ length: shims }, (_, i) => connectShim(env, `fanin-${i}`)),
    );
    for (const c of clients) defer(() => c.close());
    const { tools } = await clients[0].client.listTools();
    const tool = pickReadTool(tools);
    // Warm-up: one call per shim.
    await Promise.all(clients.map((c) => c.client.callTool({ name: tool, arguments: {} })));

    let peakDaemonRss = 0;
    const sampler = setInterval(() => {
      const m = memOf(daemon.pid);
      if (m && m.rssMb > peakDaemonRss) peakDaemonRss = m.rssMb;
    }, 20);
    defer(() => clearInterval(sampler));

    const latencies = [];
    const errors = [];
    const t0 = performance.now();
    await Promise.all(
      clients.map(async (c) => {
        let next = 0;
        const worker = async () => {
          while (next < perShim) {
            next++;
            const s = performance.now();
            try {
              const r = await c.client.callTool({ name: tool, arguments: {} });
              if (r.isError) errors.push(JSON.stringify(r.content).slice(0, 200));
            } catch (e) {
              errors.push(e.message);
            }
            latencies.push(performance.now() - s);
          }
        };
        await Promise.all(Array.from({ length: concurrency }, worker));
      }),
    );
    const elapsedMs = performance.now() - t0;
    clearInterval(sampler);

    // What the simulator saw from the daemon (before the direct reference adds its own login).
    const stats = await sim.stats();
    const daemonAfter = memOf(daemon.pid);
    const shimMem = clients.map((c) => memOf(c.pid)).filter(Boolean);

    // Reference: the simulator's own capacity — one direct SDK client with the same number of
    // calls in flight overall. If this is as slow, the simulator (same machine) is the bottleneck.
    const direct = await connectDirect(sim, defer);
    const directLat = [];
    let directNext = 0;
    const d0 = performance.now();
    await Promise.all(
      Array.from({ length: shims * concurrency }, async () => {
        while (directNext < latencies.length) {
          directNext++;
          const s = performance.now();
          await direct.client.callTool({ name: tool, arguments: {} });
          directLat.push(performance.now() - s);
        }
      }),
    );
    const directElapsed = performance.now() - d0;
    const directSummary = summarize(directLat);
    const directThroughput = directLat.length / (directElapsed / 1000);

    const lat = summarize(latencies);
    const throughput = latencies.length / (elapsedMs / 1000);
    const maxShimRss = Math.max(...shimMem.map((m) => m.rssMb));
    const meanShimRss = shimMem.reduce((s, m) => s + m.rssMb, 0) / (shimMem.length || 1);
    log(`fan-in: ${latencies.length} calls from ${shims} shims in ${round(elapsedMs, 0)} ms`);
    return {
      name: `Fan-in: ${shims} shims × ${perShim} calls (${concurrency} in flight each) of ${tool}`,
      shims,
      calls: latencies.length,
      concurrencyPerShim: concurrency,
      elapsedMs: round(elapsedMs, 1),
      throughputPerSec: round(throughput, 1),
      latency: lat,
      errors: errors.length,
      errorSamples: errors.slice(0, 5),
      directReference: {
        calls: directLat.length,
        inFlight: shims * concurrency,
        throughputPerSec: round(directThroughput, 1),
        latency: directSummary,
      },
      simulatorLogins: stats.logins,
      simulatorSessions: stats.sessions,
      daemonRssMb: {
        idle: daemonIdle?.rssMb,
        peakSampled: peakDaemonRss,
        after: daemonAfter?.rssMb,
        hwm: daemonAfter?.hwmMb,
      },
      shimRssMb: { mean: round(meanShimRss, 1), max: maxShimRss },
      rows: [
        {
          path: `${shims} shims → daemon → simulator`,
          calls: latencies.length,
          "throughput/s": round(throughput, 1),
          p50_ms: lat.p50,
          p99_ms: lat.p99,
          max_ms: lat.max,
          errors: errors.length,
          logins: stats.logins,
          sessions: stats.sessions,
          daemon_peak_rss_mb: peakDaemonRss,
          shim_max_rss_mb: maxShimRss,
        },
        {
          path: "reference: 1 direct SDK client → simulator",
          calls: directLat.length,
          "throughput/s": round(directThroughput, 1),
          p50_ms: directSummary.p50,
          p99_ms: directSummary.p99,
          max_ms: directSummary.max,
        },
      ],
      goals: [
        goal("fan-in errors", errors.length, 0, "errors", "equal"),
        goal("fan-in simulator logins", stats.logins, 1, "logins", "equal"),
        goal("fan-in upstream sessions", stats.sessions, 1, "sessions", "equal"),
      ],
    };
  });
}
