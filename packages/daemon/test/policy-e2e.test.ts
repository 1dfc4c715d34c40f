/**
 * The safety policy end to end: the REAL daemon process against the simulator, MCP clients
 * (SDK Client over the daemon socket, with and without elicitation) and the REAL CLI binary
 * for the person's side (approve, stop-all, resume, audit, structure).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { runInPty } from "../../../test-support/pty.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { controlCall, SocketClientTransport } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";
import { CLI_BIN, runCli, SHIM_BIN } from "../../cli/test/helpers.js";

// biome-ignore lint/suspicious/noExplicitAny: loose JSON from control methods
type J = any;

interface ToolResult {
  content: Array<{ type: string; text?: string }>;
  isError?: boolean;
}

let s: SimHandle;
let h: TempHome;
let d: DaemonProcess | undefined;
const clients: Client[] = [];

function env(extra: Record<string, string> = {}): Record<string, string> {
  return s.env(h.home, { LOXMCP_PING_INTERVAL: "1", ...extra });
}

function cliEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: h.home, LOXMCP_HOME: h.home };
}

function cli(args: string[]) {
  return runCli(args, cliEnv());
}

/** The CLI at a real (pseudo-)terminal, confirming with "yes" (no PIN is set in this file). */
function cliAtTerminal(args: string[]) {
  return runInPty([process.execPath, CLI_BIN, ...args], cliEnv(), [['Type "yes"', "yes"]]);
}

function uuidOf(name: string): string {
  const c = s.sim.house().controls.find((x) => x.name === name);
  if (!c) throw new Error(`no control ${name}`);
  return c.uuid;
}

function stateOf(name: string): Record<string, unknown> {
  return s.sim.house().controls.find((x) => x.name === name)?.states ?? {};
}

function commandsSent(): Array<{ uuid: string; command: string }> {
  return s.sim
    .stats()
    .executions.filter((e) => e.tool === "control_command")
    .flatMap((e) => Array.from({ length: e.count }, () => e.arguments as { uuid: string; command: string }));
}

async function connect(
  name: string,
  elicit?: (message: string) => {
    action: "accept" | "decline" | "cancel";
    content?: Record<string, unknown>;
  },
): Promise<Client> {
  const client = new Client({ name, version: "1.0.0" }, elicit ? { capabilities: { elicitation: {} } } : {});
  if (elicit)
    client.setRequestHandler(ElicitRequestSchema, async (req) => elicit(String(req.params.message)));
  // As a shim started with `--name <name>` (per-client rules match that name).
  await client.connect(new SocketClientTransport(d!.socketPath, { name }));
  clients.push(client);
  return client;
}

async function command(
  c: Client,
  uuid: string,
  cmd: string,
  extra: Record<string, unknown> = {},
): Promise<ToolResult> {
  return (await c.callTool({
    name: "control_command",
    arguments: { uuid, command: cmd, ...extra },
  })) as ToolResult;
}

function text(r: ToolResult): string {
  return r.content.map((c) => c.text ?? "").join("\n");
}

async function audit(params: Record<string, unknown> = {}): Promise<J[]> {
  return ((await controlCall(d!.socketPath, "loxmcp/audit", params)) as J).events;
}

beforeAll(async () => {
  s = await withSimulator();
  h = makeHome();
  mkdirSync(join(h.home, "config"), { recursive: true, mode: 0o700 });
  writeFileSync(
    join(h.home, "config", "config.json"),
    JSON.stringify({
      policy: {
        mode: "confirm",
        clients: { cursor: "read-only" },
        rateLimits: { motorPerMinute: 3, reversalCooldownMs: 60_000 },
      },
    }),
  );
  d = spawnDaemon(env());
  await d.waitReady(30_000);
  await d.waitStatus((st) => (st.policy as J)?.structure?.controls > 0, 30_000, "structure snapshot");
}, 90_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => {});
  await d?.stop().catch(() => d?.kill9());
  await s?.stop();
  h?.cleanup();
});

describe("policy through the real daemon", () => {
  it("lists the emergency-stop tool next to the Miniserver's tools and runs T1 writes, audited", async () => {
    const c = await connect("claude-e2e");
    const { tools } = await c.listTools();
    expect(tools.map((t) => t.name)).toEqual(
      expect.arrayContaining(["control_command", "loxmcp_emergency_stop"]),
    );
    s.sim.resetStats();
    const res = await command(c, uuidOf("Office Lights"), "on");
    expect(res.isError).toBeFalsy();
    expect(stateOf("Office Lights").on).toBe(true);
    expect(commandsSent()).toHaveLength(1);
    const rows = await audit({ client: "claude-e2e" });
    expect(rows.at(-1)).toMatchObject({
      tool: "control_command",
      decision: "allowed",
      outcome: "ok",
      tier: "T1",
    });
    expect(typeof rows.at(-1).clientPid).toBe("number");
  });

  it("invalid uuid / command / T4 never reach the simulator", async () => {
    const c = await connect("claude-e2e");
    s.sim.addControl({ name: "Smoke Detector", type: "SmokeAlarm", room: "Hallway", category: "Safety" });
    const refreshed = await cli(["structure", "refresh", "--json"]);
    expect(refreshed.code).toBe(0);
    expect(JSON.parse(refreshed.stdout).changed).toBe(true);
    s.sim.resetStats();
    const bad = [
      await command(c, "0b734138-037d-034e-ffff403fb0c34b9e", "on"),
      await command(c, "garbage", "on"),
      await command(c, uuidOf("Office Lights"), "on/../../reboot"),
      await command(c, uuidOf("Office Blinds"), "manualPosition/250"),
      await command(c, uuidOf("Smoke Detector"), "mute"),
    ];
    for (const r of bad) expect(r.isError).toBe(true);
    expect(text(bad[4]!)).toMatch(/never done by an AI/);
    expect(commandsSent()).toEqual([]);
    const denied = await audit({ denied: true, limit: 5 });
    expect(denied.map((e) => e.decision)).toEqual(Array(5).fill("denied"));
    expect(denied.at(-1).tier).toBe("T4");
  });

  it("two-phase: the AI repeating the call or the code does nothing; `loxmcp approve` lets the identical call run once", async () => {
    const c = await connect("claude-e2e");
    const alarm = uuidOf("Burglar Alarm");
    s.sim.resetStats();
    const first = await command(c, alarm, "on");
    expect(first.isError).toBe(true);
    const code = /code ([A-Z0-9]{6}) is waiting/.exec(text(first))?.[1] ?? "";
    expect(code).toHaveLength(6);
    await command(c, alarm, "on");
    await command(c, alarm, "on", { code });
    expect(commandsSent()).toEqual([]);

    // status names what is held, never the code.
    const st = await d!.status();
    expect((st.pendingApprovals as J[]).map((p) => p.summary).join()).toContain("Burglar Alarm");
    expect(JSON.stringify(st)).not.toContain(code);
    const list = await cli(["approve", "--list"]);
    expect(list.stdout).toContain(code);
    expect(list.stdout).toContain("Burglar Alarm");
    const wrong = await cli(["approve", "AAAAAA"]);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/no pending approval/);
    // No PIN is set: without a terminal (an agent's shell) approving fails at once.
    const piped = await cli(["approve", code]);
    expect(piped.code).not.toBe(0);
    expect(piped.stderr).toMatch(/interactive terminal/);
    expect(commandsSent()).toEqual([]);
    const ok = await cliAtTerminal(["approve", code]);
    expect(ok.code, ok.screen).toBe(0);
    expect(ok.screen).toMatch(/Burglar Alarm/);
    expect(ok.screen).toMatch(/approved/);

    const run = await command(c, alarm, "on");
    expect(run.isError).toBeFalsy();
    expect(stateOf("Burglar Alarm").armed).toBe(true);
    expect(text(run)).toMatch(/read-back/);
    const again = await command(c, alarm, "on");
    expect(again.isError).toBe(true);
    expect(commandsSent()).toHaveLength(1);
    const rows = await audit({ client: "claude-e2e", limit: 3 });
    expect(rows.slice(-2).map((e) => e.decision)).toEqual(["confirmed", "held"]);
    expect(rows.at(-2).reason).toContain(code);
    // `loxmcp audit`: a held call is one short line, "held", without the AI's instructions.
    const trail = await cli(["audit", "--held", "--client", "claude-e2e"]);
    const heldLines = trail.stdout.trim().split("\n");
    expect(heldLines.length).toBeGreaterThanOrEqual(2);
    for (const l of heldLines) {
      expect(l).toMatch(/ held \(waiting for you\) T3 .*Burglar Alarm/);
      expect(l).not.toMatch(/Only the person|call this tool again/);
    }
  });

  it("elicitation: a client that declares it is asked; yes runs, no does not", async () => {
    const asked: string[] = [];
    const yes = await connect("claude-yes", (m) => {
      asked.push(m);
      return { action: "accept", content: { confirm: true } };
    });
    const no = await connect("claude-no", (m) => {
      asked.push(m);
      return { action: "decline" };
    });
    s.sim.resetStats();
    const declined = await command(no, uuidOf("Front Door Intercom"), "open");
    expect(declined.isError).toBe(true);
    expect(stateOf("Front Door Intercom").lastOpened).toBe("");
    expect(commandsSent()).toEqual([]);
    const accepted = await command(yes, uuidOf("Front Door Intercom"), "open");
    expect(accepted.isError).toBeFalsy();
    expect(stateOf("Front Door Intercom").lastOpened).not.toBe("");
    expect(commandsSent()).toHaveLength(1);
    expect(asked).toHaveLength(2);
    expect(asked[0]).toMatch(/Front Door Intercom.*Hallway/);
  });

  it("temperature bounds, motor rate limit and per-client read-only", async () => {
    const c = await connect("claude-e2e");
    s.sim.resetStats();
    const climate = uuidOf("Kids Room Climate");
    expect((await command(c, climate, "setComfortTemperature/21")).isError).toBeFalsy();
    expect(text(await command(c, climate, "setComfortTemperature/31"))).toMatch(/outside 16–28/);
    expect(text(await command(c, climate, "setComfortTemperature/40"))).toMatch(/never sent/);
    expect(stateOf("Kids Room Climate").comfortTemperature).toBe(21);

    const blinds = uuidOf("Bedroom Blinds");
    for (const p of [10, 20, 30])
      expect((await command(c, blinds, `manualPosition/${p}`)).isError).toBeFalsy();
    const limited = await command(c, blinds, "manualPosition/40");
    expect(text(limited)).toMatch(/retry in \d+ s/);
    expect(stateOf("Bedroom Blinds").position).toBe(30);

    const cursor = await connect("Cursor");
    expect(text(await command(cursor, uuidOf("Garden Lights"), "on"))).toMatch(/read-only/);
    const read = (await cursor.callTool({
      name: "control_find",
      arguments: { room: "Garden" },
    })) as ToolResult;
    expect(read.isError).toBeFalsy();
    expect(commandsSent()).toHaveLength(4);
    const decisions = (await audit({ denied: true, limit: 3 })).map((e) => e.decision);
    expect(decisions).toContain("rate-limited");
  });

  it("structure diff after the simulator renames and adds a control (CLI)", async () => {
    s.sim.renameControl(uuidOf("Office Socket"), "Desk Socket");
    const added = s.sim.addControl({ name: "Pool Pump", type: "Switch", room: "Garden", category: "Power" });
    const r = await cli(["structure", "refresh"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/changed/);
    const diff = await cli(["structure", "diff", "--json"]);
    const j = JSON.parse(diff.stdout);
    expect(j.renamed).toEqual([expect.objectContaining({ from: "Office Socket", to: "Desk Socket" })]);
    expect(j.added.map((x: J) => x.uuid)).toEqual([added]);
    const human = await cli(["structure", "diff"]);
    expect(human.stdout).toMatch(/renamed\s+"Office Socket" → "Desk Socket"/);
    const show = await cli(["structure", "show", "--room", "Garden"]);
    expect(show.stdout).toContain("Pool Pump");
    // Grouped by room, each control with its highest tier, its commands grouped by tier.
    expect(show.stdout).toMatch(/^Garden$/m);
    expect(show.stdout).toMatch(/^ {2}Pool Pump {2}\[Switch, Power\] {2}T1 comfort {2}\S+$/m);
    expect(show.stdout).toMatch(/^ {2}Garden Gate {2}\[Gate, Access\] {2}T2 motion /m);
    expect(show.stdout).toMatch(/^ {6}T1: stop {2}· {2}T2: open close$/m);
    expect(show.stdout).toMatch(/^tiers: T1 comfort/m);
    const json = JSON.parse((await cli(["structure", "show", "--type", "gate", "--json"])).stdout);
    // a garage door lets people in: opening it needs a person
    expect(json.controls.map((c: J) => [c.name, c.tier]).sort()).toEqual([
      ["Garage Door", "T3"],
      ["Garden Gate", "T2"],
    ]);
  });

  it("emergency stop: `loxmcp stop-all` stops every blind and gate, blocks writes across a restart, `loxmcp resume` lifts it", async () => {
    const c = await connect("claude-e2e");
    s.sim.resetStats();
    const out = await cli(["stop-all", "--reason", "e2e", "--json"]);
    expect(out.code).toBe(0);
    const j = JSON.parse(out.stdout);
    const motors = s.sim.house().controls.filter((x) => x.type === "Jalousie" || x.type === "Gate");
    expect(j.stopped.map((x: J) => x.uuid).sort()).toEqual(motors.map((m) => m.uuid).sort());
    expect(commandsSent().every((a) => a.command === "stop")).toBe(true);
    expect(commandsSent()).toHaveLength(motors.length);

    expect(text(await command(c, uuidOf("Kitchen Lights"), "on"))).toMatch(/emergency stop is active/);
    expect(stateOf("Kitchen Lights").on).toBe(false);

    // Restart the daemon: the stop is persisted.
    await c.close();
    await d!.stop();
    d = spawnDaemon(env());
    await d.waitReady(30_000);
    const st = await d.status();
    expect((st.policy as J).emergencyStop.active).toBe(true);
    const c2 = await connect("claude-e2e");
    await waitFor(async () => ((await d!.status()).policy as J)?.structure?.controls > 0, {
      what: "structure",
    });
    expect(text(await command(c2, uuidOf("Kitchen Lights"), "on"))).toMatch(/emergency stop/);
    // The AI cannot lift it: there is no MCP tool for resume.
    expect((await c2.listTools()).tools.map((t) => t.name)).not.toContain("loxmcp_resume");

    const refused = await cli(["resume"]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/interactive terminal/);
    const resumed = await cliAtTerminal(["resume"]);
    expect(resumed.screen).toMatch(/lifted/);
    expect((await command(c2, uuidOf("Kitchen Lights"), "on")).isError).toBeFalsy();
    expect(stateOf("Kitchen Lights").on).toBe(true);

    const trail = await cli(["audit", "--denied", "--json"]);
    const decisions = trail.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).decision);
    expect(decisions).toEqual(expect.arrayContaining(["denied", "rate-limited", "emergency-stop"]));
    const human = await cli(["audit", "--client", "claude-e2e", "-n", "5"]);
    expect(human.stdout).toMatch(/claude-e2e\[\d+\]/);
  });

  it("the MCP emergency-stop tool works from any client, even read-only ones", async () => {
    const cursor = await connect("Cursor");
    s.sim.resetStats();
    const r = (await cursor.callTool({
      name: "loxmcp_emergency_stop",
      arguments: { reason: "test" },
    })) as ToolResult;
    expect(r.isError).toBeFalsy();
    expect(text(r)).toMatch(/Emergency stop is ACTIVE/);
    expect(commandsSent().length).toBeGreaterThan(0);
    expect((await cliAtTerminal(["resume"])).code).toBe(0);
  });

  it("outcome unknown: a write whose answer is lost is reported as unknown, audited, never resent", async () => {
    const c = await connect("claude-e2e");
    s.sim.resetStats();
    s.sim.setFaults({ dropAfterExecute: 1 });
    await expect(command(c, uuidOf("Garden Lights"), "on")).rejects.toThrow();
    expect(commandsSent()).toHaveLength(1);
    const last = (await audit({ client: "claude-e2e", limit: 1 }))[0];
    expect(last).toMatchObject({ tool: "control_command", decision: "allowed", outcome: "unknown" });
    await d!.waitReady(30_000);
  });

  it("through the real shim: elicitation yes/no and a T4 refusal", async () => {
    const shimEnv: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: h.home,
      LOXMCP_HOME: h.home,
    };
    let answer: "accept" | "decline" = "decline";
    const client = new Client(
      { name: "claude-desktop", version: "1.0.0" },
      { capabilities: { elicitation: {} } },
    );
    client.setRequestHandler(ElicitRequestSchema, async () =>
      answer === "accept" ? { action: "accept", content: { confirm: true } } : { action: "decline" },
    );
    await client.connect(
      new StdioClientTransport({ command: process.execPath, args: [SHIM_BIN], env: shimEnv }),
    );
    clients.push(client);
    s.sim.resetStats();
    const opener = uuidOf("Front Door Opener");
    const no = (await client.callTool({
      name: "control_command",
      arguments: { uuid: opener, command: "pulse" },
    })) as ToolResult;
    expect(no.isError).toBe(true);
    expect(text(no)).toMatch(/declined/);
    expect(stateOf("Front Door Opener").pulses).toBe(0);
    answer = "accept";
    const yes = (await client.callTool({
      name: "control_command",
      arguments: { uuid: opener, command: "pulse" },
    })) as ToolResult;
    expect(yes.isError).toBeFalsy();
    expect(stateOf("Front Door Opener").pulses).toBe(1);
    const t4 = (await client.callTool({
      name: "control_command",
      arguments: { uuid: uuidOf("Smoke Detector"), command: "mute" },
    })) as ToolResult;
    expect(text(t4)).toMatch(/never done by an AI/);
    expect(commandsSent()).toHaveLength(1);
    const rows = await audit({ client: "claude-desktop" });
    expect(rows.map((e) => e.decision)).toEqual(["denied", "confirmed", "denied"]);
    expect(rows[1].reason).toMatch(/elicitation/);
  });

  it("refuses writes while the upstream session is not ready", async () => {
    const c = await connect("claude-e2e");
    s.sim.resetStats();
    for (let i = 0; i < s.sim.relayUrls.length; i++) s.sim.killRelay(i);
    await d!.waitStatus((st) => st.state !== "ready", 30_000, "daemon notices the dead relays");
    const r = await command(c, uuidOf("Kitchen Lights"), "off");
    expect(r.isError).toBe(true);
    expect(text(r)).toMatch(/session is (degraded|connecting|resolving|authenticating|starting)/);
    expect(commandsSent()).toEqual([]);
    const rows = await audit({ denied: true, limit: 1 });
    expect(rows[0].reason).toMatch(/not healthy/);
  });
});
