/**
 * Text an MCP client chooses (clientInfo, tool names, arguments, the emergency stop's reason)
 * reaches the person's CLI, the audit and status. Through the REAL shim, daemon and CLI: it can
 * neither break the answers the person needs (a raw-id marker spliced into the middle of a frame
 * made status, audit and resume time out), nor fill the audit, nor drive the person's terminal.
 */
import { statSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { runInPty } from "../../../test-support/pty.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { CLI_BIN, runCli } from "../../cli/test/helpers.js";
import { type ShimProcess, spawnShim } from "../../shim/test/helpers.js";

// biome-ignore lint/suspicious/noExplicitAny: loose JSON-RPC frames
type J = any;

const MARKER = "\u0000num:-";
let s: SimHandle;
let h: TempHome;
let d: DaemonProcess;
const shims: ShimProcess[] = [];

const env = () => ({ PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: h.home, LOXMCP_HOME: h.home });
const cli = (args: string[]) => runCli(args, env());

async function shim(name: string | null, clientInfo: Record<string, unknown>) {
  const sh = spawnShim(env(), name === null ? [] : ["--name", name]);
  shims.push(sh);
  let id = 1;
  const call = async (method: string, params: unknown = {}) => {
    const n = id++;
    sh.send({ jsonrpc: "2.0", id: n, method, params });
    return sh.waitMessage((m) => m.id === n, method, 20_000) as Promise<J>;
  };
  await call("initialize", { protocolVersion: "2025-06-18", capabilities: {}, clientInfo });
  sh.send({ jsonrpc: "2.0", method: "notifications/initialized" });
  return call;
}

beforeAll(async () => {
  s = await withSimulator();
  // A write tool without a checkable target, in the first catalogue the daemon sees (so trusted).
  s.sim.changeTools({
    add: [{ name: "bulk_scene", annotations: { readOnlyHint: false, destructiveHint: true } }],
  });
  h = makeHome();
  d = spawnDaemon(s.env(h.home));
  await d.waitReady(30_000);
}, 60_000);

afterAll(async () => {
  for (const sh of shims) await sh.kill();
  await d?.stop().catch(() => d?.kill9());
  await s?.stop();
  h?.cleanup();
});

describe("text chosen by an MCP client", () => {
  it("a raw-id marker in clientInfo, a tool name, arguments or the stop reason breaks no answer", async () => {
    const call = await shim("marker", { name: MARKER, version: MARKER });
    await call("tools/call", { name: MARKER, arguments: { a: MARKER } });
    await call("tools/call", { name: "loxmcp_emergency_stop", arguments: { reason: MARKER } });
    const status = await cli(["status", "--json"]);
    expect(status.stderr).toBe("");
    expect(JSON.parse(status.stdout).policy.emergencyStop.reason).toBe(MARKER);
    const audit = await cli(["audit", "--json"]);
    expect(audit.code, audit.stderr).toBe(0);
    expect(audit.stdout).toContain("\\u0000num:-");
    // The person can still lift the stop (resume reads status first).
    const list = await cli(["approve", "--list"]);
    expect(list.code, list.stderr).toBe(0);
    const resume = await cli(["resume"]);
    expect(resume.stderr).toMatch(/interactive terminal/);
    const lifted = await runInPty([process.execPath, CLI_BIN, "resume"], env(), [['Type "yes"', "yes"]]);
    expect(lifted.screen).toMatch(/lifted/);
  });

  it("huge arguments and tool names are cut in the audit, not stored whole", async () => {
    const call = await shim("big", { name: "big", version: "1" });
    const db = d.paths.db;
    const before = statSync(db).size + (statSync(`${db}-wal`, { throwIfNoEntry: false })?.size ?? 0);
    for (let i = 0; i < 10; i++) {
      await call("tools/call", { name: `nope-${"N".repeat(5000)}`, arguments: { x: "A".repeat(1_000_000) } });
    }
    const after = statSync(db).size + (statSync(`${db}-wal`, { throwIfNoEntry: false })?.size ?? 0);
    expect(after - before).toBeLessThan(2 * 1024 * 1024);
    const rows = (await cli(["audit", "--json", "--client", "big"])).stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(rows.length).toBeGreaterThanOrEqual(10);
    for (const r of rows) {
      expect(r.tool.length).toBeLessThan(200);
      expect(JSON.stringify(r.args).length).toBeLessThan(2200);
    }
  });

  it("escape sequences in names never reach the person's terminal raw", async () => {
    const evil = "\u001b[1A\u001b[2K\u001b]0;pwned\u0007HIDDEN";
    const call = await shim("esc", { name: evil, version: "1" });
    await call("tools/call", { name: evil, arguments: {} });
    const audit = await cli(["audit", "-n", "5"]);
    expect(audit.code).toBe(0);
    expect(audit.stdout).toContain("\\x1b[1A");
    expect(audit.stdout).not.toContain("\u001b");
    expect(audit.stdout).not.toContain("\u0007");
  });

  it("approvals are bound to the shim's --name: an unnamed client calling itself the same cannot use or crowd them", async () => {
    const real = await shim("claude-desktop", { name: "claude-desktop", version: "1" });
    const impostor = await shim(null, { name: "Claude-Desktop", version: "1" });
    const call = { name: "bulk_scene", arguments: { scene: "all-off" } };
    const held = await real("tools/call", call);
    const code = /code ([A-Z0-9]{6}) is waiting/.exec(held.result.content[0].text)?.[1] ?? "";
    expect(code).toHaveLength(6);
    const ok = await runInPty([process.execPath, CLI_BIN, "approve", code], env(), [['Type "yes"', "yes"]]);
    expect(ok.code, ok.screen).toBe(0);
    // The impostor repeats the identical call: held under its own name, the approval untouched.
    const theirs = await impostor("tools/call", call);
    expect(theirs.result.isError).toBe(true);
    expect(theirs.result.content[0].text).toMatch(/held for the person's approval/);
    const list = JSON.parse((await cli(["approve", "--list", "--json"])).stdout).pending as J[];
    expect(list.find((p) => p.code === code)).toMatchObject({ approved: true, client: "claude-desktop" });
    expect(list.some((p) => p.client === 'unnamed client (calls itself "Claude-Desktop")')).toBe(true);
    const mine = await real("tools/call", call);
    expect(mine.result.isError).toBeFalsy();
    for (const p of list.filter((x) => !x.approved)) await cli(["deny", p.code]);
  });

  it("a held call without a checkable target is shown to the person with every argument", async () => {
    const call = await shim("args", { name: "args", version: "1" });
    const args = { harmless: "h".repeat(150), token: "rm-rf-everything" };
    const held = await call("tools/call", { name: "bulk_scene", arguments: args });
    const code = /code ([A-Z0-9]{6}) is waiting/.exec(held.result.content[0].text)?.[1] ?? "";
    const list = JSON.parse((await cli(["approve", "--list", "--json"])).stdout).pending as J[];
    const entry = list.find((p) => p.code === code);
    expect(JSON.parse(entry.arguments)).toEqual(args);
    const shown = await cli(["approve", code]);
    expect(shown.stderr).toContain("rm-rf-everything");
    expect(shown.stderr).toMatch(/arguments, exactly as they will be sent/);
    await cli(["deny", code]);
  });

  it("idle control connections do not keep the person's stop-all out", async () => {
    const socks: Socket[] = [];
    for (let i = 0; i < 90; i++) {
      const sock = connect(d.socketPath);
      sock.on("error", () => {});
      sock.resume();
      sock.write('{"jsonrpc":"2.0","method":"loxmcp/hello","params":{"kind":"cli","name":"squatter"}}\n');
      socks.push(sock);
    }
    try {
      await new Promise((r) => setTimeout(r, 7_000));
      const stop = await cli(["stop-all", "--json"]);
      expect(stop.code, stop.stderr).toBe(0);
      expect((await cli(["status", "--json"])).stdout).toContain('"state"');
    } finally {
      for (const x of socks) x.destroy();
    }
  });
});
