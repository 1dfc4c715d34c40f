/**
 * Classification, validation, approvals, rate limits and redaction, on the simulator's real
 * house data and real tool lists (also with renamed tools and without annotations).
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { HouseControl } from "@loxmcp/simulator";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { ConfigError, loadConfig } from "../src/config.js";
import type { CallToolResult } from "../src/contracts.js";
import { buildCatalog, classifyWrite, extractTarget } from "../src/policy/classify.js";
import { ApprovalBook, modeForClient } from "../src/policy/confirm.js";
import { resolvePolicyConfig } from "../src/policy/index.js";
import { RateLimiter } from "../src/policy/ratelimit.js";
import { readBackMismatch } from "../src/policy/readback.js";
import { redactArgs } from "../src/policy/redact.js";
import { policyConfigFromSection } from "../src/policy/settings.js";
import { diffControls, fetchStructure } from "../src/policy/structure.js";
import { DEFAULT_POLICY_CONFIG, PolicyDenied, type SnapshotControl } from "../src/policy/types.js";
import { resolveControl, sanitizeArgs, validateCommand } from "../src/policy/validate.js";
import { simAccessToken } from "./sim-upstream.js";

let s: SimHandle;
let house: HouseControl[];

beforeAll(async () => {
  s = await withSimulator();
  house = s.sim.house().controls;
});
afterAll(async () => {
  await s?.stop();
});

function ctl(name: string): SnapshotControl {
  const c = house.find((x) => x.name === name);
  if (!c) throw new Error(name);
  return {
    uuid: c.uuid,
    name: c.name,
    type: c.type,
    room: c.room,
    category: c.category,
    commands: c.commands,
  };
}

const cfg = DEFAULT_POLICY_CONFIG;

describe("tiers on the simulator's house", () => {
  it.each([
    ["Kitchen Lights", "on", "T1"],
    ["Coffee Machine", "off", "T1"],
    ["Movie Scene", "activate", "T1"],
    ["Kitchen Audio", "volume/40", "T1"],
    ["Kitchen Audio", "volume/85", "T3"],
    ["Living Room Blinds", "FullDown", "T2"],
    ["Garden Gate", "open", "T2"],
    ["Garage Door", "close", "T2"],
    ["Garage Door", "open", "T3"],
    ["Living Room Blinds", "stop", "T1"],
    ["Burglar Alarm", "off", "T3"],
    ["Burglar Alarm", "quit", "T3"],
    ["Front Door Intercom", "open", "T3"],
    ["Front Door Opener", "pulse", "T3"],
    ["Code Touch Front Door", "output/1", "T3"],
    ["Bedroom Climate", "setComfortTemperature/21", "T1"],
    ["Bedroom Climate", "setComfortTemperature/12", "T3"],
    ["Outdoor Temperature", "on", "T3"],
  ])("%s %s → %s", (name, command, tier) => {
    const c = ctl(name);
    expect(classifyWrite(c, c.uuid, command, cfg).tier).toBe(tier);
  });

  it("unknown controls and central/bulk commands are T3, configured and safety alarms T4", () => {
    expect(classifyWrite(undefined, "x", "on", cfg).tier).toBe("T3");
    const central = { ...ctl("Kitchen Lights"), type: "CentralLightController" };
    expect(classifyWrite(central, central.uuid, "off", cfg).tier).toBe("T3");
    const l = ctl("Kitchen Lights");
    expect(classifyWrite(l, l.uuid, "AllOff", cfg).tier).toBe("T3");
    const smoke = { ...l, type: "SmokeAlarm" };
    expect(classifyWrite(smoke, smoke.uuid, "mute", cfg).tier).toBe("T4");
    const a = ctl("Burglar Alarm");
    expect(classifyWrite(a, a.uuid, "off", { ...cfg, t4: ["alarm:off"] }).tier).toBe("T4");
    expect(classifyWrite(a, a.uuid, "on", { ...cfg, t4: ["alarm:off"] }).tier).toBe("T3");
    expect(classifyWrite(l, l.uuid, "on", { ...cfg, t4: [l.uuid.toUpperCase()] }).tier).toBe("T4");
    // volume jump against the last known level
    const audio = ctl("Kitchen Audio");
    expect(classifyWrite(audio, audio.uuid, "volume/60", cfg, 20).tier).toBe("T3");
    expect(classifyWrite(audio, audio.uuid, "volume/45", cfg, 20).tier).toBe("T1");
  });
});

describe("validation", () => {
  const map = () => new Map(house.map((c) => [c.uuid.toLowerCase(), ctl(c.name)]));

  it("accepts known uuids (any case, sub-control suffix) and rejects everything else", () => {
    const blinds = ctl("Office Blinds");
    expect(resolveControl(blinds.uuid.toUpperCase(), map()).control.name).toBe("Office Blinds");
    expect(resolveControl(`${blinds.uuid}/sub1`, map()).control.name).toBe("Office Blinds");
    for (const bad of [
      "",
      "x",
      `${blinds.uuid}/..`,
      `${blinds.uuid}?x=1`,
      "0b734138-037d-034e-ffff403fb0c34b9",
      " ".repeat(3),
    ]) {
      expect(() => resolveControl(bad, map()), bad).toThrow(PolicyDenied);
    }
    expect(() => resolveControl("0b734138-037d-034e-ffff-403fb0c34b9e", map())).toThrow(
      /no control with uuid/,
    );
  });

  it("commands must match the control's patterns; numbers in range", () => {
    const blinds = ctl("Office Blinds");
    expect(validateCommand(blinds, "manualPosition/42", cfg)).toEqual([42]);
    expect(() => validateCommand(blinds, "manualPosition/101", cfg)).toThrow(/outside 0–100/);
    expect(() => validateCommand(blinds, "manualPosition/-1", cfg)).toThrow(/outside 0–100/);
    expect(() => validateCommand(blinds, "open", cfg)).toThrow(/not a command of Jalousie/);
    const climate = ctl("Bedroom Climate");
    expect(validateCommand(climate, "setComfortTemperature/21.5", cfg)).toEqual([21.5]);
    expect(() => validateCommand(climate, "setComfortTemperature/80", cfg)).toThrow(/never sent/);
    for (const evil of [
      "on;reboot",
      "on && x",
      "on|x",
      "$(x)",
      "on`x`",
      "../x",
      "on/../../x",
      "on\nx",
      "a".repeat(200),
    ]) {
      expect(() => validateCommand(ctl("Kitchen Lights"), evil, cfg), evil).toThrow(PolicyDenied);
    }
  });

  it("argument sanitiser never crashes and rejects control characters and huge input", () => {
    expect(() => sanitizeArgs({ q: "ok", n: 1, a: [1, "x"] })).not.toThrow();
    expect(() => sanitizeArgs({ q: "a\u0007b" })).toThrow(/control characters/);
    expect(() => sanitizeArgs({ q: "x".repeat(5000) })).toThrow(/longer than/);
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        try {
          sanitizeArgs(v);
        } catch (err) {
          expect(err).toBeInstanceOf(PolicyDenied);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("approvals, modes, rate limits, redaction", () => {
  it("codes are bound to the exact call, approved only by approve(), consumed once and expire", () => {
    let t = 1_000;
    const book = new ApprovalBook(120_000, () => t);
    const k = ApprovalBook.key("Claude", "control_command", '{"command":"off"}');
    const first = book.check(k, { holder: "Claude", label: "Claude" }, "control_command", "alarm off");
    expect(first.state).toBe("pending");
    const code = first.state === "pending" ? first.entry.code : "";
    expect(code).toMatch(/^[A-Z2-9]{6}$/);
    expect(
      book.check(k, { holder: "Claude", label: "Claude" }, "control_command", "alarm off"),
    ).toMatchObject({
      state: "pending",
      entry: { code },
    });
    expect(book.approve(code)?.approved).toBe(true);
    const other = ApprovalBook.key("Cursor", "control_command", '{"command":"off"}');
    expect(
      book.check(other, { holder: "Cursor", label: "Cursor" }, "control_command", "alarm off").state,
    ).toBe("pending");
    expect(book.check(k, { holder: "Claude", label: "Claude" }, "control_command", "alarm off")).toEqual({
      state: "approved",
      code,
    });
    expect(book.check(k, { holder: "Claude", label: "Claude" }, "control_command", "alarm off").state).toBe(
      "pending",
    );
    const c2 = book.list().find((e) => e.client === "Claude")?.code ?? "";
    t += 121_000;
    expect(book.approve(c2)).toBeUndefined();
    expect(book.list()).toEqual([]);
  });

  it("client rules: exact, then longest prefix, case-insensitive", () => {
    const rules = { cursor: "read-only", claude: "confirm", "claude-code": "full" } as const;
    expect(modeForClient("Cursor", rules, "full")).toBe("read-only");
    expect(modeForClient("cursor-vscode", rules, "full")).toBe("read-only");
    expect(modeForClient("Claude-Code", rules, "read-only")).toBe("full");
    expect(modeForClient("claude-ai", rules, "full")).toBe("confirm");
    expect(modeForClient("zed", rules, "confirm")).toBe("confirm");
  });

  it("rate limiter: per motor, reversal cooldown, global, with retry time", () => {
    let t = 0;
    const rl = new RateLimiter(
      { motorPerMinute: 2, reversalCooldownMs: 2000, globalPerMinute: 5, motorBurst: 100 },
      () => t,
    );
    const m = { device: "a", motor: true, direction: "down" as const };
    rl.record(m);
    t = 100;
    const rev = rl.check({ ...m, direction: "up" });
    expect(rev).toMatchObject({ ok: false, retryAfterMs: 1900 });
    t = 2100;
    expect(rl.check({ ...m, direction: "up" }).ok).toBe(true);
    rl.record(m);
    expect(rl.check(m).message).toMatch(/retry in 58 s/);
    expect(rl.check({ ...m, exempt: true }).ok).toBe(true);
    t = 60_001;
    expect(rl.check(m).ok).toBe(true);
    for (let i = 0; i < 5; i++) rl.record({ device: `x${i}` });
    expect(rl.check({ device: "y" }).message).toMatch(/more than 5 writes/);
  });

  it("redaction masks secret keys, bearer tokens, JWTs and NFC codes", () => {
    const out = JSON.stringify(
      redactArgs(
        {
          password: "p",
          userPin: "1",
          pin: "2",
          code: "K7Q2XM",
          accessCode: "3",
          note: "Bearer abc.def",
          jwt: "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
          command: "output/1",
          q: "kitchen",
        },
        {},
      ),
    );
    for (const secret of ['"p"', "K7Q2XM", "abc.def", "eyJhbGci"]) expect(out).not.toContain(secret);
    expect(out).toContain("output/1");
    expect(out).toContain("kitchen");
    expect(JSON.stringify(redactArgs({ command: "addCode/123456" }, { nfc: true }))).not.toContain("123456");
  });
});

describe("tool classification without the simulator", () => {
  it("a tool taking a command is a write even if annotated read-only; read verbs need no annotation", () => {
    const cat = buildCatalog([
      {
        name: "control_command",
        annotations: { readOnlyHint: true },
        inputSchema: {
          type: "object",
          properties: { uuid: { type: "string" }, command: { type: "string" } },
        },
      },
      { name: "get_history", inputSchema: { type: "object", properties: { uuid: { type: "string" } } } },
      { name: "open_door", annotations: {}, inputSchema: { type: "object", properties: {} } },
      { name: "mystery", inputSchema: { type: "object", properties: {} } },
    ]);
    expect(cat.tools.get("control_command")).toMatchObject({ read: false, readOnlyHint: false });
    expect(cat.tools.get("get_history")).toMatchObject({ read: true, readOnlyHint: false });
    expect(cat.tools.get("open_door")?.read).toBe(false);
    expect(cat.tools.get("mystery")?.read).toBe(false);
    expect(cat.command?.name).toBe("control_command");
  });
});

describe("policy configuration", () => {
  function load(policy: unknown) {
    const h = makeHome();
    try {
      mkdirSync(join(h.home, "config"), { recursive: true });
      writeFileSync(join(h.home, "config", "config.json"), JSON.stringify({ policy }));
      return loadConfig({
        env: { LOXMCP_HOME: h.home, LOXONE_SERIAL: "504F94A00001", LOXONE_USER: "u", LOXONE_PASSWORD: "p" },
      });
    } finally {
      h.cleanup();
    }
  }

  it("validates the policy section at load time and maps it to the engine (units converted)", () => {
    const cfg = load({
      mode: "full",
      clients: { cursor: "read-only" },
      t4: ["Alarm:off"],
      rateLimits: { motorPerMinute: 3, motorBurst: 2 },
      temperature: { max: 26 },
      approvalTtlSec: 60,
      snapshotRefreshMin: 5,
      auditRetentionDays: 30,
    });
    const engine = resolvePolicyConfig(policyConfigFromSection(cfg.policy));
    expect(engine).toMatchObject({
      mode: "full",
      clients: { cursor: "read-only" },
      t4: ["Alarm:off"],
      rateLimits: { motorPerMinute: 3, motorBurst: 2, globalPerMinute: 30, reversalCooldownMs: 2000 },
      temperature: { min: 16, max: 26, hardMin: 5, hardMax: 35 },
      approvalTtlMs: 60_000,
      snapshotRefreshMs: 300_000,
      auditRetentionDays: 30,
    });
    expect(() => load({ rateLimits: { motorPerMinute: 0 } })).toThrow(ConfigError);
    expect(() => load({ clients: { cursor: "yolo" } })).toThrow(/policy\.clients\.cursor/);
    expect(() => load({ t4: "Alarm" })).toThrow(/policy\.t4/);
  });
});

describe("read-back check", () => {
  it("flags states that differ from the command, stays quiet when they match or cannot tell", () => {
    const blinds = ctl("Office Blinds");
    expect(readBackMismatch(blinds, "manualPosition/55", { position: 55 })).toBeUndefined();
    expect(readBackMismatch(blinds, "manualPosition/55", { position: 0.55 })).toBeUndefined();
    expect(readBackMismatch(blinds, "manualPosition/55", { position: 0 })).toMatch(
      /position is 0, asked for 55.*moving/,
    );
    const alarm = ctl("Burglar Alarm");
    expect(readBackMismatch(alarm, "off", { armed: false })).toBeUndefined();
    expect(readBackMismatch(alarm, "off", { armed: true })).toMatch(/armed is true/);
    expect(
      readBackMismatch(ctl("Bedroom Climate"), "setComfortTemperature/30", { comfortTemperature: 22 }),
    ).toMatch(/comfortTemperature is 22/);
    expect(readBackMismatch(ctl("Garage Door"), "open", { position: 0 })).toBeUndefined();
  });
});

describe("tool discovery and structure fetch (renamed tools, no annotations)", () => {
  let renamed: SimHandle;
  let client: Client;
  beforeAll(async () => {
    renamed = await withSimulator({
      toolNames: {
        control_find: "lookupControls",
        control_describe: "controlDetails",
        control_command: "runAction",
      },
      annotations: false,
    } as Parameters<typeof withSimulator>[0]);
    client = new Client({ name: "t", version: "1" });
    const token = await simAccessToken(renamed.sim);
    await client.connect(
      new StreamableHTTPClientTransport(new URL(renamed.sim.relayUrls[renamed.sim.currentRelay()] ?? ""), {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      }),
    );
  });
  afterAll(async () => {
    await client?.close();
    await renamed?.stop();
  });

  it("finds the find/describe/command roles and argument names from tools/list", async () => {
    const { tools } = await client.listTools();
    const cat = buildCatalog(tools as unknown as Array<Record<string, unknown>>);
    expect(cat.find?.name).toBe("lookupControls");
    expect(cat.describe?.name).toBe("controlDetails");
    expect(cat.command?.name).toBe("runAction");
    expect(cat.tools.get("system_status")?.read).toBe(true);
    expect(cat.tools.get("weather_forecast")?.read).toBe(true);
    expect(cat.tools.get("runAction")?.read).toBe(false);
    expect(extractTarget(cat.command, { uuid: "u", command: "on" })).toEqual({ uuid: "u", command: "on" });

    const call = async (name: string, args: Record<string, unknown>) =>
      (await client.callTool({ name, arguments: args })) as CallToolResult;
    const fetched = await fetchStructure(cat, call);
    expect(fetched.controls).toHaveLength(renamed.sim.house().controls.length);
    const blinds = fetched.controls.find((c) => c.name === "Kitchen Blinds");
    expect(blinds).toMatchObject({ type: "Jalousie", room: "Kitchen", category: "Shading" });
    expect(blinds?.commands).toContain("manualPosition/{n}");
    expect(fetched.states.get(blinds?.uuid.toLowerCase() ?? "")).toMatchObject({ position: 0 });

    const after = fetched.controls
      .map((c) => (c.name === "Kitchen Blinds" ? { ...c, name: "K" } : c))
      .slice(1);
    const d = diffControls(fetched.controls, after);
    expect(d.renamed).toEqual([expect.objectContaining({ from: "Kitchen Blinds", to: "K" })]);
    expect(d.removed).toHaveLength(1);
  });
});
