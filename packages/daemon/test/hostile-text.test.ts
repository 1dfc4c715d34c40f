/**
 * Text an MCP client chooses (clientInfo, tool names, arguments, the emergency stop's reason)
 * reaches the person's CLI, the audit and status. Through the REAL shim, daemon and CLI: it can
 * neither break the answers the person needs (a raw-id marker spliced into the middle of a frame
 * made status, audit and resume time out), nor fill the audit, nor drive the person's terminal.
 */
import { statSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { runCli } from "../../cli/test/helpers.js";
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

async function shim(name: string, clientInfo: Record<string, unknown>) {
  const sh = spawnShim(env(), ["--name", name]);
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
});
