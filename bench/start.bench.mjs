// Client start: time from spawning a client's MCP server process to its first tools/list answer.
//  (a) loxmcp-shim with a running daemon (the daemon holds login + session);
//  (b) the per-client baseline proxy (bench/baseline-proxy.mjs): resolve + headless login +
//      initialize + tools/list, what every per-client proxy does on each start;
//  (b') the same baseline with a token cache file (no login, still resolve + own session);
//  (0) a reference floor (bench/floor-server.cjs): a Node process that answers from memory, i.e.
//      what any Node-based shim costs at least here; (b)/(0) is the best ratio reachable.
// Both are spawned by the SDK's StdioClientTransport and driven by an SDK Client, as Claude would.

import { performance } from "node:perf_hooks";
import {
  BASELINE_BIN,
  connectStdio,
  envInt,
  FLOOR_SERVER,
  goal,
  log,
  makeHome,
  round,
  SHIM_BIN,
  seededRandom,
  shuffled,
  simEnv,
  startRig,
  summarize,
  withCleanup,
} from "./lib.mjs";

async function timeStart(command, args, env, name) {
  const t0 = performance.now();
  const c = await connectStdio(command, args, env, name);
  const { tools } = await c.client.listTools();
  const ms = performance.now() - t0;
  await c.close();
  if (!Array.isArray(tools) || tools.length === 0) throw new Error(`${name}: empty tools/list`);
  return ms;
}

export async function run() {
  const iterations = envInt("BENCH_START_ITERATIONS", 25);
  return withCleanup(async (defer) => {
    const { sim, h, env } = await startRig(defer);

    const cacheHome = makeHome();
    defer(() => cacheHome.cleanup());
    const baseEnv = simEnv(sim, h.home);
    const cachedEnv = { ...baseEnv, BASELINE_TOKEN_CACHE: `${cacheHome.home}/tokens.json` };

    // Warm-up (file cache, JIT of this process) — not measured.
    await timeStart(process.execPath, [SHIM_BIN], env, "warmup-shim");
    await timeStart(process.execPath, [BASELINE_BIN], baseEnv, "warmup-baseline");
    await timeStart(process.execPath, [BASELINE_BIN], cachedEnv, "warmup-baseline-cached");
    await timeStart(process.execPath, [FLOOR_SERVER], env, "warmup-floor");

    const loginsBefore = (await sim.stats()).logins;
    const shim = [];
    const baseline = [];
    const cached = [];
    const floor = [];
    // Interleaved so that machine noise hits all variants alike, in an order shuffled anew every
    // round so that no variant always follows the same one; a short pause lets the previous
    // client's exit (process teardown, the simulator closing its session) finish before the next.
    const pauseMs = envInt("BENCH_START_PAUSE_MS", 100);
    const random = seededRandom(envInt("BENCH_SEED", 1));
    const variants = [
      (i) =>
        timeStart(process.execPath, [SHIM_BIN, "--name", `start-${i}`], env, "shim").then((ms) =>
          shim.push(ms),
        ),
      () => timeStart(process.execPath, [BASELINE_BIN], baseEnv, "baseline").then((ms) => baseline.push(ms)),
      () =>
        timeStart(process.execPath, [BASELINE_BIN], cachedEnv, "baseline-cached").then((ms) =>
          cached.push(ms),
        ),
      () => timeStart(process.execPath, [FLOOR_SERVER], env, "floor").then((ms) => floor.push(ms)),
    ];
    for (let i = 0; i < iterations; i++) {
      for (const variant of shuffled(variants, random)) {
        await new Promise((r) => setTimeout(r, pauseMs));
        await variant(i);
      }
    }
    const baselineLogins = (await sim.stats()).logins - loginsBefore;
    log(`start: ${iterations} iterations done`);

    const s = summarize(shim);
    const b = summarize(baseline);
    const bc = summarize(cached);
    const f = summarize(floor);
    const ratioFloor = b.p50 / f.p50;
    const ratio = b.p50 / s.p50;
    const ratioCached = bc.p50 / s.p50;
    const row = (variant, x) => ({
      variant,
      n: x.n,
      p50_ms: x.p50,
      p90_ms: x.p90,
      min_ms: x.min,
      max_ms: x.max,
    });
    return {
      name: "Client start: spawn → first tools/list answer",
      iterations,
      shim: s,
      baseline: b,
      baselineCached: bc,
      floor: f,
      shimAboveFloorP50Ms: round(s.p50 - f.p50, 1),
      ratioP50BestPossible: round(ratioFloor, 1),
      ratioP50: round(ratio, 1),
      ratioP90: round(b.p90 / s.p90, 1),
      ratioP50VsCachedBaseline: round(ratioCached, 1),
      baselineLogins,
      rows: [
        row("(a) loxmcp-shim, daemon running", s),
        row("(b) per-client proxy: resolve+login+init", b),
        row("(b') per-client proxy, cached token", bc),
        row("(0) floor: bare Node answering from memory", f),
        { variant: "ratio (b)/(a) p50", p50_ms: round(ratio, 1) },
        { variant: "ratio (b')/(a) p50", p50_ms: round(ratioCached, 1) },
        { variant: "ratio (b)/(0) p50: best any Node shim can reach", p50_ms: round(ratioFloor, 1) },
        { variant: "shim above floor, p50", p50_ms: round(s.p50 - f.p50, 1) },
      ],
      goals: [goal("client start: baseline p50 / shim p50", ratio, 10, "×", "higher")],
    };
  });
}
