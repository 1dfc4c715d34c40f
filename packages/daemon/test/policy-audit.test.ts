/**
 * Audit storage on a real SQLite file: retention pruning, filters, and the durability rule —
 * a write's row is in the database BEFORE it is sent (outcome "sent", then its answer); reads are
 * batched briefly. A database that refuses writes (here: `PRAGMA query_only`, SQLite's read-only
 * error) refuses every write before it is sent, lets reads through, still stops the motors on an
 * emergency stop, and recovers by itself.
 */
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { waitFor } from "../../../test-support/wait.js";
import { type CallContext, type CallToolResult, type ForwardCall, makePrincipal } from "../src/contracts.js";
import { createPolicyGate, type PolicyGate } from "../src/policy/index.js";
import { AuditStore } from "../src/store/audit.js";
import { type Database, openDatabase } from "../src/store/db.js";
import { healthOf } from "../src/store/health.js";
import { connectSimUpstream, type SimUpstream, simPolicyPort } from "./sim-upstream.js";

let home: TempHome;
let db: Database;

beforeEach(() => {
  home = makeHome();
  db = openDatabase(`${home.home}/a.db`);
});
afterEach(() => {
  db.close();
  home.cleanup();
});

const base = {
  client: "Claude",
  tool: "control_find",
  args: {},
  kind: "read" as const,
  outcome: "ok",
  latencyMs: 2,
};

describe("AuditStore", () => {
  it("prunes events older than the retention and filters by since / client / denied / limit", () => {
    const a = new AuditStore(db);
    const now = Date.UTC(2026, 10, 23);
    a.record({ ...base, ts: now - 91 * 86_400_000, decision: "allowed" });
    a.record({ ...base, ts: now - 10 * 86_400_000, decision: "denied", client: "Cursor" });
    a.record({ ...base, ts: now - 1000, decision: "rate-limited" });
    a.recordMany([
      { ...base, ts: now, decision: "allowed" },
      { ...base, ts: now, decision: "emergency-stop", kind: "write" },
    ]);
    expect(a.prune(90, now)).toBe(1);
    expect(a.query({}).length).toBe(4);
    expect(a.query({ since: now - 5000 }).length).toBe(3);
    expect(a.query({ client: "cur" }).map((e) => e.decision)).toEqual(["denied"]);
    expect(a.query({ denied: true }).map((e) => e.decision)).toEqual([
      "denied",
      "rate-limited",
      "emergency-stop",
    ]);
    expect(a.query({ limit: 2 }).map((e) => e.decision)).toEqual(["allowed", "emergency-stop"]);
  });
});

describe("audit durability through the gate", () => {
  let s: SimHandle;
  let up: SimUpstream;
  let gate: PolicyGate | undefined;
  beforeAll(async () => {
    s = await withSimulator();
    up = await connectSimUpstream(s.sim);
  });
  afterAll(async () => {
    await up?.stop();
    await s?.stop();
  });
  afterEach(async () => {
    await gate?.stop();
  });

  it("a write is in SQLite before its answer returns; reads follow within the flush window", async () => {
    gate = createPolicyGate({
      upstream: simPolicyPort(up),
      db,
      logger: pino({ level: "silent" }),
      config: { mode: "full" },
    });
    gate.start();
    await gate.refreshStructure();
    const forward: ForwardCall = async (call, opts) =>
      (await up.request("tools/call", call, { retryable: opts.retryable })) as CallToolResult;
    const ctx: CallContext = {
      client: makePrincipal({ connId: "c1", name: "Claude", connectedAt: Date.now() }),
      supportsElicitation: false,
      elicit: async () => ({ action: "cancel" }),
    };
    const count = (kind: string) =>
      (db.prepare("SELECT count(*) AS n FROM audit_events WHERE kind = ?").get(kind) as { n: number }).n;
    await gate.callTool({ name: "system_status", arguments: {} }, ctx, forward);
    const light = s.sim.house().controls.find((c) => c.name === "Office Lights")!.uuid;
    await gate.callTool({ name: "control_command", arguments: { uuid: light, command: "on" } }, ctx, forward);
    expect(count("write")).toBe(1);
    expect(count("read")).toBe(1); // flushed together with the write, in order
    await gate.callTool({ name: "statistics", arguments: {} }, ctx, forward);
    await waitFor(() => count("read") === 2, { timeoutMs: 5_000, what: "batched read row" });
    const order = db.prepare("SELECT tool FROM audit_events ORDER BY id").all() as Array<{ tool: string }>;
    expect(order.map((r) => r.tool)).toEqual(["system_status", "control_command", "statistics"]);
  });

  const ctx: CallContext = {
    client: makePrincipal({ connId: "c1", name: "Claude", connectedAt: Date.now() }),
    supportsElicitation: false,
    elicit: async () => ({ action: "cancel" }),
  };
  const realForward: ForwardCall = async (call, opts) =>
    (await up.request("tools/call", call, { retryable: opts.retryable })) as CallToolResult;
  const writeRows = () =>
    db
      .prepare(
        "SELECT id, tool, outcome, reason, latency_ms FROM audit_events WHERE kind = 'write' ORDER BY id",
      )
      .all() as Array<{
      id: number;
      tool: string;
      outcome: string;
      reason: string | null;
      latency_ms: number;
    }>;
  const executions = () =>
    s.sim
      .stats()
      .executions.filter((e) => e.tool === "control_command")
      .reduce((a, e) => a + e.count, 0);
  const text = (r: CallToolResult) => (r.content ?? []).map((c) => String(c.text ?? "")).join("\n");

  async function fullGate(): Promise<PolicyGate> {
    const g = createPolicyGate({
      upstream: simPolicyPort(up),
      db,
      logger: pino({ level: "silent" }),
      config: { mode: "full" },
    });
    gate = g;
    g.start();
    await g.refreshStructure();
    return g;
  }

  it('the write\'s row is committed with outcome "sent" before the request leaves, then gets its answer', async () => {
    const g = await fullGate();
    const light = s.sim.house().controls.find((c) => c.name === "Kitchen Lights")!.uuid;
    const seen: Array<{ outcome: string }> = [];
    const forward: ForwardCall = async (call, opts) => {
      // What a second connection (a crash right now) would find in the file.
      const other = new (await import("better-sqlite3")).default(`${home.home}/a.db`, { readonly: true });
      try {
        seen.push(
          ...(other.prepare("SELECT outcome FROM audit_events WHERE kind = 'write'").all() as Array<{
            outcome: string;
          }>),
        );
      } finally {
        other.close();
      }
      return realForward(call, opts);
    };
    const res = await g.callTool(
      { name: "control_command", arguments: { uuid: light, command: "on" } },
      ctx,
      forward,
    );
    expect(res.isError).toBeFalsy();
    expect(seen).toEqual([{ outcome: "sent" }]);
    await waitFor(() => writeRows()[0]?.outcome === "ok", {
      timeoutMs: 5_000,
      what: "the answer on the row",
    });

    // A dead daemon leaves "sent" rows: the next gate on the same file marks them unknown.
    db.prepare("UPDATE audit_events SET outcome = 'sent' WHERE kind = 'write'").run();
    await g.stop();
    gate = await fullGate();
    expect(writeRows()[0]).toMatchObject({ outcome: "unknown" });
    expect(writeRows()[0]?.reason).toMatch(/daemon stopped before the answer came/);
  });

  it("a database that refuses writes: nothing is sent, reads pass, the emergency stop still stops, and it recovers", async () => {
    const g = await fullGate();
    const light = s.sim.house().controls.find((c) => c.name === "Office Lights")!.uuid;
    s.sim.resetStats();
    db.pragma("query_only = 1");
    const refused = await g.callTool(
      { name: "control_command", arguments: { uuid: light, command: "on" } },
      ctx,
      realForward,
    );
    expect(refused.isError).toBe(true);
    expect(text(refused)).toMatch(
      /nothing was sent: the audit cannot be written — read-only \(SQLITE_READONLY/,
    );
    expect(executions()).toBe(0);
    const read = await g.callTool({ name: "system_status", arguments: {} }, ctx, realForward);
    expect(read.isError).toBeFalsy();
    expect(healthOf(db).problem).toMatchObject({ cause: "read-only" });

    // Stopping never waits for the disk: motors are stopped, the stop holds (in memory).
    const stop = await g.callTool({ name: "loxmcp_emergency_stop", arguments: {} }, ctx, realForward);
    expect(text(stop)).toMatch(/could not be stored/);
    expect(
      s.sim.stats().executions.some((e) => (e.arguments as { command?: string }).command === "stop"),
    ).toBe(true);
    expect(g.status().emergencyStop?.active).toBe(true);

    // Writable again: the stop is stored, queued rows (refusal, read, stops) follow.
    db.pragma("query_only = 0");
    expect(g.status().emergencyStop?.active).toBe(true);
    expect(db.prepare("SELECT count(*) AS n FROM policy_state WHERE key = 'emergencyStop'").get()).toEqual({
      n: 1,
    });
    await waitFor(
      () =>
        (
          db
            .prepare("SELECT count(*) AS n FROM audit_events WHERE reason LIKE '%audit cannot be written%'")
            .get() as {
            n: number;
          }
        ).n === 1,
      { timeoutMs: 5_000, what: "the refusal to be stored once the database takes writes" },
    );
    const stops = db
      .prepare("SELECT outcome FROM audit_events WHERE kind = 'write' AND command = 'stop'")
      .all() as Array<{ outcome: string }>;
    expect(stops.length).toBeGreaterThan(0);
    expect(stops.every((r) => r.outcome === "ok")).toBe(true);
    expect(healthOf(db).ok).toBe(true);
  });
});
