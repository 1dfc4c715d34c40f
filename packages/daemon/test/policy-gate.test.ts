/**
 * The policy gate against the REAL simulator (real HTTP, OAuth login, SDK MCP session) and a
 * real SQLite file: every safety rule, proven by what reached the simulator's execution log.
 */
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import {
  type CallContext,
  type CallToolResult,
  type ControlContext,
  type ControlHandler,
  type ControlRegistry,
  type ForwardCall,
  makePrincipal,
} from "../src/contracts.js";
import { createPolicyGate, type PolicyConfigInput, type PolicyGate } from "../src/policy/index.js";
import { type Database, openDatabase } from "../src/store/db.js";
import { connectSimUpstream, type SimUpstream, simPolicyPort } from "./sim-upstream.js";

/** Loose JSON from control-method results. */
// biome-ignore lint/suspicious/noExplicitAny: test assertions on JSON results
type J = any;

let s: SimHandle;
let up: SimUpstream;
let home: TempHome;
let db: Database;
let gate: PolicyGate | undefined;
let handlers: Map<string, ControlHandler>;

/** The forwards the policy asked the wiring for, for calls of its own (stop-all). */
let ownForwards: Array<{ holder: string; signal: AbortSignal }> = [];

const logger = pino({ level: "silent" });
const forward: ForwardCall = async (call, opts) =>
  (await up.request("tools/call", call, { retryable: opts.retryable })) as CallToolResult;

function uuidOf(name: string): string {
  const c = s.sim.house().controls.find((x) => x.name === name);
  if (!c) throw new Error(`no control ${name}`);
  return c.uuid;
}

function state(name: string): Record<string, unknown> {
  return s.sim.house().controls.find((x) => x.name === name)?.states ?? {};
}

function commandsSent(): Array<{ arguments: unknown; count: number }> {
  return s.sim.stats().executions.filter((e) => e.tool === "control_command");
}

function ctx(
  name = "Claude",
  elicit?: (
    msg: string,
  ) => Promise<{ action: "accept" | "decline" | "cancel"; content?: Record<string, unknown> }>,
): CallContext {
  return {
    // An MCP client through a shim started with `--name <name>`: rules match that name.
    client: makePrincipal({
      connId: "c1",
      name,
      ruleName: name,
      role: "mcp",
      pid: 4242,
      connectedAt: Date.now(),
    }),
    supportsElicitation: elicit !== undefined,
    elicit: async (message) => {
      if (!elicit) throw new Error("no elicitation");
      return elicit(message);
    },
  };
}

const cli: ControlContext = {
  client: makePrincipal({ connId: "c9", name: "loxmcp-cli", role: "control", connectedAt: Date.now() }),
};

/** The approval code a held call's answer carries (text and _meta). */
function codeOf(r: CallToolResult): string {
  const meta = (r._meta as J)?.["loxmcp/policy"];
  const m = /code ([A-Z0-9]{6}) is waiting/.exec(text(r));
  expect(m?.[1]).toBe(meta?.approvalCode);
  return m?.[1] ?? "";
}

async function control(method: string, params: Record<string, unknown> = {}): Promise<J> {
  const h = handlers.get(method);
  if (!h) throw new Error(`${method} not registered`);
  return h(params, cli);
}

async function makeGate(config: PolicyConfigInput = {}): Promise<PolicyGate> {
  ownForwards = [];
  const port = simPolicyPort(up, (holder, signal) => ownForwards.push({ holder, signal }));
  gate = createPolicyGate({ upstream: port, db, logger, config: { mode: "confirm", ...config } });
  handlers = new Map();
  const registry: ControlRegistry = { register: (m, h) => handlers.set(m, h) };
  gate.register(registry);
  gate.start();
  await gate.refreshStructure();
  s.sim.resetStats();
  return gate;
}

async function cmd(
  g: PolicyGate,
  uuid: string,
  command: string,
  c: CallContext = ctx(),
): Promise<CallToolResult> {
  return g.callTool({ name: "control_command", arguments: { uuid, command } }, c, forward);
}

function text(r: CallToolResult): string {
  return r.content.map((c) => String(c.text ?? "")).join("\n");
}

beforeAll(async () => {
  s = await withSimulator();
  up = await connectSimUpstream(s.sim);
});

afterAll(async () => {
  await up?.stop();
  await s?.stop();
});

beforeEach(() => {
  home = makeHome();
  db = openDatabase(`${home.home}/t.db`);
  up.setState("ready");
});

afterEach(async () => {
  await gate?.stop();
  gate = undefined;
  db.close();
  home.cleanup();
  // Tools a test added to the simulator (a "firmware update") are gone for the next one, and the
  // list is cached again (a fault a later test sets must hit what it means to, not tools/list).
  if (toolsChanged) {
    toolsChanged = false;
    s.sim.resetTools();
    up.reloadTools();
    await up.listTools();
  }
});

let toolsChanged = false;
function changeTools(change: Parameters<SimHandle["sim"]["changeTools"]>[0]): void {
  toolsChanged = true;
  s.sim.changeTools(change);
  up.reloadTools();
}

/** Adds tools to the simulator's tools/list before the gate first sees it (so they are trusted). */
function offerTools(...names: string[]): void {
  // No arguments and no target: the daemon cannot check what such a write would touch.
  changeTools({
    add: names.map((name) => ({ name, annotations: { readOnlyHint: false, destructiveHint: true } })),
  });
}

describe("policy gate", () => {
  it("reads pass and are audited; a T1 write runs once and returns the Miniserver's answer", async () => {
    const g = await makeGate();
    const found = await g.callTool({ name: "control_find", arguments: { query: "kitchen" } }, ctx(), forward);
    expect(found.isError).toBeFalsy();
    expect(text(found)).toContain("Kitchen Lights");

    const res = await cmd(g, uuidOf("Kitchen Lights"), "on");
    expect(res.isError).toBeFalsy();
    expect(text(res)).toContain("jdev/sps/io/");
    expect(state("Kitchen Lights").on).toBe(true);
    expect(commandsSent()).toHaveLength(1);

    const { events } = await control("loxmcp/audit", {});
    const rows = events.filter((e: J) => e.kind !== "control");
    expect(rows.map((e: J) => [e.tool, e.kind, e.decision, e.outcome])).toEqual([
      ["control_find", "read", "allowed", "ok"],
      ["control_command", "write", "allowed", "ok"],
    ]);
    expect(rows[1]).toMatchObject({
      client: "Claude",
      clientPid: 4242,
      tier: "T1",
      controlName: "Kitchen Lights",
    });
  });

  it("rejects invalid uuids and commands before anything reaches the simulator", async () => {
    const g = await makeGate();
    const light = uuidOf("Kitchen Lights");
    const cases: Array<[string, string]> = [
      ["not-a-uuid", "on"],
      ["0b734138-037d-034e-ffff403fb0c34b9e", "on"], // well-formed but not in the house
      [light, "explode"],
      [light, "on; rm -rf /"],
      [light, "../../jdev/sys/reboot"],
      [light, "on\u0000"],
      [`${light}/../x`, "on"],
      [uuidOf("Living Room Blinds"), "manualPosition/150"],
      [uuidOf("Outdoor Temperature"), "on"],
    ];
    for (const [uuid, command] of cases) {
      const res = await cmd(g, uuid, command);
      expect(res.isError, `${uuid} ${command}`).toBe(true);
      expect(text(res)).toMatch(/^loxmcp policy:/);
    }
    expect(commandsSent()).toEqual([]);
    const { events } = await control("loxmcp/audit", { denied: true });
    expect(events).toHaveLength(cases.length);
    expect(events.every((e: J) => e.decision === "denied" && e.outcome === "not-sent")).toBe(true);
  });

  it("write tools whose target cannot be checked need a person in every mode; malformed targets are refused", async () => {
    offerTools("scripting"); // the Miniserver offers a scripting tool (seen in the field)
    const g = await makeGate({ mode: "full" });
    const wrongTypes = await g.callTool(
      { name: "control_command", arguments: { uuid: uuidOf("Burglar Alarm"), command: { verb: "off" } } },
      ctx(),
      forward,
    );
    expect(text(wrongTypes)).toMatch(/needs "uuid" \(a control uuid\) and "command"/);
    const unchecked = await g.callTool(
      { name: "scripting", arguments: { script: "open all doors" } },
      ctx(),
      forward,
    );
    expect(text(unchecked)).toMatch(
      /held for the person's approval.*scripting may write and its target cannot be checked/s,
    );
    expect(g.pendingApprovals().map((p) => p.tool)).toEqual(["scripting"]);
    expect(s.sim.stats().executions).toEqual([]);
  });

  it("a tool the Miniserver does not offer is refused as unknown, never held or asked about, in every mode", async () => {
    for (const mode of ["confirm", "full", "read-only"] as const) {
      const g = await makeGate({ mode });
      let asked = 0;
      const askingClient = ctx("Claude", async () => {
        asked++;
        return { action: "accept", content: { confirm: true } };
      });
      const r = await g.callTool({ name: "mystery_tool", arguments: { n: 1 } }, askingClient, forward);
      expect(r.isError).toBe(true);
      expect(text(r)).toMatch(/^loxmcp policy: unknown tool mystery_tool: the Miniserver does not offer it/);
      // A few real tools, so the AI can correct itself.
      expect(text(r)).toMatch(/control_find.*control_describe.*control_command.*loxmcp_emergency_stop/);
      expect((r._meta as J)["loxmcp/policy"]).toMatchObject({
        code: "UNKNOWN_TOOL",
        knownTools: expect.arrayContaining(["control_command"]),
      });
      expect(asked).toBe(0);
      expect(g.pendingApprovals()).toEqual([]);
      const { events } = await control("loxmcp/audit", { denied: true });
      expect(events.map((e: J) => [e.tool, e.decision, e.outcome])).toEqual([
        ["mystery_tool", "denied", "not-sent"],
      ]);
      await g.stop();
      db.close();
      home.cleanup();
      home = makeHome();
      db = openDatabase(`${home.home}/t.db`);
    }
    // A tool the Miniserver took off its list (firmware update) is unknown too, not a held write.
    const g = await makeGate();
    changeTools({ remove: ["weather_forecast"] });
    const gone = await g.callTool({ name: "weather_forecast", arguments: {} }, ctx(), forward);
    expect(text(gone)).toMatch(/unknown tool weather_forecast/);
    expect(g.pendingApprovals()).toEqual([]);
    expect(s.sim.stats().executions).toEqual([]);
  });

  it("a read-only client's tools/list has no write tools (but the emergency stop); others see everything", async () => {
    offerTools("scripting");
    const g = await makeGate({ mode: "confirm", clients: { cursor: "read-only" } });
    const all = [...(await up.listTools()).tools, ...g.extraTools()];
    const names = async (c: CallContext) => (await g.visibleTools(c.client, all)).map((t) => t.name);
    expect(await names(ctx("Claude"))).toEqual(all.map((t) => t.name));
    const ro = await names(ctx("cursor-vscode")); // prefix rule
    expect(ro).toEqual([
      "control_find",
      "control_describe",
      "system_status",
      "statistics",
      "weather_forecast",
      "loxmcp_emergency_stop",
    ]);
    // The rule follows the shim's --name, never the clientInfo name the client picked itself.
    const renamed = ctx("Claude");
    renamed.client.name = "cursor";
    expect(await names(renamed)).toContain("control_command");
    await g.stop();
    // Global read-only: only a client whose rule says otherwise sees the writes.
    const g2 = await makeGate({ mode: "read-only", clients: { "claude-code": "full" } });
    expect(await g2.visibleTools(ctx("zed").client, all)).toHaveLength(ro.length);
    expect((await g2.visibleTools(ctx("claude-code").client, all)).map((t) => t.name)).toContain("scripting");
  });

  it("accepts 8-4-4-4-12 uuids in form and sub-control suffixes of known controls", async () => {
    const g = await makeGate();
    const blinds = uuidOf("Office Blinds");
    const res = await cmd(g, blinds.toUpperCase(), "manualPosition/40");
    expect(res.isError).toBeFalsy();
    const unknownLong = await cmd(g, "0b734138-037d-034e-ffff-403fb0c34b9e", "on");
    expect(text(unknownLong)).toMatch(/no control with uuid/);
  });

  it("denies T4 actions in every mode (built-in smoke alarm and the configured list)", async () => {
    const smoke = s.sim.addControl({
      name: "Smoke Detector Hall",
      type: "SmokeAlarm",
      room: "Hallway",
      category: "Safety",
    });
    for (const mode of ["confirm", "full"] as const) {
      const g = await makeGate({ mode, t4: ["Alarm:quit"] });
      const r1 = await cmd(g, smoke, "mute");
      expect(text(r1)).toMatch(/never done by an AI/);
      const r2 = await cmd(
        g,
        uuidOf("Burglar Alarm"),
        "quit",
        ctx("Claude", async () => ({ action: "accept", content: { confirm: true } })),
      );
      expect(text(r2)).toMatch(/never done by an AI/);
      expect(commandsSent()).toEqual([]);
      const { events } = await control("loxmcp/audit", { denied: true });
      expect(events.filter((e: J) => e.tier === "T4")).toHaveLength(2);
      await g.stop();
      db.close();
      home.cleanup();
      home = makeHome();
      db = openDatabase(`${home.home}/t.db`);
    }
  });

  it("two-phase confirmation: only a code the PERSON approved lets the identical call run, once", async () => {
    const g = await makeGate();
    const alarm = uuidOf("Burglar Alarm");
    await cmd(g, alarm, "on", ctx()); // arming is T3 too: needs approval
    const first = await cmd(g, alarm, "off");
    expect(first.isError).toBe(true);
    const code = codeOf(first);
    expect(code).toHaveLength(6);
    // The AI is never told to run a command: it is told the person decides.
    expect(text(first)).not.toMatch(/loxmcp approve|run `/);
    expect(text(first)).toContain("Burglar Alarm");

    // The AI repeats the call, or stuffs the code into the arguments: nothing runs.
    const again = await cmd(g, alarm, "off");
    expect(text(again)).toContain(code);
    const stuffed = await g.callTool(
      { name: "control_command", arguments: { uuid: alarm, command: "off", code } },
      ctx(),
      forward,
    );
    expect(stuffed.isError).toBe(true);
    // Another client repeating the exact call cannot use Claude's approval either.
    expect(commandsSent()).toEqual([]);

    const listed = await control("loxmcp/approve", { list: true });
    expect(listed.pending.map((p: J) => p.code)).toContain(code);
    await expect(control("loxmcp/approve", { code: "ZZZZZZ", interactive: true })).rejects.toThrow(
      /no pending approval/,
    );
    const ok = await control("loxmcp/approve", { code: code?.toLowerCase(), interactive: true });
    expect(ok.approved.summary).toContain("Burglar Alarm");

    const other = await cmd(g, alarm, "off", ctx("Cursor"));
    expect(other.isError).toBe(true);
    expect(commandsSent()).toEqual([]);

    const run = await cmd(g, alarm, "off");
    expect(run.isError).toBeFalsy();
    expect(text(run)).toContain("read-back");
    expect(commandsSent()).toHaveLength(1);
    // The code is consumed: the next identical call needs a new approval.
    const next = await cmd(g, alarm, "off");
    expect(next.isError).toBe(true);
    expect(text(next)).not.toContain(code);
    expect(commandsSent()).toHaveLength(1);

    const { events } = await control("loxmcp/audit", { client: "claude" });
    expect(events.some((e: J) => e.decision === "confirmed" && e.outcome === "ok")).toBe(true);
    // Held calls wait for the person: "held", not "denied", with a short reason for the person —
    // what and why, not the instructions meant for the AI, and not the code.
    const held = events.filter((e: J) => e.decision === "held");
    expect(held.length).toBeGreaterThanOrEqual(3);
    expect(events.filter((e: J) => e.decision === "denied")).toEqual([]);
    for (const e of held) {
      expect(e.reason).toMatch(/Burglar Alarm.*\(security system mode change\)$/);
      expect(e.reason).not.toMatch(/Only the person|call this tool again|Do not try/);
      expect(e.reason).not.toContain(code);
      expect(e.reason.length).toBeLessThan(200);
    }
    // --denied means refusals; held calls have their own filter.
    const refused = await control("loxmcp/audit", { client: "claude", denied: true });
    expect(refused.events.some((e: J) => e.decision === "held")).toBe(false);
    const waiting = await control("loxmcp/audit", { client: "claude", held: true });
    expect(waiting.events.map((e: J) => e.decision)).toEqual(held.map(() => "held"));
    // The code the AI stuffed into the arguments is redacted in the audit.
    expect(JSON.stringify(events)).not.toContain(`"code":"${code}"`);
  });

  it("approve and resume need the person: a terminal without a PIN, the PIN once one is set", async () => {
    const g = await makeGate();
    const code = codeOf(await cmd(g, uuidOf("Burglar Alarm"), "off"));
    // Without a PIN: only the CLI at an interactive terminal (it says so) may approve.
    await expect(control("loxmcp/approve", { code })).rejects.toThrow(/interactive terminal/);
    expect(g.pendingApprovals()[0]?.approved).toBe(false);
    // Setting the first PIN needs the terminal too.
    await expect(control("loxmcp/pin", { action: "set", newPin: "482917" })).rejects.toThrow(/terminal/);
    await expect(
      control("loxmcp/pin", { action: "set", newPin: "123456", interactive: true }),
    ).rejects.toThrow(/consecutive/);
    await control("loxmcp/pin", { action: "set", newPin: "482917", interactive: true });
    expect(g.status().pin).toMatchObject({ set: true, failures: 0 });
    // The PIN is stored only as a salted scrypt hash.
    expect(JSON.stringify(db.prepare("SELECT * FROM person_pin").all())).not.toContain("482917");
    expect(String((db.prepare("SELECT pin_hash FROM person_pin").get() as J).pin_hash)).toMatch(/^scrypt\$/);
    // With a PIN: the terminal is not enough, a wrong PIN is refused and counted.
    await expect(control("loxmcp/approve", { code, interactive: true })).rejects.toThrow(
      /needs the approval PIN/,
    );
    await expect(control("loxmcp/approve", { code, pin: "000001" })).rejects.toThrow(/wrong PIN/);
    expect(g.status().pin.failures).toBe(1);
    expect(g.pendingApprovals()[0]?.approved).toBe(false);
    await control("loxmcp/approve", { code, pin: "482917" });
    expect(g.pendingApprovals()[0]?.approved).toBe(true);
    expect(g.status().pin.failures).toBe(0);
    // Changing or removing the PIN needs the old one.
    await expect(control("loxmcp/pin", { action: "remove", pin: "999999" })).rejects.toThrow(/wrong PIN/);
    await expect(
      control("loxmcp/pin", { action: "set", newPin: "771188", interactive: true }),
    ).rejects.toThrow(/needs the approval PIN/);
    const { events } = await control("loxmcp/audit", {});
    expect(events.filter((e: J) => /wrong PIN/.test(e.reason ?? "")).length).toBe(2);
    expect(JSON.stringify(events)).not.toContain("482917");
  });

  it("five wrong PINs lock every attempt out for a minute, doubling, kept in the database", async () => {
    let now = Date.now();
    const clock = () => now;
    const build = async () => {
      gate = createPolicyGate({
        upstream: simPolicyPort(up),
        db,
        logger,
        config: { mode: "confirm" },
        now: clock,
      });
      handlers = new Map();
      gate.register({ register: (m, h) => handlers.set(m, h) });
      return gate;
    };
    let g = await build();
    await control("loxmcp/pin", { action: "set", newPin: "carrot-tuesday", interactive: true });
    // Parallel guesses are each counted (checks run one at a time).
    const guesses = await Promise.allSettled(
      ["a1", "a2", "a3", "a4", "a5"].map((p) => control("loxmcp/resume", { pin: `wrong-${p}` })),
    );
    expect(guesses.every((r) => r.status === "fulfilled")).toBe(true); // no stop active: nothing to lift
    await control("loxmcp/stop-all");
    const wrong = await Promise.allSettled(
      ["a1", "a2", "a3", "a4", "a5"].map((p) => control("loxmcp/resume", { pin: `wrong-${p}` })),
    );
    expect(wrong.map((r) => (r.status === "rejected" ? String(r.reason) : "ok")).at(-1)).toMatch(
      /refused for 60 s/,
    );
    expect(g.status().pin).toMatchObject({ failures: 5, lockedForSec: 60 });
    // Locked: even the right PIN is refused without being checked.
    await expect(control("loxmcp/resume", { pin: "carrot-tuesday" })).rejects.toThrow(/another 60 s/);
    // The lockout survives a restart (new gate, same database).
    await g.stop();
    g = await build();
    expect(g.status().pin.lockedForSec).toBe(60);
    await expect(control("loxmcp/resume", { pin: "carrot-tuesday" })).rejects.toThrow(/too many wrong PINs/);
    // After the minute, one more wrong PIN doubles the delay.
    now += 61_000;
    await expect(control("loxmcp/resume", { pin: "nope-nope" })).rejects.toThrow(/refused for 120 s/);
    now += 121_000;
    // stop-all is never delayed, and the right PIN works once the delay is over.
    await control("loxmcp/stop-all");
    expect((await control("loxmcp/resume", { pin: "carrot-tuesday" })).wasActive).toBe(true);
    expect(g.status().pin).toMatchObject({ failures: 0 });
  });

  it("a PIN attempt that cannot be counted (database not writable) is not checked, right or wrong", async () => {
    const g = await makeGate({ mode: "confirm" });
    await control("loxmcp/pin", { action: "set", newPin: "walnut-7731", interactive: true });
    await control("loxmcp/stop-all");
    db.pragma("query_only = ON"); // every write now fails with SQLITE_READONLY
    try {
      for (const pin of ["wrong-1", "walnut-7731", "wrong-2", "walnut-7731"]) {
        await expect(control("loxmcp/resume", { pin })).rejects.toThrow(/could not be recorded.*not checked/);
      }
      expect(g.status().emergencyStop?.active).toBe(true);
    } finally {
      db.pragma("query_only = OFF");
    }
    expect((await control("loxmcp/resume", { pin: "walnut-7731" })).wasActive).toBe(true);
    expect(g.status().pin.failures).toBe(0);
  });

  it("with a PIN set, the client's own elicitation does not approve a T3 action", async () => {
    const g = await makeGate();
    await control("loxmcp/pin", { action: "set", newPin: "482917", interactive: true });
    let asked = 0;
    const selfApproving = ctx("Claude", async () => {
      asked++;
      return { action: "accept", content: { confirm: true } };
    });
    const res = await cmd(g, uuidOf("Burglar Alarm"), "off", selfApproving);
    expect(res.isError).toBe(true);
    expect(asked).toBe(0);
    const code = codeOf(res);
    expect(commandsSent()).toEqual([]);
    await control("loxmcp/approve", { code, pin: "482917" });
    expect((await cmd(g, uuidOf("Burglar Alarm"), "off", selfApproving)).isError).toBeFalsy();
    expect(commandsSent()).toHaveLength(1);
  });

  it("held calls are capped per client and an approved code is never evicted", async () => {
    offerTools("bulk_scene");
    const g = await makeGate();
    const alarm = uuidOf("Burglar Alarm");
    const code = codeOf(await cmd(g, alarm, "off"));
    await control("loxmcp/approve", { code, interactive: true });
    // Junk held calls (a real write tool whose target cannot be checked) up to and past the cap.
    const junk: CallToolResult[] = [];
    for (let i = 0; i < 40; i++) {
      junk.push(await g.callTool({ name: "bulk_scene", arguments: { n: i } }, ctx(), forward));
    }
    expect(text(junk[0]!)).toMatch(/held for the person's approval.*bulk_scene may write/s);
    expect(text(junk.at(-1)!)).toMatch(/already waiting for the person's approval \(at most 8\)/);
    expect(g.pendingApprovals().filter((p) => p.client === "Claude")).toHaveLength(8);
    expect(g.pendingApprovals().find((p) => p.code === code)?.approved).toBe(true);
    // Another client is not blocked by Claude's junk.
    expect(codeOf(await cmd(g, alarm, "off", ctx("Zed")))).toHaveLength(6);
    expect((await cmd(g, alarm, "off")).isError).toBeFalsy();
    expect(commandsSent()).toHaveLength(1);
    // The person can deny a held call without any PIN.
    const other = g.pendingApprovals().find((p) => p.client === "Zed")!;
    await control("loxmcp/deny", { code: other.code });
    expect(g.pendingApprovals().some((p) => p.code === other.code)).toBe(false);
  });

  it("an unnamed client is its own principal: a namesake's junk neither fills its cap nor shares its approvals", async () => {
    offerTools("bulk_scene");
    const g = await makeGate();
    // Two MCP connections without a shim --name, both calling themselves "twin" in initialize.
    const unnamed = (connId: string): CallContext => ({
      client: makePrincipal({ connId, name: "twin", role: "mcp", connectedAt: Date.now() }),
      supportsElicitation: false,
      elicit: async () => ({ action: "cancel" }),
    });
    const a = unnamed("c21");
    const b = unnamed("c22");
    const alarm = uuidOf("Burglar Alarm");
    const aCode = codeOf(await cmd(g, alarm, "off", a));
    await control("loxmcp/approve", { code: aCode, interactive: true });
    for (let i = 0; i < 12; i++) await g.callTool({ name: "bulk_scene", arguments: { n: i } }, a, forward);
    const heldByA = g.pendingApprovals().filter((p) => p.tool === "bulk_scene");
    expect(heldByA).toHaveLength(7); // a's cap is 8, its approved code included
    expect(heldByA[0]?.client).toBe('unnamed client (calls itself "twin")');
    // b is not blocked by a's full cap, and a's approved code is not b's to use.
    const bHeld = await cmd(g, alarm, "off", b);
    expect(text(bHeld)).not.toMatch(/already waiting/);
    expect(codeOf(bHeld)).toHaveLength(6);
    expect(codeOf(bHeld)).not.toBe(aCode);
    expect(commandsSent()).toEqual([]);
    expect((await cmd(g, alarm, "off", a)).isError).toBeFalsy();
    expect(commandsSent()).toHaveLength(1);
  });

  it("a control added after the last snapshot is found by one on-demand refresh", async () => {
    const g = await makeGate();
    const added = s.sim.addControl({
      name: "Hall Spot",
      type: "Switch",
      room: "Hallway",
      category: "Lighting",
    });
    const res = await cmd(g, added, "on");
    expect(res.isError).toBeFalsy();
    expect(state("Hall Spot").active).toBe(true);
    // an unknown, well-formed uuid right after does not trigger another refresh storm
    const before = s.sim.stats().executions.filter((e) => e.tool === "control_find").length;
    await cmd(g, "0b734138-037d-034e-ffff403fb0c34b9e", "on");
    await cmd(g, "0b734138-037d-034e-ffff403fb0c34b9f", "on");
    expect(s.sim.stats().executions.filter((e) => e.tool === "control_find").length).toBe(before);
  });

  it("volume jumps are judged against the level the Miniserver last reported", async () => {
    const g = await makeGate();
    const audio = uuidOf("Living Room Audio");
    expect((await cmd(g, audio, "volume/50")).isError).toBeFalsy(); // 25 → 50
    expect((await cmd(g, audio, "volume/65")).isError).toBeFalsy(); // 50 → 65
    const down = await cmd(g, audio, "volume/10"); // 65 → 10: jump of 55
    expect(text(down)).toMatch(/volume jump 65 → 10/);
  });

  it("elicitation: accept runs, decline and errors deny (fail closed)", async () => {
    const g = await makeGate();
    const opener = uuidOf("Front Door Opener");
    let asked = "";
    const declined = await cmd(
      g,
      opener,
      "pulse",
      ctx("Claude", async (m) => {
        asked = m;
        return { action: "decline" };
      }),
    );
    expect(asked).toMatch(/Front Door Opener.*Hallway/);
    expect(declined.isError).toBe(true);
    expect(text(declined)).toMatch(/declined/);
    const failed = await cmd(
      g,
      opener,
      "pulse",
      ctx("Claude", async () => {
        throw new Error("client went away");
      }),
    );
    expect(failed.isError).toBe(true);
    const unconfirmed = await cmd(
      g,
      opener,
      "pulse",
      ctx("Claude", async () => ({ action: "accept", content: { confirm: false } })),
    );
    expect(unconfirmed.isError).toBe(true);
    expect(commandsSent()).toEqual([]);

    const accepted = await cmd(
      g,
      opener,
      "pulse",
      ctx("Claude", async () => ({ action: "accept", content: { confirm: true } })),
    );
    expect(accepted.isError).toBeFalsy();
    expect(state("Front Door Opener").pulses).toBe(1);
    expect(commandsSent()).toHaveLength(1);
  });

  it("temperature: 16–28 °C runs, outside needs a person (even in full mode), absurd values never go out", async () => {
    const g = await makeGate({ mode: "full" });
    const climate = uuidOf("Bedroom Climate");
    expect((await cmd(g, climate, "setComfortTemperature/22")).isError).toBeFalsy();
    expect(state("Bedroom Climate").comfortTemperature).toBe(22);
    const hot = await cmd(g, climate, "setComfortTemperature/30");
    expect(text(hot)).toMatch(/outside 16–28/);
    expect(text(hot)).toMatch(/held for the person's approval/);
    const absurd = await cmd(
      g,
      climate,
      "setComfortTemperature/39",
      ctx("Claude", async () => ({ action: "accept", content: { confirm: true } })),
    );
    expect(text(absurd)).toMatch(/never sent/);
    expect(commandsSent()).toHaveLength(1);
    const confirmed = await cmd(
      g,
      climate,
      "setComfortTemperature/30",
      ctx("Claude", async () => ({ action: "accept", content: { confirm: true } })),
    );
    expect(confirmed.isError).toBeFalsy();
    expect(state("Bedroom Climate").comfortTemperature).toBe(30);
  });

  it("rate-limits motors per device and direction reversals, and says when to retry", async () => {
    const g = await makeGate({ rateLimits: { motorPerMinute: 3, reversalCooldownMs: 60_000 } });
    const blinds = uuidOf("Kitchen Blinds");
    for (const p of [10, 20, 30]) expect((await cmd(g, blinds, `manualPosition/${p}`)).isError).toBeFalsy();
    const fourth = await cmd(g, blinds, "manualPosition/40");
    expect(fourth.isError).toBe(true);
    expect(text(fourth)).toMatch(/retry in \d+ s/);
    // stop is never rate-limited
    expect((await cmd(g, blinds, "stop")).isError).toBeFalsy();

    const other = uuidOf("Office Blinds");
    expect((await cmd(g, other, "FullUp")).isError).toBeFalsy();
    const reverse = await cmd(g, other, "FullDown");
    expect(text(reverse)).toMatch(/reversing a motor.*retry in/);
    expect(commandsSent()).toHaveLength(5);
    const { events } = await control("loxmcp/audit", { denied: true });
    expect(events.map((e: J) => e.decision)).toEqual(["rate-limited", "rate-limited"]);
  });

  it("moving many different motors within a minute counts as a bulk movement (T3)", async () => {
    const g = await makeGate({ rateLimits: { motorBurst: 3 } });
    const blinds = ["Living Room Blinds", "Kitchen Blinds", "Dining Blinds", "Bedroom Blinds"].map(uuidOf);
    for (const b of blinds.slice(0, 3)) expect((await cmd(g, b, "FullDown")).isError).toBeFalsy();
    const fourth = await cmd(g, blinds[3]!, "FullDown");
    expect(text(fourth)).toMatch(/held for the person's approval.*4 different motors within a minute/s);
    expect((await cmd(g, blinds[3]!, "stop")).isError).toBeFalsy();
    // the motors already moving may still be commanded (no bulk growth)
    expect((await cmd(g, blinds[0]!, "manualPosition/50")).isError).toBeFalsy();
    expect(commandsSent()).toHaveLength(5);
  });

  it("global write limit", async () => {
    const g = await makeGate({ rateLimits: { globalPerMinute: 2 } });
    const sw = uuidOf("Office Socket");
    expect((await cmd(g, sw, "on")).isError).toBeFalsy();
    expect((await cmd(g, sw, "off")).isError).toBeFalsy();
    expect(text(await cmd(g, sw, "on"))).toMatch(/more than 2 writes.*retry in/);
  });

  it("read-only mode and per-client rules (the shim's --name; case-insensitive, prefix)", async () => {
    const g = await makeGate({ mode: "confirm", clients: { cursor: "read-only", "claude-code": "full" } });
    const light = uuidOf("Office Lights");
    const denied = await cmd(g, light, "on", ctx("Cursor"));
    expect(text(denied)).toMatch(/read-only/);
    const read = await g.callTool(
      { name: "control_describe", arguments: { uuid: light } },
      ctx("cursor-vscode"),
      forward,
    );
    expect(read.isError).toBeFalsy();
    expect(text(await cmd(g, light, "on", ctx("cursor-vscode")))).toMatch(/read-only/);
    // claude-code is in full mode: a T3 action runs without confirmation
    const alarm = await cmd(g, uuidOf("Burglar Alarm"), "on", ctx("Claude-Code"));
    expect(alarm.isError).toBeFalsy();
    // plain "Claude" falls back to confirm
    expect((await cmd(g, uuidOf("Burglar Alarm"), "off", ctx("Claude"))).isError).toBe(true);
    expect(commandsSent()).toHaveLength(1);

    const g2 = createPolicyGate({ upstream: simPolicyPort(up), db, logger, config: { mode: "read-only" } });
    const r = await g2.callTool(
      { name: "control_command", arguments: { uuid: light, command: "on" } },
      ctx(),
      forward,
    );
    expect(text(r)).toMatch(/read-only/);
    expect(commandsSent()).toHaveLength(1);
  });

  it("refuses writes while the upstream session is not ready (reads are the upstream's business)", async () => {
    const g = await makeGate();
    up.setState("degraded", "relay unreachable");
    const res = await cmd(g, uuidOf("Kitchen Lights"), "on");
    expect(text(res)).toMatch(/session is degraded \(relay unreachable\)/);
    up.setState("ready");
    expect(commandsSent()).toEqual([]);
    const { events } = await control("loxmcp/audit", { denied: true });
    expect(events[0].reason).toMatch(/degraded/);
  });

  it("refuses writes when no structure is known (and it cannot be fetched)", async () => {
    const g = createPolicyGate({ upstream: simPolicyPort(up), db, logger, config: { mode: "full" } });
    s.sim.resetStats();
    // The upstream is "ready" but the structure fetch fails: the write must not go out.
    s.sim.setFaults({ httpErrors: 1, httpErrorStatus: 502 });
    const res = await g.callTool(
      { name: "control_command", arguments: { uuid: uuidOf("Kitchen Lights"), command: "on" } },
      ctx(),
      forward,
    );
    expect(text(res)).toMatch(/house structure is not known/);
    expect(commandsSent()).toEqual([]);
  });

  it("a snapshot older than snapshotMaxAge that cannot be re-read stops writes", async () => {
    let offset = 0;
    const g = createPolicyGate({
      upstream: simPolicyPort(up),
      db,
      logger,
      config: { mode: "full", snapshotMaxAgeMs: 60 * 60_000 },
      now: () => Date.now() + offset,
    });
    gate = g;
    await g.refreshStructure();
    s.sim.resetStats();
    const light = uuidOf("Bathroom Lights");
    expect((await cmd(g, light, "on")).isError).toBeFalsy();
    offset = 2 * 60 * 60_000;
    s.sim.setFaults({ httpErrors: 1, httpErrorStatus: 503 });
    expect(text(await cmd(g, light, "off"))).toMatch(/house structure is not known/);
    // once it can be re-read, writes flow again
    expect((await cmd(g, light, "off")).isError).toBeFalsy();
    expect(commandsSent()).toHaveLength(2);
  });

  it("emergency stop: stops every blind and gate, blocks writes (also across a restart) until resume", async () => {
    const g = await makeGate({ mode: "full" });
    const kitchen = uuidOf("Kitchen Blinds");
    await cmd(g, kitchen, "manualPosition/70");
    s.sim.resetStats();
    const out = await control("loxmcp/stop-all", { reason: "test" });
    // Sent through the forward path of a client's call, in the CLI connection's share, with the
    // policy's signal.
    expect(ownForwards.map((f) => [f.holder, f.signal.aborted])).toEqual([["c9", false]]);
    const motors = s.sim.house().controls.filter((c) => c.type === "Jalousie" || c.type === "Gate");
    expect(out.stopped).toHaveLength(motors.length);
    expect(out.stopped.every((r: J) => r.ok)).toBe(true);
    const sent = commandsSent().map((e) => e.arguments as { uuid: string; command: string });
    expect(sent.every((a) => a.command === "stop")).toBe(true);
    expect(new Set(sent.map((a) => a.uuid))).toEqual(new Set(motors.map((m) => m.uuid)));

    const blocked = await cmd(g, uuidOf("Kitchen Lights"), "on");
    expect(text(blocked)).toMatch(/emergency stop is active/);
    expect((await cmd(g, kitchen, "stop")).isError).toBeFalsy(); // stopping stays possible

    // The stop survives a restart of the gate (same database).
    await g.stop();
    const g2 = await makeGate({ mode: "full" });
    expect(g2.status().emergencyStop?.active).toBe(true);
    expect(text(await cmd(g2, uuidOf("Kitchen Lights"), "on"))).toMatch(/emergency stop/);
    // The MCP tool cannot lift it; only the control method can.
    expect(g2.extraTools().map((t) => t.name)).toEqual(["loxmcp_emergency_stop"]);
    expect(handlers.has("loxmcp/resume")).toBe(true);
    await expect(control("loxmcp/resume")).rejects.toThrow(/interactive terminal/);
    await control("loxmcp/resume", { interactive: true });
    expect((await cmd(g2, uuidOf("Kitchen Lights"), "on")).isError).toBeFalsy();
    const { events } = await control("loxmcp/audit", {});
    expect(events.some((e: J) => e.decision === "emergency-stop")).toBe(true);
  });

  it("the MCP emergency-stop tool stops the motors through the client's call and reports per device", async () => {
    const g = await makeGate({ mode: "read-only" });
    const res = await g.callTool(
      { name: "loxmcp_emergency_stop", arguments: { reason: "kid at the window" } },
      ctx(),
      forward,
    );
    expect(res.isError).toBeFalsy();
    expect(text(res)).toMatch(/Emergency stop is ACTIVE/);
    expect(text(res)).toMatch(/stopped: Garage Door/);
    expect(commandsSent().length).toBeGreaterThanOrEqual(6);
    expect(g.status().emergencyStop?.by).toMatch(/Claude/);
  });

  it("volume above 70 or a large jump needs confirmation; small changes run", async () => {
    const g = await makeGate();
    const audio = uuidOf("Kitchen Audio");
    expect((await cmd(g, audio, "volume/40")).isError).toBeFalsy();
    expect(text(await cmd(g, audio, "volume/90"))).toMatch(/volume 90 above 70/);
    expect(commandsSent()).toHaveLength(1);
  });

  it("T2 writes carry a read-back of the Miniserver state", async () => {
    const g = await makeGate();
    const res = await cmd(g, uuidOf("Dining Blinds"), "manualPosition/55");
    expect(res.isError).toBeFalsy();
    expect(text(res)).toMatch(/read-back of "Dining Blinds".*"position": ?55/s);
    expect(text(res)).not.toMatch(/state differs/);
  });

  it("redacts secrets in audited arguments", async () => {
    const g = await makeGate();
    await g.callTool(
      {
        name: "control_find",
        arguments: { query: "x", password: "hunter2", apiToken: "abc", nested: { pin: "1234" } },
      },
      ctx(),
      forward,
    );
    const { events } = await control("loxmcp/audit", {});
    const dump = JSON.stringify(events);
    expect(dump).not.toContain("hunter2");
    expect(dump).not.toContain('"abc"');
    expect(dump).not.toContain("1234");
  });

  it("the periodic (quick) structure check describes only new controls, and still sees renames", async () => {
    const g = await makeGate();
    const calls = (tool: string) => s.sim.stats().executions.filter((e) => e.tool === tool).length;
    expect((await g.refreshStructure({ quick: true })).changed).toBe(false);
    expect([calls("control_find"), calls("control_describe")]).toEqual([1, 0]);
    s.sim.resetStats();
    const added = s.sim.addControl({
      name: "Carport Light",
      type: "Switch",
      room: "Garden",
      category: "Lighting",
    });
    s.sim.renameControl(uuidOf("Garden Sprinkler"), "Lawn Sprinkler");
    const r = await g.refreshStructure({ quick: true });
    expect(r.changed).toBe(true);
    expect([calls("control_find"), calls("control_describe")]).toEqual([1, 1]);
    const c = r.snapshot.controls.find((x) => x.uuid === added);
    expect(c?.commands).toEqual(["on", "off", "pulse"]);
    expect(r.snapshot.controls.find((x) => x.name === "Lawn Sprinkler")?.commands).toEqual([
      "on",
      "off",
      "pulse",
    ]);
  });

  it("structure show: each control's tier and its commands' tiers, by the policy's classifier", async () => {
    await makeGate({ t4: ["Alarm:off"] });
    const kitchen = await control("loxmcp/structure", { action: "show", room: "Kitchen" });
    const by = (name: string) => kitchen.controls.find((c: J) => c.name === name);
    expect(by("Kitchen Lights")).toMatchObject({ tier: "T1", commandTiers: { on: "T1", off: "T1" } });
    // A blind moves (T2); stopping it is comfort (T1); the control shows its highest tier.
    expect(by("Kitchen Blinds")).toMatchObject({
      tier: "T2",
      tierReason: expect.stringMatching(/crush/),
      commandTiers: { stop: "T1", FullDown: "T2", "manualPosition/{n}": "T2" },
    });
    const hall = await control("loxmcp/structure", { action: "show", room: "Hallway" });
    const alarm = hall.controls.find((c: J) => c.name === "Burglar Alarm");
    // The configured T4 list counts: "Alarm:off" is never done by an AI, arming needs a person.
    expect(alarm).toMatchObject({ tier: "T4", commandTiers: { off: "T4", on: "T3" } });
    expect(hall.controls.find((c: J) => c.name === "Front Door Opener").tier).toBe("T3");
    // The commands list itself is unchanged (strings, as before).
    expect(by("Kitchen Blinds").commands).toContain("manualPosition/{n}");
  });

  it("structure: show with filters, diff after the simulator renames and adds controls", async () => {
    const g = await makeGate();
    const shown = await control("loxmcp/structure", { action: "show", room: "kitchen" });
    expect(shown.controls.map((c: J) => c.name).sort()).toEqual(
      ["Coffee Machine", "Kitchen Audio", "Kitchen Blinds", "Kitchen Lights"].sort(),
    );
    expect(shown.controls.find((c: J) => c.name === "Kitchen Blinds").commands).toContain(
      "manualPosition/{n}",
    );
    const jal = await control("loxmcp/structure", { action: "show", type: "jalousie" });
    expect(jal.controls).toHaveLength(5);

    const same = await control("loxmcp/structure", { action: "refresh" });
    expect(same.changed).toBe(false);

    s.sim.renameControl(uuidOf("Coffee Machine"), "Espresso Machine");
    const added = s.sim.addControl({ name: "Sauna", type: "Switch", room: "Basement", category: "Power" });
    const refreshed = await control("loxmcp/structure", { action: "refresh" });
    expect(refreshed.changed).toBe(true);
    const diff = await control("loxmcp/structure", { action: "diff" });
    expect(diff.renamed).toEqual([
      expect.objectContaining({ from: "Coffee Machine", to: "Espresso Machine", room: "Kitchen" }),
    ]);
    expect(diff.added.map((c: J) => c.uuid)).toContain(added);
    expect(diff.removed).toEqual([]);
    // The new control is usable right away, and an old uuid that is not in the house is not.
    expect((await cmd(g, added, "on")).isError).toBeFalsy();
    expect(g.status().structure?.controls).toBe(s.sim.house().controls.length);
  });
});
