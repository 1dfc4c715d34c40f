// Shared helpers for the benchmarks (plain ESM, run with node after `pnpm build`).
// Everything here drives REAL parts: the in-process simulator over HTTP, the built daemon and shim
// bins as child processes, the MCP SDK Client.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { DAEMON_NODE_FLAGS, encodeFrame, LineDecoder, resolvePaths } from "@loxmcp/common";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { connectUpstream } from "./baseline-proxy.mjs";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const DAEMON_BIN = join(REPO, "packages/daemon/bin/loxmcpd.js");
export const SHIM_BIN = join(REPO, "packages/shim/bin/loxmcp-shim.js");
export const BASELINE_BIN = join(REPO, "bench/baseline-proxy.mjs");

/** Child processes we started; killed if this process exits early (a failing benchmark, Ctrl-C). */
const children = new Set();
function track(child) {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}
process.once("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});
for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, () => process.exit(130));

/** Integer from the environment, else `def`. */
export function envInt(name, def) {
  const v = Number.parseInt(process.env[name] ?? "", 10);
  return Number.isFinite(v) && v > 0 ? v : def;
}

export function log(msg) {
  process.stderr.write(`[bench] ${msg}\n`);
}

export const SIM_BIN = join(REPO, "packages/simulator/bin/loxmcp-sim.js");

/**
 * Starts the simulator as its own process (`loxmcp-sim`), so that its CPU time is not spent on
 * the benchmark's event loop (where the measuring SDK clients live). connect's rate limit is
 * lifted: benchmarks resolve often. `stats()` reads the admin API (`GET /stats`).
 */
export async function startSim() {
  const child = track(
    spawn(process.execPath, [SIM_BIN, "--port", "0", "--rate-limit", "1000000"], {
      cwd: REPO,
      stdio: ["ignore", "pipe", "pipe"],
    }),
  );
  let err = "";
  child.stderr.setEncoding("utf8").on("data", (d) => {
    err += d;
  });
  const exited = new Promise((r) => child.once("exit", r));
  const info = await new Promise((resolvePromise, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`simulator did not start:\n${err}`)), 20_000);
    child.stdout.setEncoding("utf8").on("data", (d) => {
      out += d;
      const nl = out.indexOf("\n");
      if (nl === -1) return;
      clearTimeout(timer);
      try {
        resolvePromise(JSON.parse(out.slice(0, nl)));
      } catch (e) {
        reject(new Error(`simulator printed ${out.slice(0, nl)}: ${e.message}`));
      }
    });
    child.once("exit", (code) => reject(new Error(`simulator exited (${code}):\n${err}`)));
  });
  return {
    ...info,
    pid: child.pid,
    async stats() {
      const res = await fetch(`${info.adminUrl}/stats`);
      return res.json();
    },
    async stop() {
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** A short private temp LOXMCP_HOME (Unix socket paths must stay short). */
export function makeHome() {
  const home = mkdtempSync("/tmp/lxb-");
  return { home, cleanup: () => rmSync(home, { recursive: true, force: true }) };
}

/** Environment for daemon, shim and baseline: only what they need, nothing inherited by accident. */
export function simEnv(sim, home, extra = {}) {
  const env = {};
  for (const k of ["PATH", "HOME", "TMPDIR", "LANG"])
    if (process.env[k] !== undefined) env[k] = process.env[k];
  return {
    ...env,
    LOXONE_SERIAL: sim.serial,
    LOXONE_USER: sim.user,
    LOXONE_PASSWORD: sim.password,
    LOXONE_CONNECT_URL: sim.connectUrl,
    LOXMCP_HOME: home,
    LOXMCP_LOG_LEVEL: "warn",
    LOXMCP_NO_SERVICE: "1",
    LOXMCP_DAEMON_BIN: DAEMON_BIN,
    ...extra,
  };
}

/** One `loxmcp/*` request on the daemon socket (as the CLI sends it, no initialize). */
export function controlCall(socketPath, method, params = {}, timeoutMs = 5000) {
  return new Promise((resolvePromise, reject) => {
    const s = connect(socketPath);
    const decoder = new LineDecoder();
    const timer = setTimeout(() => done(() => reject(new Error(`no answer to ${method}`))), timeoutMs);
    function done(fn) {
      clearTimeout(timer);
      s.destroy();
      fn();
    }
    s.on("connect", () => s.write(encodeFrame({ jsonrpc: "2.0", id: 1, method, params })));
    s.on("data", (chunk) => {
      for (const line of decoder.push(chunk).lines) {
        let m;
        try {
          m = JSON.parse(line);
        } catch {
          continue;
        }
        if (m.id !== 1) continue;
        if (m.error) done(() => reject(new Error(`${method}: ${m.error.message}`)));
        else done(() => resolvePromise(m.result));
      }
    });
    s.on("error", (e) => done(() => reject(e)));
    s.on("close", () => done(() => reject(new Error(`connection closed before the answer to ${method}`))));
  });
}

/** Polls `fn` until truthy or the deadline passes. */
export async function waitFor(fn, timeoutMs = 20_000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Spawns the real daemon (`node <DAEMON_NODE_FLAGS> packages/daemon/bin/loxmcpd.js`) in the
 * foreground, with the same V8 flags the shim's on-demand start uses.
 */
export function spawnDaemon(env) {
  const paths = resolvePaths(env);
  const child = track(
    spawn(process.execPath, [...DAEMON_NODE_FLAGS, DAEMON_BIN], {
      cwd: REPO,
      env,
      stdio: ["ignore", "ignore", "pipe"],
    }),
  );
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (d) => {
    stderr += d;
  });
  let exited = false;
  const exitedP = new Promise((r) =>
    child.once("exit", (code, signal) => {
      exited = true;
      r({ code, signal });
    }),
  );
  const status = () => controlCall(paths.socket, "loxmcp/status");
  return {
    child,
    pid: child.pid,
    paths,
    socket: paths.socket,
    status,
    stderr: () => stderr,
    async waitReady(timeoutMs = 30_000) {
      return waitFor(
        async () => {
          if (exited) throw new Error(`daemon exited:\n${stderr}`);
          const s = await status();
          return s.state === "ready" ? s : undefined;
        },
        timeoutMs,
        'daemon state "ready"',
      ).catch((e) => {
        throw new Error(`${e.message}\n--- daemon stderr ---\n${stderr}`);
      });
    },
    async stop() {
      if (exited) return;
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exitedP;
      clearTimeout(t);
    },
  };
}

/**
 * Spawns a stdio MCP server process (shim or baseline) through the SDK's StdioClientTransport and
 * connects an SDK Client, exactly as Claude/Cursor would. Returns the client, its transport and pid.
 */
export async function connectStdio(command, args, env, name = "bench") {
  const transport = new StdioClientTransport({ command, args, env, stderr: "pipe", cwd: REPO });
  let stderr = "";
  transport.stderr?.on("data", (d) => {
    stderr += d.toString();
  });
  const client = new Client({ name, version: "1.0.0" });
  try {
    await client.connect(transport);
  } catch (e) {
    await transport.close().catch(() => {});
    throw new Error(`${name}: ${e.message}\n--- stderr ---\n${stderr}`);
  }
  return { client, transport, pid: transport.pid, stderr: () => stderr, close: () => client.close() };
}

export const connectShim = (env, name = "bench-shim") =>
  connectStdio(process.execPath, [SHIM_BIN, "--name", name], env, name);

/** Reference floors (not product code): see the header of each file. */
export const FLOOR_SERVER = join(REPO, "bench/floor-server.cjs");
export const FLOOR_PIPE = join(REPO, "bench/floor-pipe.cjs");
export const FLOOR_DAEMON = join(REPO, "bench/floor-daemon.mjs");

/** An SDK Client over stdio to bench/floor-pipe.cjs, which pipes bytes to the daemon's socket. */
export const connectFloorPipe = (env, socket) =>
  connectStdio(process.execPath, [FLOOR_PIPE], { ...env, LOXMCP_SOCKET: socket }, "floor-pipe");

/** Picks a cheap read tool the house offers (names come from tools/list, never hard-coded alone). */
export function pickReadTool(tools) {
  const names = tools.map((t) => t.name);
  for (const n of ["system_status", "weather_forecast", "control_find"]) if (names.includes(n)) return n;
  const free = tools.find((t) => !(t.inputSchema?.required?.length > 0) && !/command|cmd|set/i.test(t.name));
  if (!free) throw new Error(`no argument-free read tool in ${names.join(", ")}`);
  return free.name;
}

/**
 * Resident memory of a process from /proc (Linux), or undefined: `rssMb` (VmRSS), `hwmMb` (VmHWM,
 * the lifetime peak), and RSS split into `anonMb` (RssAnon: heap, JIT code, stacks — private to
 * the process) and `fileMb` (RssFile: pages of the node binary and shared libraries, shared with
 * every other Node process on the machine).
 */
export function memOf(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? Number.NaN);
    const mb = (k) => round(kb(k) / 1024, 1);
    return { rssMb: mb("VmRSS"), hwmMb: mb("VmHWM"), anonMb: mb("RssAnon"), fileMb: mb("RssFile") };
  } catch {
    return undefined;
  }
}

/**
 * A deterministic pseudo-random generator (mulberry32) for the order in which benchmark variants
 * take turns: shuffled anew every round, each variant is preceded by every other one about equally
 * often (a fixed or rotating order always puts the same variant before it, and the one before
 * leaves work behind: an HTTP exchange to finish, a process to tear down). Seeded, so a run can be
 * repeated in the same order.
 */
export function seededRandom(seed = 1) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A shuffled copy of `items` (Fisher–Yates) using `random`. */
export function shuffled(items, random) {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

export function round(x, digits = 2) {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** Percentile summary of a list of milliseconds. */
export function summarize(samples) {
  const a = [...samples].sort((x, y) => x - y);
  const p = (q) => (a.length === 0 ? Number.NaN : a[Math.min(a.length - 1, Math.floor(q * a.length))]);
  const mean = a.reduce((s, x) => s + x, 0) / (a.length || 1);
  return {
    n: a.length,
    min: round(a[0] ?? Number.NaN, 3),
    p50: round(p(0.5), 3),
    p90: round(p(0.9), 3),
    p99: round(p(0.99), 3),
    max: round(a[a.length - 1] ?? Number.NaN, 3),
    mean: round(mean, 3),
  };
}

/**
 * A goal line for the summary table. `kind`: "lower" (value < target), "atMost" (≤), "higher" (≥),
 * "equal".
 */
export function goal(name, value, target, unit, kind = "lower") {
  const ok = {
    lower: (v) => v < target,
    atMost: (v) => v <= target,
    higher: (v) => v >= target,
    equal: (v) => v === target,
  }[kind];
  const sign = { lower: "<", atMost: "≤", higher: "≥", equal: "=" }[kind];
  const met = Number.isFinite(value) ? ok(value) : false;
  return { goal: name, value: round(value, 3), target: `${sign} ${target}`, unit, met };
}

/** Runs `fn` and always runs the cleanups afterwards (in reverse order), even when fn throws. */
export async function withCleanup(fn) {
  const cleanups = [];
  try {
    return await fn((c) => cleanups.push(c));
  } finally {
    for (const c of cleanups.reverse()) {
      try {
        await c();
      } catch {
        // best effort
      }
    }
  }
}

/**
 * A minimal MCP SDK Transport over the daemon socket (newline-delimited JSON, `loxmcp/hello`
 * first, as a shim sends it). Used to split the overhead into "daemon" and "shim hop".
 */
export class SocketTransport {
  constructor(socketPath, name = "bench-socket") {
    this.socketPath = socketPath;
    this.name = name;
    this.decoder = new LineDecoder();
  }
  async start() {
    this.socket = await new Promise((resolvePromise, reject) => {
      const s = connect(this.socketPath);
      s.once("connect", () => resolvePromise(s));
      s.once("error", reject);
    });
    this.socket.on("data", (chunk) => {
      for (const line of this.decoder.push(chunk).lines) {
        try {
          this.onmessage?.(JSON.parse(line));
        } catch (e) {
          this.onerror?.(e);
        }
      }
    });
    this.socket.on("close", () => this.onclose?.());
    this.socket.on("error", (e) => this.onerror?.(e));
    this.socket.write(
      encodeFrame({
        jsonrpc: "2.0",
        method: "loxmcp/hello",
        params: { kind: "shim", name: this.name, pid: process.pid, ppid: process.ppid, version: "0.1.0" },
      }),
    );
  }
  send(message) {
    return new Promise((resolvePromise, reject) =>
      this.socket.write(encodeFrame(message), (e) => (e ? reject(e) : resolvePromise())),
    );
  }
  async close() {
    this.socket?.destroy();
  }
}

export async function connectSocket(socketPath, name = "bench-socket") {
  const client = new Client({ name, version: "1.0.0" });
  await client.connect(new SocketTransport(socketPath, name));
  return { client, close: () => client.close() };
}

/**
 * The set-up every benchmark shares: a simulator process, a temp LOXMCP_HOME, and a daemon logged
 * in and ready against it. Each part is registered with `defer` for clean-up.
 */
export async function startRig(defer) {
  const sim = await startSim();
  defer(() => sim.stop());
  const h = makeHome();
  defer(() => h.cleanup());
  const env = simEnv(sim, h.home);
  const daemon = spawnDaemon(env);
  defer(() => daemon.stop());
  await daemon.waitReady();
  return { sim, h, env, daemon };
}

/**
 * The direct SDK client every comparison starts from: a headless login to the simulator, then an
 * MCP session straight to its relay (closed by `defer`).
 */
export async function connectDirect(sim, defer) {
  const direct = await connectUpstream({
    connectUrl: sim.connectUrl,
    serial: sim.serial,
    user: sim.user,
    password: sim.password,
  });
  defer(() => direct.client.close());
  return direct;
}
