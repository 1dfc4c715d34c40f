/**
 * Load generation and bookkeeping for the chaos tests (owned by the benchmark/chaos engineer).
 *
 * - `ResponseLedger` wraps a connected SDK transport and counts, per JSON-RPC id, the requests sent
 *   and the responses received, so a test can prove "every request got exactly one response".
 * - `LoadGenerator` keeps several SDK Clients busy with reads and unique writes until stopped and
 *   records every outcome.
 * - `checkExecutions` compares the simulator's execution log with what the clients were told.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { HouseSnapshot, SimulatorOptions, SimulatorStats } from "@loxmcp/simulator";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { type DaemonProcess, spawnDaemon } from "./daemon.js";
import { makeHome, type TempHome } from "./home.js";
import { type SimHandle, withSimulator } from "./sim.js";
import { SocketClientTransport } from "./socket-client.js";
import { waitFor } from "./wait.js";

type Id = string | number;

/** Counts requests sent and responses received per id on one transport (install after connect). */
export class ResponseLedger {
  readonly sent = new Map<Id, string>();
  readonly responses = new Map<Id, number>();
  /** Responses whose id was never sent. */
  readonly unknown: unknown[] = [];

  constructor(transport: Transport) {
    const origSend = transport.send.bind(transport);
    transport.send = (m: JSONRPCMessage, opts?: Parameters<Transport["send"]>[1]) => {
      const r = m as { id?: Id; method?: string };
      if (r.method !== undefined && r.id !== undefined && r.id !== null) this.sent.set(r.id, r.method);
      return origSend(m, opts);
    };
    const origOnMessage = transport.onmessage;
    transport.onmessage = (m: JSONRPCMessage, extra?: unknown) => {
      const r = m as { id?: Id; method?: string; result?: unknown; error?: unknown };
      if (r.method === undefined && r.id !== undefined && r.id !== null && ("result" in r || "error" in r)) {
        if (!this.sent.has(r.id)) this.unknown.push(m);
        this.responses.set(r.id, (this.responses.get(r.id) ?? 0) + 1);
      }
      (origOnMessage as ((m: JSONRPCMessage, extra?: unknown) => void) | undefined)?.(m, extra);
    };
  }

  /** Ids sent without exactly one response (empty when every request got exactly one). */
  problems(): string[] {
    const out: string[] = [];
    for (const [id, method] of this.sent) {
      const n = this.responses.get(id) ?? 0;
      if (n !== 1) out.push(`${method} id=${String(id)}: ${n} responses`);
    }
    for (const u of this.unknown) out.push(`response for an unknown id: ${JSON.stringify(u).slice(0, 200)}`);
    return out;
  }
}

export interface WriteArgs {
  uuid: string;
  command: string;
}

export interface CallRecord {
  client: number;
  kind: "read" | "write";
  args: Record<string, unknown>;
  /** ok: a normal result; tool-error: result with isError; rpc-error: JSON-RPC error / transport failure. */
  outcome: "ok" | "tool-error" | "rpc-error";
  message?: string;
  endedAt: number;
}

/** Unique write arguments: `changeTo/<n>` on the house's LightControllerV2 controls (T1, never rate limited). */
export function uniqueWrites(house: HouseSnapshot): () => WriteArgs {
  const lights = house.controls.filter((c) => c.type === "LightControllerV2").map((c) => c.uuid);
  if (lights.length === 0) throw new Error("simulator house has no LightControllerV2");
  let n = 0;
  return () => {
    const i = n++;
    const value = Math.floor(i / lights.length);
    if (value > 777) throw new Error("ran out of unique light writes");
    return { uuid: lights[i % lights.length] as string, command: `changeTo/${value}` };
  };
}

export interface LoadOptions {
  readTool: string;
  readArgs?: Record<string, unknown>;
  writeTool: string;
  nextWrite: () => WriteArgs;
  /** Every n-th call of a client is a write (default 2: alternate). */
  writeEvery?: number;
  /** Per-request timeout (a request that never gets an answer fails the test). */
  timeoutMs?: number;
}

/** Keeps every client busy, one request in flight per client, until `stop()`. */
export class LoadGenerator {
  readonly records: CallRecord[] = [];
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly clients: Client[],
    private readonly opts: LoadOptions,
  ) {}

  start(): void {
    this.running = true;
    this.loops = this.clients.map((c, i) => this.loop(c, i));
  }

  /** Stops issuing new requests and waits for the ones in flight to settle. */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  private async loop(client: Client, index: number): Promise<void> {
    const every = this.opts.writeEvery ?? 2;
    let k = 0;
    while (this.running) {
      const write = ++k % every === 0;
      const args: Record<string, unknown> = write
        ? { ...this.opts.nextWrite() }
        : { ...(this.opts.readArgs ?? {}) };
      const name = write ? this.opts.writeTool : this.opts.readTool;
      try {
        const r = await client.callTool({ name, arguments: args }, undefined, {
          timeout: this.opts.timeoutMs ?? 30_000,
        });
        const text = JSON.stringify(r.content ?? "").slice(0, 300);
        this.records.push({
          client: index,
          kind: write ? "write" : "read",
          args,
          outcome: r.isError ? "tool-error" : "ok",
          ...(r.isError ? { message: text } : {}),
          endedAt: Date.now(),
        });
      } catch (e) {
        this.records.push({
          client: index,
          kind: write ? "write" : "read",
          args,
          outcome: "rpc-error",
          message: (e as Error).message,
          endedAt: Date.now(),
        });
        // A client that lost its connection would spin: give the others a turn.
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  /** Successful reads that ended after `since` (epoch ms). */
  okReadsSince(since: number): number {
    return this.records.filter((r) => r.kind === "read" && r.outcome === "ok" && r.endedAt > since).length;
  }

  /** Successful calls (read or write) per client that ended after `since`. */
  okPerClientSince(since: number): number[] {
    return this.clients.map(
      (_, i) => this.records.filter((r) => r.client === i && r.outcome === "ok" && r.endedAt > since).length,
    );
  }

  /**
   * Waits until every client succeeded again (2 calls each) and 8 reads went through after now,
   * i.e. the daemon recovered from `what`; the deadline error lists the outcomes so far.
   */
  async waitRecovered(what: string, timeoutMs = 20_000): Promise<void> {
    const since = Date.now();
    await waitFor(() => this.okPerClientSince(since).every((n) => n >= 2) && this.okReadsSince(since) >= 8, {
      timeoutMs,
      what: `every client to succeed again after ${what} (outcomes so far ${JSON.stringify(outcomeSummary(this.records))})`,
    });
  }
}

/**
 * Compares the simulator's execution log with the write outcomes:
 * no write ran more than once, and every write that got a success ran exactly once.
 * Returns human-readable violations (empty = fine).
 */
export function checkExecutions(stats: SimulatorStats, writeTool: string, records: CallRecord[]): string[] {
  const key = (a: unknown) => {
    const o = a as Partial<WriteArgs>;
    return `${String(o.uuid)}|${String(o.command)}`;
  };
  const counts = new Map<string, number>();
  for (const e of stats.executions) {
    if (e.tool !== writeTool) continue;
    counts.set(key(e.arguments), (counts.get(key(e.arguments)) ?? 0) + e.count);
  }
  const out: string[] = [];
  for (const [k, n] of counts) if (n > 1) out.push(`write ${k} executed ${n} times`);
  for (const r of records) {
    if (r.kind !== "write") continue;
    const n = counts.get(key(r.args)) ?? 0;
    if (r.outcome === "ok" && n !== 1) out.push(`write ${key(r.args)} answered ok but executed ${n} times`);
  }
  return out;
}

/** Groups outcomes for a readable assertion message. */
export function outcomeSummary(records: CallRecord[]): Record<string, number> {
  const s: Record<string, number> = {};
  for (const r of records) s[`${r.kind}:${r.outcome}`] = (s[`${r.kind}:${r.outcome}`] ?? 0) + 1;
  return s;
}

/**
 * Writes `<home>/config/config.json` for chaos runs: policy `full` and rate limits lifted, so a
 * steady stream of unique writes is allowed and every refusal seen is a fault, not the policy.
 */
export function writeChaosConfig(home: string, extra: Record<string, unknown> = {}): void {
  const dir = join(home, "config");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(
    join(dir, "config.json"),
    JSON.stringify({
      policy: {
        mode: "full",
        rateLimits: { motorPerMinute: 600, reversalCooldownMs: 0, globalPerMinute: 10_000 },
      },
      ...extra,
    }),
    { mode: 0o600 },
  );
}

export interface ChaosRig {
  home: TempHome;
  sim: SimHandle;
  daemon: DaemonProcess;
  env: Record<string, string>;
  clients: Client[];
  ledgers: ResponseLedger[];
  readTool: string;
  writeTool: string;
  /** Index in sim.relayUrls of the relay the daemon currently talks to (by port), or -1. */
  relayInUse(): Promise<number>;
  /** Connects one more SDK Client over the socket (with a ledger). */
  addClient(name: string): Promise<Client>;
  close(): Promise<void>;
}

/**
 * Simulator + real daemon (policy full, rate limits lifted, 1 s pings) + `clients` SDK Clients on
 * the daemon socket, each with a ResponseLedger. Always `close()` it.
 */
export async function startChaosRig(
  clients: number,
  opts: { simOptions?: SimulatorOptions; env?: Record<string, string> } = {},
): Promise<ChaosRig> {
  const home = makeHome();
  const sim = await withSimulator({ connectRateLimit: 10_000, ...(opts.simOptions ?? {}) });
  writeChaosConfig(home.home);
  const env = sim.env(home.home, {
    LOXMCP_PING_INTERVAL: "1",
    LOXMCP_LOG_LEVEL: "debug",
    ...(opts.env ?? {}),
  });
  const daemon = spawnDaemon(env);
  const list: Client[] = [];
  const ledgers: ResponseLedger[] = [];
  const rig: ChaosRig = {
    home,
    sim,
    daemon,
    env,
    clients: list,
    ledgers,
    readTool: "system_status",
    writeTool: "control_command",
    async relayInUse() {
      const st = await daemon.status();
      if (!st.entry) return -1;
      const port = new URL(st.entry).port;
      return sim.sim.relayUrls.findIndex((u) => new URL(u).port === port);
    },
    async addClient(name: string) {
      const c = new Client({ name, version: "1.0.0" });
      const t = new SocketClientTransport(daemon.socketPath, { name });
      await c.connect(t);
      ledgers.push(new ResponseLedger(t));
      list.push(c);
      return c;
    },
    async close() {
      await Promise.allSettled(list.map((c) => c.close()));
      await daemon.stop().catch(() => daemon.kill9());
      await sim.stop();
      home.cleanup();
    },
  };
  try {
    await daemon.waitReady(30_000);
    for (let i = 0; i < clients; i++) await rig.addClient(`chaos-${i}`);
  } catch (e) {
    await rig.close();
    throw e;
  }
  return rig;
}
