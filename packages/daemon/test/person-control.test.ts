/**
 * Person-only control, attacked from where an AI can reach: an MCP client's own stdin (through
 * the REAL shim), a raw connection to the socket as the same user, and a shell without a
 * terminal. The REAL daemon, the simulator's execution log and the REAL CLI decide the verdicts.
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
import { ControlCallError, controlCall, RawConnection } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";
import { CLI_BIN, runCli, SHIM_BIN } from "../../cli/test/helpers.js";
import { type ShimProcess, spawnShim } from "../../shim/test/helpers.js";

// biome-ignore lint/suspicious/noExplicitAny: loose JSON from control methods
type J = any;

const PIN = "482917";
let s: SimHandle;
let h: TempHome;
let d: DaemonProcess;
const shims: ShimProcess[] = [];
const clients: Client[] = [];

function cliEnv(): Record<string, string> {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: h.home, LOXMCP_HOME: h.home };
}
const cli = (args: string[], input?: string) => runCli(args, cliEnv(), input === undefined ? {} : { input });

function uuidOf(name: string): string {
  const c = s.sim.house().controls.find((x) => x.name === name);
  if (!c) throw new Error(`no control ${name}`);
  return c.uuid;
}

/** Executions the simulator recorded for a tool (each counted as often as it ran). */
function executed(tool = "control_command"): Array<{ uuid: string; command: string }> {
  return s.sim
    .stats()
    .executions.filter((e) => e.tool === tool)
    .flatMap((e) => Array.from({ length: e.count }, () => e.arguments as { uuid: string; command: string }));
}

function text(r: J): string {
  return (r?.content ?? []).map((c: J) => c.text ?? "").join("\n");
}

function codeOf(r: J): string {
  const code = /code ([A-Z0-9]{6}) is waiting/.exec(text(r))?.[1];
  if (!code) throw new Error(`no approval code in ${text(r)}`);
  return code;
}

/** A shim driven line by line, as a buggy or compromised MCP client would write to it. */
async function rawShim(
  name: string,
): Promise<ShimProcess & { call(id: number, method: string, params?: unknown): Promise<J> }> {
  const shim = spawnShim(cliEnv(), ["--name", name]);
  shims.push(shim);
  const call = async (id: number, method: string, params: unknown = {}) => {
    shim.send({ jsonrpc: "2.0", id, method, params });
    return shim.waitMessage((m) => m.id === id, `answer to ${method} #${id}`, 20_000);
  };
  const init = await call(1, "initialize", {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name, version: "1.0" },
  });
  expect(init.result).toBeDefined();
  shim.send({ jsonrpc: "2.0", method: "notifications/initialized" });
  return Object.assign(shim, { call });
}

const door = () => ({
  name: "control_command",
  arguments: { uuid: uuidOf("Front Door Intercom"), command: "open" },
});

beforeAll(async () => {
  s = await withSimulator();
  h = makeHome();
  mkdirSync(join(h.home, "config"), { recursive: true, mode: 0o700 });
  writeFileSync(
    join(h.home, "config", "config.json"),
    JSON.stringify({ policy: { mode: "confirm", clients: { cursor: "read-only", "claude-code": "full" } } }),
  );
  d = spawnDaemon(s.env(h.home));
  await d.waitReady(30_000);
  await d.waitStatus((st) => (st.policy as J)?.structure?.controls > 0, 30_000, "structure snapshot");
}, 90_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => {});
  for (const sh of shims) await sh.kill();
  await d?.stop().catch(() => d?.kill9());
  await s?.stop();
  h?.cleanup();
});

describe("person-only control (no PIN set yet)", () => {
  it("an MCP client's stdin cannot approve, resume, relogin, shut down or read the audit through its shim", async () => {
    const shim = await rawShim("claude-desktop");
    s.sim.resetStats();
    const logins = s.sim.stats().logins;
    const pid = (await d.status()).pid;
    const held = await shim.call(2, "tools/call", door());
    const code = codeOf(held.result);
    // The attack: say hello as the CLI, then approve the held call with the "terminal" flag.
    shim.send({ jsonrpc: "2.0", method: "loxmcp/hello", params: { kind: "cli", name: "loxmcp-cli" } });
    const attempts: Array<[string, Record<string, unknown>]> = [
      ["loxmcp/approve", { code, interactive: true }],
      ["loxmcp/relogin", { force: true }],
      ["loxmcp/audit", {}],
      ["loxmcp/status", {}],
      ["loxmcp/pin", { action: "set", newPin: "771199", interactive: true }],
      ["loxmcp/shutdown", {}],
    ];
    let id = 10;
    for (const [method, params] of attempts) {
      const r = await shim.call(id++, method, params);
      expect(r.error?.code, method).toBe(-32601);
      expect(r.error?.message).toMatch(/not available to MCP clients/);
    }
    const again = await shim.call(30, "tools/call", door());
    expect(again.result.isError).toBe(true);
    expect(executed()).toEqual([]);
    expect(s.sim.stats().logins).toBe(logins);
    expect((await d.status()).pid).toBe(pid);
    expect(shim.stdout()).not.toContain('"pending"');

    // With the emergency stop on, the client cannot lift it either.
    expect((await cli(["stop-all"])).code).toBe(0);
    const resume = await shim.call(31, "loxmcp/resume", { interactive: true });
    expect(resume.error?.code).toBe(-32601);
    expect(((await d.status()).policy as J).emergencyStop.active).toBe(true);
    // An agent's shell without a terminal cannot either, and fails at once.
    const piped = await cli(["resume"], "yes\n");
    expect(piped.code).not.toBe(0);
    expect(piped.stderr).toMatch(/interactive terminal/);
    expect(((await d.status()).policy as J).emergencyStop.active).toBe(true);
    // The person at a terminal can.
    const person = await runInPty([process.execPath, CLI_BIN, "resume"], cliEnv(), [['Type "yes"', "yes"]]);
    expect(person.code, person.screen).toBe(0);
    expect(((await d.status()).policy as J).emergencyStop).toBeUndefined();
    await cli(["deny", code]);
  });

  it("a raw MCP connection on the socket is refused control methods and a second hello (audited)", async () => {
    const c = await RawConnection.open(d.socketPath);
    await c.send({
      jsonrpc: "2.0",
      method: "loxmcp/hello",
      params: { kind: "shim", name: "cursor", pid: 1 },
    });
    await c.initialize("x");
    await c.send({ jsonrpc: "2.0", id: 2, method: "loxmcp/approve", params: { list: true } });
    expect(((await c.waitMessage((m) => m.id === 2)).error as J).code).toBe(-32601);
    // Changing identity after the fact: refused, audited, and the rules still see "cursor".
    await c.send({ jsonrpc: "2.0", method: "loxmcp/hello", params: { kind: "cli", name: "claude-code" } });
    s.sim.resetStats();
    await c.send({
      jsonrpc: "2.0",
      id: 3,
      method: "tools/call",
      params: { name: "control_command", arguments: { uuid: uuidOf("Office Lights"), command: "on" } },
    });
    const r = (await c.waitMessage((m) => m.id === 3)).result as J;
    expect(text(r)).toMatch(/read-only/);
    expect(executed()).toEqual([]);
    c.close();
    const rows = ((await controlCall(d.socketPath, "loxmcp/audit", { denied: true })) as J).events as J[];
    expect(rows.some((e) => e.tool === "loxmcp/hello" && /second hello/.test(e.reason))).toBe(true);
    expect(rows.some((e) => e.tool === "loxmcp/approve" && e.client === "cursor")).toBe(true);
    // A control connection cannot turn into an MCP client either.
    const ctl = await RawConnection.open(d.socketPath);
    await ctl.send({ jsonrpc: "2.0", id: 1, method: "loxmcp/status" });
    await ctl.waitMessage((m) => m.id === 1);
    await ctl.send({ jsonrpc: "2.0", id: 2, method: "tools/list" });
    expect(((await ctl.waitMessage((m) => m.id === 2)).error as J).message).toMatch(/control connection/);
    ctl.close();
  });

  it("a raw MCP connection that names nobody is audited as unknown, never as the person's CLI", async () => {
    const c = await RawConnection.open(d.socketPath);
    await c.initialize("");
    await c.send({
      jsonrpc: "2.0",
      id: 2,
      method: "tools/call",
      params: { name: "system_status", arguments: {} },
    });
    await c.waitMessage((m) => m.id === 2);
    const rows = async () =>
      (((await controlCall(d.socketPath, "loxmcp/audit", { limit: 50 })) as J).events as J[]).filter(
        (e) => e.tool === "system_status",
      );
    await waitFor(async () => (await rows()).length > 0, { what: "the read's audit row" });
    expect((await rows()).map((e) => e.client)).toEqual(["unknown"]);
    c.close();
  });

  it("a read-only client that renames itself on stdin (hello, clientInfo) still cannot write", async () => {
    const shim = spawnShim(cliEnv(), ["--name", "cursor"]);
    shims.push(shim);
    shim.send({ jsonrpc: "2.0", method: "loxmcp/hello", params: { kind: "shim", name: "claude-code" } });
    shim.send({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "claude-code", version: "1" },
      },
    });
    await shim.waitMessage((m) => m.id === 1, "initialize", 20_000);
    s.sim.resetStats();
    shim.send({
      jsonrpc: "2.0",
      id: 2,
      method: "tools/call",
      params: { name: "control_command", arguments: { uuid: uuidOf("Office Lights"), command: "on" } },
    });
    const r = (await shim.waitMessage((m) => m.id === 2, "tools/call", 20_000)).result as J;
    expect(text(r)).toMatch(/policy mode for client "cursor" is read-only/);
    expect(executed()).toEqual([]);
  });
});

describe("person-only control with the approval PIN", () => {
  it("the first PIN needs a terminal: piped input fails fast, the terminal prompt (script -qec) works and echoes nothing", async () => {
    const piped = await cli(["pin", "set"], `${PIN}\n${PIN}\n`);
    expect(piped.code).not.toBe(0);
    expect(piped.stderr).toMatch(/interactive terminal/);
    const stdinFlag = await cli(["pin", "set", "--pin-stdin"], `${PIN}\n${PIN}\n`);
    expect(stdinFlag.code).not.toBe(0);
    expect(((await d.status()).policy as J).pin.set).toBe(false);
    const set = await runInPty([process.execPath, CLI_BIN, "pin", "set"], cliEnv(), [
      ["New approval PIN", PIN],
      ["again", PIN],
    ]);
    expect(set.code, set.screen).toBe(0);
    expect(set.screen).toMatch(/approval PIN set/);
    expect(set.screen).not.toContain(PIN);
    expect(((await d.status()).policy as J).pin).toMatchObject({ set: true, failures: 0 });
  });

  it("a client that declares elicitation and accepts its own held T3 action gets nothing executed", async () => {
    let asked = 0;
    const client = new Client({ name: "self-approver", version: "1" }, { capabilities: { elicitation: {} } });
    client.setRequestHandler(ElicitRequestSchema, async () => {
      asked++;
      return { action: "accept", content: { confirm: true } };
    });
    await client.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [SHIM_BIN, "--name", "claude-desktop"],
        env: cliEnv(),
      }),
    );
    clients.push(client);
    s.sim.resetStats();
    const r = await client.callTool(door());
    expect(r.isError).toBe(true);
    expect(asked).toBe(0);
    expect(text(r)).not.toMatch(/loxmcp approve/);
    const again = await client.callTool(door());
    expect(again.isError).toBe(true);
    expect(executed()).toEqual([]);
    await cli(["deny", codeOf(r)]);
  });

  it("approve needs the PIN from anywhere: raw socket refused, a wrong PIN counted, the right one runs the repeat once", async () => {
    const shim = await rawShim("claude-desktop");
    s.sim.resetStats();
    const code = codeOf((await shim.call(2, "tools/call", door())).result);
    // The raw socket as the same user, even claiming a terminal: refused.
    for (const params of [{ code }, { code, interactive: true }, { code, pin: "" }]) {
      const err = await controlCall(d.socketPath, "loxmcp/approve", params).catch((e) => e);
      expect(err).toBeInstanceOf(ControlCallError);
      expect((err as ControlCallError).code).toBe(-32007);
    }
    // The CLI without a terminal and without --pin-stdin: fails at once.
    const noPin = await cli(["approve", code]);
    expect(noPin.code).not.toBe(0);
    expect(noPin.stderr).toMatch(/needs your approval PIN/);
    const wrong = await cli(["approve", code, "--pin-stdin"], "000000\n");
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toMatch(/wrong PIN/);
    expect(((await d.status()).policy as J).pin.failures).toBe(1);
    expect((await shim.call(3, "tools/call", door())).result.isError).toBe(true);
    expect(executed()).toEqual([]);

    const ok = await cli(["approve", code, "--pin-stdin"], `${PIN}\n`);
    expect(ok.code, ok.stderr).toBe(0);
    // Before the PIN, the person is shown what, where and who.
    expect(ok.stderr).toMatch(/claude-desktop asks to send "open" to Intercom "Front Door Intercom" in/);
    expect(((await d.status()).policy as J).pin.failures).toBe(0);
    expect((await shim.call(4, "tools/call", door())).result.isError).toBeFalsy();
    expect((await shim.call(5, "tools/call", door())).result.isError).toBe(true);
    expect(executed()).toHaveLength(1);
    const rows = ((await controlCall(d.socketPath, "loxmcp/audit", {})) as J).events as J[];
    expect(rows.filter((e) => /wrong PIN/.test(e.reason ?? "")).length).toBeGreaterThanOrEqual(1);
    expect(JSON.stringify(rows)).not.toContain(PIN);
  });

  it("junk held calls never evict a code the person approved (capped per client instead)", async () => {
    // A firmware update adds a write tool that takes no target; the person accepts it.
    const toolChanges = async () => (((await d.status()).policy as J)?.toolChanges ?? []) as string[];
    s.sim.changeTools({
      add: [{ name: "bulk_scene", annotations: { readOnlyHint: false, destructiveHint: true } }],
    });
    await waitFor(async () => (await toolChanges()).includes("new tool bulk_scene"), {
      timeoutMs: 20_000,
      what: "the daemon notices bulk_scene",
    });
    expect((await cli(["tools", "accept", "--pin-stdin"], `${PIN}\n`)).code).toBe(0);

    const shim = await rawShim("claude-desktop");
    s.sim.resetStats();
    const code = codeOf((await shim.call(2, "tools/call", door())).result);
    expect((await cli(["approve", code, "--pin-stdin"], `${PIN}\n`)).code).toBe(0);
    // 40 junk calls that each need the person (a write tool whose target cannot be checked).
    let last: J;
    for (let i = 0; i < 40; i++) {
      last = await shim.call(100 + i, "tools/call", { name: "bulk_scene", arguments: { n: i } });
      if (i === 0) expect(text(last.result)).toMatch(/held for the person's approval.*bulk_scene may write/s);
    }
    expect(text(last.result)).toMatch(/already waiting for the person's approval \(at most 8\)/);
    const listed = JSON.parse((await cli(["approve", "--list", "--json"])).stdout).pending as J[];
    expect(listed.filter((p) => p.tool === "bulk_scene")).toHaveLength(7);
    expect(listed.find((p) => p.code === code)?.approved).toBe(true);
    expect((await shim.call(3, "tools/call", door())).result.isError).toBeFalsy();
    expect(executed()).toHaveLength(1);
    expect(executed("bulk_scene")).toEqual([]);
    for (const p of listed.filter((x) => !x.approved)) await cli(["deny", p.code]);

    // The firmware goes back; the person accepts that too, so the catalogue is the original again.
    s.sim.resetTools();
    await waitFor(async () => (await toolChanges()).includes("tool bulk_scene was removed"), {
      timeoutMs: 20_000,
      what: "the daemon notices bulk_scene is gone",
    });
    expect((await cli(["tools", "accept", "--pin-stdin"], `${PIN}\n`)).code).toBe(0);
  });

  it("a changed tool catalogue is held until the person accepts it, and never blocks stop-all", async () => {
    s.sim.resetStats();
    const before = (await d.status()).counters as J;
    s.sim.changeTools({
      add: [{ name: "door_unlock", write: true }],
      annotations: { control_command: { readOnlyHint: true } },
    });
    await waitFor(async () => (((await d.status()).policy as J)?.toolChanges ?? []).length === 2, {
      timeoutMs: 20_000,
      what: "the daemon notices the new catalogue",
    });
    const shim = await rawShim("claude-code"); // full mode: nothing else would stop these writes
    const added = await shim.call(2, "tools/call", {
      name: "door_unlock",
      arguments: { uuid: uuidOf("Front Door Intercom"), command: "open" },
    });
    expect(text(added.result)).toMatch(/new tool door_unlock .*held/);
    const changed = await shim.call(3, "tools/call", {
      name: "control_command",
      arguments: { uuid: uuidOf("Office Lights"), command: "on" },
    });
    expect(text(changed.result)).toMatch(/tool control_command changed its annotations/);
    expect(executed("door_unlock")).toEqual([]);
    expect(executed()).toEqual([]);

    const diff = await cli(["tools", "diff"]);
    expect(diff.stdout).toMatch(/\+ new tool\s+door_unlock/);
    expect(diff.stdout).toMatch(/~ changed\s+control_command: annotations/);
    // The daemon's own emergency stop still works, and needs no PIN.
    const stop = await cli(["stop-all", "--json"]);
    expect(stop.code, stop.stderr).toBe(0);
    expect(executed().length).toBeGreaterThan(0);
    expect(executed().every((a) => a.command === "stop")).toBe(true);

    const noTerminal = await cli(["tools", "accept"]);
    expect(noTerminal.code).not.toBe(0);
    const accept = await cli(["tools", "accept", "--pin-stdin"], `${PIN}\n`);
    expect(accept.code, accept.stderr).toBe(0);
    expect(((await d.status()).policy as J).toolChanges).toBeUndefined();
    expect((await cli(["resume", "--pin-stdin"], `${PIN}\n`)).code).toBe(0);
    s.sim.resetStats();
    const now = await shim.call(4, "tools/call", {
      name: "control_command",
      arguments: { uuid: uuidOf("Office Lights"), command: "on" },
    });
    expect(now.result.isError).toBeFalsy();
    expect(executed()).toHaveLength(1);
    expect((await d.status()).counters).toBeDefined();
    expect(before).toBeDefined();
    s.sim.resetTools();
  });

  it("five wrong PINs delay further attempts, also after a daemon restart; stop-all is never delayed", async () => {
    for (let i = 0; i < 5; i++) {
      const r = await cli(["resume", "--pin-stdin"], `99887${i}\n`);
      expect(r.code).toBe(0); // nothing to lift: resume asks for no PIN when no stop is active
    }
    expect((await cli(["stop-all"])).code).toBe(0);
    for (let i = 0; i < 5; i++) {
      const r = await cli(["resume", "--pin-stdin"], `99887${i}\n`);
      expect(r.stderr).toMatch(/wrong PIN/);
    }
    let pin = ((await d.status()).policy as J).pin;
    expect(pin).toMatchObject({ failures: 5 });
    expect(pin.lockedForSec).toBeGreaterThan(50);
    await d.stop();
    d = spawnDaemon(s.env(h.home));
    await d.waitReady(30_000);
    pin = ((await d.status()).policy as J).pin;
    expect(pin.lockedForSec).toBeGreaterThan(40);
    const right = await cli(["resume", "--pin-stdin"], `${PIN}\n`);
    expect(right.code).not.toBe(0);
    expect(right.stderr).toMatch(/too many wrong PINs/);
    expect(((await d.status()).policy as J).emergencyStop.active).toBe(true);
    expect((await cli(["stop-all"])).code).toBe(0);
  });
});
