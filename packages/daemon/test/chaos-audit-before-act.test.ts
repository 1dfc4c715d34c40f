/**
 * Audit before act, through the real daemon: a write's audit row is committed to SQLite before the
 * request leaves the daemon. With the relay answering only after 1.5 s, a burst of 25 writes from
 * MCP clients is in flight when the daemon is (a) SIGKILLed, or (b) SIGSTOPped (the relay still
 * executes what it got) and then SIGKILLed. Afterwards — the daemon dead, the SQLite file opened
 * read-only — every write the simulator executed has its row (executed writes == rows of sent
 * writes), and a restarted daemon reports those rows as outcome "unknown".
 */
import { existsSync } from "node:fs";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { uniqueWrites, writeChaosConfig } from "../../../test-support/chaos.js";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { controlCall, SocketClientTransport } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";

const WRITES = 25;
const CLIENTS = 5;
const LATENCY_MS = 1_500;
const WRITE_TOOL = "control_command";

// biome-ignore lint/suspicious/noExplicitAny: loose JSON from control methods and SQLite rows
type J = Record<string, any>;

let home: TempHome | undefined;
let sim: SimHandle | undefined;
const daemons: DaemonProcess[] = [];
const clients: Client[] = [];

afterEach(async () => {
  await Promise.allSettled(clients.splice(0).map((c) => c.close()));
  for (const d of daemons.splice(0)) {
    try {
      process.kill(d.pid, "SIGCONT");
    } catch {
      // gone
    }
    await d.stop().catch(() => d.kill9());
  }
  await sim?.stop();
  sim = undefined;
  home?.cleanup();
  home = undefined;
});

const key = (a: unknown) => {
  const o = a as { uuid?: unknown; command?: unknown };
  return `${String(o.uuid)}|${String(o.command)}`;
};

function executed(s: SimHandle): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of s.sim.stats().executions) {
    if (e.tool === WRITE_TOOL) out.set(key(e.arguments), (out.get(key(e.arguments)) ?? 0) + e.count);
  }
  return out;
}

/** The write rows in the file, read while (or after) nobody writes it. */
function auditRows(dbPath: string): Array<{ id: number; key: string; outcome: string; decision: string }> {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const rows = db
      .prepare("SELECT id, args, outcome, decision FROM audit_events WHERE tool = ? AND kind = 'write'")
      .all(WRITE_TOOL) as Array<{ id: number; args: string; outcome: string; decision: string }>;
    return rows.map((r) => ({
      id: r.id,
      key: key(JSON.parse(r.args)),
      outcome: r.outcome,
      decision: r.decision,
    }));
  } finally {
    db.close();
  }
}

/** Waits until the simulator has executed nothing new for longer than its latency. */
async function executionsSettled(s: SimHandle): Promise<Map<string, number>> {
  let last = -1;
  let since = Date.now();
  await waitFor(
    () => {
      const n = [...executed(s).values()].reduce((a, b) => a + b, 0);
      if (n !== last) {
        last = n;
        since = Date.now();
      }
      return Date.now() - since > LATENCY_MS + 700;
    },
    { timeoutMs: 20_000, intervalMs: 100, what: "the simulator to finish the requests it got" },
  );
  return executed(s);
}

async function burstAndKill(variant: "SIGKILL" | "SIGSTOP+SIGKILL") {
  home = makeHome();
  sim = await withSimulator({ connectRateLimit: 10_000 });
  // SIGSTOP run: enough relay slots for the whole burst to be on the wire at once (by default
  // the daemon sends 8 at a time and queues the rest: stored, but not yet sent when it dies).
  writeChaosConfig(home.home, variant === "SIGKILL" ? {} : { limits: { upstreamConcurrency: 32 } });
  const env = sim.env(home.home, { LOXMCP_PING_INTERVAL: "30" });
  const d = spawnDaemon(env);
  daemons.push(d);
  await d.waitReady(30_000);
  await d.waitStatus(
    (st) => Boolean((st.policy as J | undefined)?.structure),
    20_000,
    "a structure snapshot",
  );
  for (let i = 0; i < CLIENTS; i++) {
    const c = new Client({ name: `burst-${i}`, version: "1.0.0" });
    await c.connect(new SocketClientTransport(d.socketPath, { name: `burst-${i}` }));
    clients.push(c);
  }
  const s = sim;
  s.sim.resetStats();
  s.sim.setFaults({ latencyMs: LATENCY_MS });
  const next = uniqueWrites(s.sim.house());
  const calls = Array.from({ length: WRITES }, (_, i) => {
    const args = next();
    return (clients[i % CLIENTS] as Client)
      .callTool({ name: WRITE_TOOL, arguments: { ...args } }, undefined, { timeout: 30_000 })
      .then(
        (r) => ({ args, ok: !r.isError }),
        () => ({ args, ok: false }),
      );
  });

  // Every write of the burst is stored as "sent" (in ~1 s: an fsync each, on a 2-core machine)
  // while the relay sits on those it got.
  await waitFor(() => auditRows(d.paths.db).filter((r) => r.outcome === "sent").length === WRITES, {
    timeoutMs: 10_000,
    intervalMs: 20,
    what: `${WRITES} write rows with outcome "sent"`,
  });

  if (variant === "SIGKILL") {
    // Kill as the relay starts executing: some writes ran, their answers are on the way or just
    // arrived (recorded in a batch a few ms later); the rest are dropped by the relay.
    await waitFor(() => executed(s).size > 0, {
      timeoutMs: 10_000,
      intervalMs: 5,
      what: "the relay to start executing",
    });
    await d.kill9();
  } else {
    await waitFor(() => s.sim.stats().mcpRequests >= WRITES, {
      timeoutMs: 10_000,
      intervalMs: 10,
      what: `the ${WRITES} writes to reach the relay`,
    });
    expect(executed(s).size, "nothing executed yet (the relay is slow)").toBe(0);
    process.kill(d.pid, "SIGSTOP");
    // Frozen, the daemon can neither record nor send anything; the relay executes what it got.
    await waitFor(() => executed(s).size === WRITES, {
      timeoutMs: 10_000,
      what: "the relay to execute every write of the frozen daemon",
    });
    process.kill(d.pid, "SIGKILL");
    await d.exited;
  }
  const answers = await Promise.all(calls);
  const ran = await executionsSettled(s);
  const rows = auditRows(d.paths.db);
  const sentRows = rows.filter((r) => r.outcome === "sent");
  const audited = new Map(rows.map((r) => [r.key, r]));
  const missing = [...ran.keys()].filter((k) => !audited.has(k));
  const executedStillSent = [...ran.keys()].filter((k) => audited.get(k)?.outcome === "sent").length;
  console.info(
    `${variant}: ${ran.size} writes executed (${executedStillSent} of them with the answer not recorded before the kill), ${rows.length} write rows (${sentRows.length} "sent"), ${answers.filter((a) => a.ok).length} answered ok`,
  );
  expect(missing, "writes executed without an audit row").toEqual([]);
  expect(
    [...ran.values()].every((n) => n === 1),
    "no write ran twice",
  ).toBe(true);
  expect(rows.length, "one row per write of the burst").toBe(WRITES);
  expect(
    rows.filter((r) => r.outcome === "ok" && !ran.has(r.key)),
    "a row says ok only for a write that ran",
  ).toEqual([]);
  if (variant === "SIGSTOP+SIGKILL") {
    // Nothing could be recorded after the stop: every executed write is a "sent" row, and every
    // "sent" row (each reached the relay) was executed.
    expect(ran.size).toBe(WRITES);
    expect(new Set(sentRows.map((r) => r.key)), "executed writes == rows of sent writes").toEqual(
      new Set(ran.keys()),
    );
    expect(
      answers.filter((a) => a.ok),
      "no client was told a write succeeded",
    ).toEqual([]);
  }
  return { env, sentRows };
}

describe("audit before act: every write the relay executed has its row, whatever kills the daemon", () => {
  it("SIGKILL during a burst of slow writes; the next start marks the unanswered rows unknown", async () => {
    const { env, sentRows } = await burstAndKill("SIGKILL");
    // A new daemon takes over (the dead one's lock is stale) and settles the unanswered rows.
    sim?.sim.setFaults({ latencyMs: 0 });
    const again = spawnDaemon(env);
    daemons.push(again);
    await again.waitReady(30_000);
    const { events } = (await controlCall(again.socketPath, "loxmcp/audit", { limit: 1000 })) as {
      events: J[];
    };
    const byId = new Map(events.map((e) => [e.id as number, e]));
    for (const r of sentRows) {
      expect(byId.get(r.id), `row ${r.id}`).toMatchObject({ outcome: "unknown", decision: "allowed" });
      expect(String(byId.get(r.id)?.reason)).toMatch(/daemon stopped before the answer came/);
    }
    await again.stop();
    expect(existsSync(`${again.paths.state}/daemon.lock`), "lock removed on stop").toBe(false);
  });

  it("SIGSTOP, the relay executes, then SIGKILL", async () => {
    await burstAndKill("SIGSTOP+SIGKILL");
  });
});
