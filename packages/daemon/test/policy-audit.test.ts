/**
 * Audit storage on a real SQLite file: retention pruning, filters, and the durability rule —
 * a write's row is in the database before its answer goes out; reads are batched briefly.
 */
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { connectSimUpstream, type SimUpstream } from "../../../test-support/sim-upstream.js";
import { waitFor } from "../../../test-support/wait.js";
import type { CallContext, CallToolResult, ForwardCall } from "../src/contracts.js";
import { createPolicyGate, type PolicyGate } from "../src/policy/index.js";
import { AuditStore } from "../src/store/audit.js";
import { type Database, openDatabase } from "../src/store/db.js";

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
      upstream: up,
      db,
      logger: pino({ level: "silent" }),
      config: { mode: "full" },
    });
    gate.start();
    await gate.refreshStructure();
    const forward: ForwardCall = async (call, opts) =>
      (await up.request("tools/call", call, { retryable: opts.retryable })) as CallToolResult;
    const ctx: CallContext = {
      client: { connId: "c1", name: "Claude", connectedAt: Date.now() },
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
});
