// Memory: resident set size (VmRSS, and the high-water mark VmHWM) from /proc/<pid>/status of
//  - the daemon idle (ready, logged in, no client) and after one client made 200 calls;
//  - one shim idle (after initialize + tools/list) and after 200 calls;
//  - the per-client baseline proxy after the same 200 calls, for comparison;
//  - a reference floor: bench/floor-pipe.cjs (a bare Node process piping bytes between stdio and
//    the daemon socket) after the same 200 calls — the least any Node process in the shim's place is;
//  - the daemon again after BENCH_IDLE_WAIT_MS (15 s) without clients, once V8's memory reducer ran;
//  - the daemon after BENCH_LOAD_CLIENTS (20) socket clients made BENCH_LOAD_CALLS (1000) calls each,
//    all at once (issue 21's goal: at most 80 MB);
//  - a reference floor for the daemon: bench/floor-daemon.mjs (pino to a file, better-sqlite3 in WAL
//    mode, a Unix socket server, node:http keep-alive requests to the simulator; no SDK, no MCP)
//    after 300 requests, with the daemon's V8 flags — the least a Node daemon of this design is.
// Every row also splits RSS into anonymous (private) and file-backed (shared binary) pages.
// Linux only (/proc); elsewhere the values are reported as null.
import { spawn } from "node:child_process";
import { DAEMON_NODE_FLAGS } from "@loxmcp/common";
import {
  BASELINE_BIN,
  connectFloorPipe,
  connectShim,
  connectSocket,
  connectStdio,
  envInt,
  FLOOR_DAEMON,
  goal,
  log,
  memOf,
  pickReadTool,
  simEnv,
  startRig,
  waitFor,
  withCleanup,
} from "./lib.mjs";

/** Runs bench/floor-daemon.mjs until it has made its requests; returns its settled memory. */
async function floorDaemonMem(sim, defer) {
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, FLOOR_DAEMON], {
    env: { PATH: process.env.PATH, FLOOR_URL: `${sim.adminUrl}/stats` },
    stdio: ["ignore", "pipe", "inherit"],
  });
  defer(() => child.kill("SIGTERM"));
  await new Promise((resolvePromise, reject) => {
    child.stdout.setEncoding("utf8").on("data", (d) => d.includes("ready") && resolvePromise());
    child.once("exit", (code) => reject(new Error(`floor-daemon exited (${code}) before it was ready`)));
  });
  const m = await settledMem(child.pid);
  child.kill("SIGTERM");
  return m;
}

/** Waits until RSS stops moving by more than 0.5 MB over a few samples (GC and lazy init settle). */
async function settledMem(pid) {
  let prev;
  let stable = 0;
  await waitFor(
    async () => {
      await new Promise((r) => setTimeout(r, 100));
      const m = memOf(pid);
      if (!m) return true;
      stable = prev !== undefined && Math.abs(m.rssMb - prev) < 0.5 ? stable + 1 : 0;
      prev = m.rssMb;
      return stable >= 3;
    },
    5000,
    "memory to settle",
  ).catch(() => {});
  return memOf(pid);
}

async function calls(client, tool, n) {
  for (let i = 0; i < n; i++) await client.callTool({ name: tool, arguments: {} });
}

export async function run() {
  return withCleanup(async (defer) => {
    const { sim, h, env, daemon } = await startRig(defer);
    const daemonIdle = await settledMem(daemon.pid);

    const shim = await connectShim(env, "bench-memory");
    defer(() => shim.close());
    const { tools } = await shim.client.listTools();
    const tool = pickReadTool(tools);
    const shimIdle = await settledMem(shim.pid);
    await calls(shim.client, tool, 200);
    const shimBusy = await settledMem(shim.pid);
    const daemonBusy = await settledMem(daemon.pid);

    const base = await connectStdio(process.execPath, [BASELINE_BIN], simEnv(sim, h.home), "baseline");
    defer(() => base.close());
    await base.client.listTools();
    await calls(base.client, tool, 200);
    const baseBusy = await settledMem(base.pid);
    await base.close();

    const pipe = await connectFloorPipe(env, daemon.socket);
    defer(() => pipe.close());
    await pipe.client.listTools();
    await calls(pipe.client, tool, 200);
    const pipeBusy = await settledMem(pipe.pid);
    await pipe.close();
    await shim.close();

    const idleWaitMs = envInt("BENCH_IDLE_WAIT_MS", 15_000);
    log(`memory: daemon without clients for ${idleWaitMs / 1000} s`);
    await new Promise((r) => setTimeout(r, idleWaitMs));
    const daemonLaterIdle = await settledMem(daemon.pid);

    const loadClients = envInt("BENCH_LOAD_CLIENTS", 20);
    const loadCalls = envInt("BENCH_LOAD_CALLS", 1000);
    log(`memory: ${loadClients} clients × ${loadCalls} calls at once`);
    const socketClients = [];
    for (let i = 0; i < loadClients; i++) {
      const c = await connectSocket(daemon.socket, `bench-load-${i}`);
      defer(() => c.close());
      socketClients.push(c);
    }
    const t0 = Date.now();
    await Promise.all(socketClients.map((c) => calls(c.client, tool, loadCalls)));
    const loadSeconds = (Date.now() - t0) / 1000;
    const daemonLoaded = await settledMem(daemon.pid);
    for (const c of socketClients) await c.close();
    const floorDaemon = await floorDaemonMem(sim, defer);
    log("memory: measured");

    const row = (process, when, m) => ({
      process,
      when,
      rss_mb: m?.rssMb ?? null,
      hwm_mb: m?.hwmMb ?? null,
      anon_mb: m?.anonMb ?? null,
      file_mb: m?.fileMb ?? null,
    });
    return {
      name: "Memory (VmRSS / VmHWM / RssAnon / RssFile from /proc)",
      daemon: {
        idle: daemonIdle ?? null,
        after200Calls: daemonBusy ?? null,
        idleLater: daemonLaterIdle ?? null,
        afterLoad: daemonLoaded ?? null,
        load: { clients: loadClients, callsEach: loadCalls, seconds: loadSeconds },
      },
      shim: { idle: shimIdle ?? null, after200Calls: shimBusy ?? null },
      baselineProxy: { after200Calls: baseBusy ?? null },
      floorPipe: { after200Calls: pipeBusy ?? null },
      floorDaemon: { after300Requests: floorDaemon ?? null },
      rows: [
        row("loxmcpd", "idle, logged in, no client", daemonIdle),
        row("loxmcpd", "1 client, after 200 calls", daemonBusy),
        row("loxmcpd", `idle again, ${idleWaitMs / 1000} s later`, daemonLaterIdle),
        row("loxmcpd", `${loadClients} clients × ${loadCalls} calls at once`, daemonLoaded),
        row("floor: daemon plumbing only (no SDK, no MCP)", "after 300 requests", floorDaemon),
        row("loxmcp-shim", "after initialize + tools/list", shimIdle),
        row("loxmcp-shim", "after 200 calls", shimBusy),
        row("floor: bare Node pipe in the shim's place", "after 200 calls", pipeBusy),
        row("baseline per-client proxy", "after 200 calls", baseBusy),
      ],
      goals: [
        goal("daemon RSS idle", daemonIdle?.rssMb ?? Number.NaN, 60, "MB"),
        goal(
          "daemon RSS idle ≤ plumbing floor + 10 MB",
          daemonIdle?.rssMb ?? Number.NaN,
          Math.round(((floorDaemon?.rssMb ?? Number.NaN) + 10) * 10) / 10,
          "MB",
          "atMost",
        ),
        goal(
          `daemon RSS after ${loadClients}×${loadCalls} calls`,
          daemonLoaded?.rssMb ?? Number.NaN,
          80,
          "MB",
          "atMost",
        ),
        goal("shim RSS after 200 calls", shimBusy?.rssMb ?? Number.NaN, 40, "MB"),
      ],
    };
  });
}
