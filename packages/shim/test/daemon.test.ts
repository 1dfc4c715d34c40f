/**
 * The shim as Claude runs it (a child process over stdio, driven by the SDK Client +
 * StdioClientTransport) against the REAL daemon, started by the shim itself, and the simulator.
 */
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { ErrorCodes, resolvePaths } from "@loxmcp/common";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import {
  ElicitRequestSchema,
  McpError,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  DAEMON_BIN,
  type DaemonProcess,
  type DaemonStatus,
  spawnDaemon,
} from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { controlCall } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";
import { baseEnv, SHIM_BIN } from "./helpers.js";

/** Live daemon processes whose environment has LOXMCP_HOME=<home> (Linux /proc). */
function daemonPids(home: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8");
      if (!cmdline.includes("loxmcpd.js")) continue;
      const environ = readFileSync(`/proc/${entry}/environ`, "utf8").split("\0");
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      if (/\) Z /.test(stat)) continue; // zombie
      if (environ.includes(`LOXMCP_HOME=${home}`)) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

describe("shim + real daemon + simulator", () => {
  let home: TempHome;
  let sim: SimHandle;
  let env: Record<string, string>;
  let clients: Array<{ client: Client; transport: StdioClientTransport }> = [];
  let transportErrors: string[] = [];

  beforeEach(async () => {
    home = makeHome();
    sim = await withSimulator();
    env = baseEnv(sim.env(home.home, { LOXMCP_DAEMON_BIN: DAEMON_BIN, LOXMCP_POLICY: "full" }));
  });

  afterEach(async () => {
    for (const c of clients) await c.client.close().catch(() => {});
    clients = [];
    transportErrors = [];
    for (const pid of daemonPids(home.home)) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {}
      await waitFor(() => !alive(pid), { what: `daemon ${pid} to exit`, timeoutMs: 10_000 }).catch(() => {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      });
    }
    await sim.stop();
    home.cleanup();
  });

  async function connect(
    name: string,
    elicit?: (message: string) => { action: "accept" | "decline"; content?: Record<string, unknown> },
  ): Promise<{ client: Client; transport: StdioClientTransport }> {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [SHIM_BIN, "--name", name],
      env,
      stderr: "pipe",
    });
    const client = new Client(
      { name: `${name}-info`, version: "1.0.0" },
      elicit ? { capabilities: { elicitation: {} } } : {},
    );
    if (elicit)
      client.setRequestHandler(ElicitRequestSchema, async (req) => elicit(String(req.params.message)));
    // Anything on the shim's stdout that is not MCP would surface here.
    client.onerror = (e) => transportErrors.push(`${name}: ${e.message}`);
    const entry = { client, transport };
    clients.push(entry);
    await client.connect(transport);
    return entry;
  }

  const socket = () => resolvePaths({ LOXMCP_HOME: home.home }).socket;
  const status = async () => (await controlCall(socket(), "loxmcp/status")) as DaemonStatus;

  it("without LOXMCP_DAEMON_BIN the bundled shim starts the daemon package next to it", async () => {
    // bin/loxmcp-shim.js loads the esbuild bundle (dist/loxmcp-shim.cjs); the daemon is found
    // relative to the bundle's own location, so this proves the bundle's import.meta rewrite.
    delete env.LOXMCP_DAEMON_BIN;
    const { client } = await connect("no-daemon-bin");
    const { tools } = await client.listTools();
    expect(tools.length).toBeGreaterThan(0);
    const [pid] = daemonPids(home.home);
    expect(pid).toBeDefined();
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
    expect(argv).toContain(DAEMON_BIN);
    expect(argv).toContain("--max-semi-space-size=1");
  });

  it("a bundled shim with no daemon package beside it resolves @loxmcp/daemon through node_modules", async () => {
    // Layout: <tmp>/vendor/shim/{bin,dist} (no <tmp>/vendor/daemon) and
    // <tmp>/node_modules/@loxmcp/daemon -> the workspace daemon: only the bundle's
    // import.meta.resolve rewrite (require.resolve from the bundle's own directory) can find it.
    delete env.LOXMCP_DAEMON_BIN;
    const tmp = mkdtempSync(join(tmpdir(), "lxshim-"));
    try {
      const shimDir = join(tmp, "vendor", "shim");
      for (const f of ["bin/loxmcp-shim.js", "bin/package.json", "dist/loxmcp-shim.cjs"]) {
        mkdirSync(dirname(join(shimDir, f)), { recursive: true });
        copyFileSync(join(SHIM_BIN, "..", "..", f), join(shimDir, f));
      }
      mkdirSync(join(tmp, "node_modules", "@loxmcp"), { recursive: true });
      symlinkSync(join(DAEMON_BIN, "..", ".."), join(tmp, "node_modules", "@loxmcp", "daemon"));
      const transport = new StdioClientTransport({
        command: process.execPath,
        args: [join(shimDir, "bin", "loxmcp-shim.js"), "--name", "vendored"],
        env,
        stderr: "pipe",
      });
      const client = new Client({ name: "vendored-info", version: "1.0.0" });
      clients.push({ client, transport });
      await client.connect(transport);
      expect((await client.listTools()).tools.length).toBeGreaterThan(0);
      const [pid] = daemonPids(home.home);
      expect(pid).toBeDefined();
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
      expect(argv).toContain(DAEMON_BIN);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  });

  it("initialize, tools/list and tools/call through the shim, which started the daemon", async () => {
    const { client, transport } = await connect("claude-test");
    expect(client.getServerVersion()?.name).toBeTruthy();
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name);
    expect(names).toContain("control_find");
    const res = await client.callTool({ name: "control_find", arguments: { query: "" } });
    expect(res.isError).toBeFalsy();
    expect(JSON.stringify(res.content)).toContain("controls");

    const st = await status();
    expect(daemonPids(home.home)).toEqual([st.pid]);
    const me = st.clients.find((c) => c.pid === transport.pid);
    expect(me).toMatchObject({ name: "claude-test", pid: transport.pid, ppid: process.pid });
    expect(transportErrors).toEqual([]);
  });

  it("several shims racing with no daemon start exactly one daemon and share one login", async () => {
    const n = 4;
    const all = await Promise.all(Array.from({ length: n }, (_, i) => connect(`racer-${i}`)));
    await Promise.all(
      all.map(async ({ client }) => {
        await client.listTools();
        const r = await client.callTool({ name: "control_find", arguments: { query: "light" } });
        expect(r.isError).toBeFalsy();
      }),
    );
    const st = await status();
    expect(daemonPids(home.home)).toEqual([st.pid]);
    expect(st.clients.filter((c) => String(c.name).startsWith("racer-"))).toHaveLength(n);
    expect(sim.sim.stats().logins).toBe(1);
    expect(transportErrors).toEqual([]);
  });

  it("survives kill -9 of the daemon: in-flight call errors, daemon restarts, next call works, no duplicate write", async () => {
    const { client, transport } = await connect("killer");
    let listChanged = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      listChanged++;
    });
    const light = sim.sim.house().controls.find((c) => c.type === "LightControllerV2");
    if (!light) throw new Error("simulator has no LightControllerV2");
    const first = await status();

    // Keep a write in flight at the simulator, then kill the daemon under it.
    sim.sim.setFaults({ latencyMs: 1_500 });
    const before = sim.sim.stats().mcpRequests;
    const inflight = client.callTool({
      name: "control_command",
      arguments: { uuid: light.uuid, command: "on" },
    });
    const settled = inflight.then(
      () => undefined,
      (e: unknown) => e,
    );
    await waitFor(() => sim.sim.stats().mcpRequests > before, { what: "the write reached the simulator" });
    process.kill(first.pid, "SIGKILL");

    const err = await settled;
    expect(err).toBeInstanceOf(McpError);
    expect((err as McpError).code).toBe(ErrorCodes.RequestAborted);
    expect((err as McpError).message).toContain("not resent");
    sim.sim.setFaults({ latencyMs: 0 });

    // The shim survived, restarts the daemon on the next call, and that call works.
    expect(alive(transport.pid!)).toBe(true);
    const res = await client.callTool({
      name: "control_command",
      arguments: { uuid: light.uuid, command: "off" },
    });
    expect(res.isError).toBeFalsy();
    const second = await status();
    expect(second.pid).not.toBe(first.pid);
    expect(daemonPids(home.home)).toEqual([second.pid]);
    await waitFor(() => listChanged > 0, { what: "tools/list_changed after the reconnect" });
    expect(second.clients.find((c) => c.pid === transport.pid)).toMatchObject({ name: "killer" });

    // The interrupted write ran at most once; nothing resent it.
    const runs = (command: string) =>
      sim.sim
        .stats()
        .executions.filter(
          (e) => e.tool === "control_command" && (e.arguments as { command?: string }).command === command,
        )
        .reduce((sum, e) => sum + e.count, 0);
    expect(runs("on")).toBeLessThanOrEqual(1);
    expect(runs("off")).toBe(1);
  });

  it("routes the daemon's elicitation to the client through the shim and the answer back", async () => {
    env = { ...env, LOXMCP_POLICY: "confirm" };
    const asked: string[] = [];
    const { client } = await connect("asker", (m) => {
      asked.push(m);
      return { action: "accept", content: { confirm: true } };
    });
    const door = sim.sim.house().controls.find((c) => c.type === "Intercom" || /door/i.test(c.name));
    if (!door) throw new Error("simulator has no door control");
    sim.sim.resetStats();
    const res = await client.callTool({
      name: "control_command",
      arguments: { uuid: door.uuid, command: "open" },
    });
    expect(res.isError, JSON.stringify(res.content)).toBeFalsy();
    expect(asked).toHaveLength(1);
    expect(asked[0]).toContain(door.name);
    expect(sim.sim.stats().executions.filter((e) => e.tool === "control_command")).toHaveLength(1);
  });

  it("reconnects by itself to a daemon restarted by someone else (service manager) and tells the client", async () => {
    const { client, transport } = await connect("patient");
    let listChanged = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      listChanged++;
    });
    await client.listTools();
    const first = await status();
    await controlCall(socket(), "loxmcp/shutdown");
    await waitFor(() => !alive(first.pid), { what: "the first daemon to exit" });

    let second: DaemonProcess | undefined;
    try {
      second = spawnDaemon(sim.env(home.home, { LOXMCP_POLICY: "full" }));
      await second.waitReady();
      // No client request needed: the shim's backoff probes find the new daemon and replay initialize.
      await waitFor(() => listChanged > 0, {
        what: "tools/list_changed after the reconnect",
        timeoutMs: 20_000,
      });
      const st = await status();
      expect(st.pid).toBe(second.pid);
      expect(st.clients.find((c) => c.pid === transport.pid)).toMatchObject({ name: "patient" });
      const res = await client.callTool({ name: "control_find", arguments: { query: "" } });
      expect(res.isError).toBeFalsy();
      expect(daemonPids(home.home)).toEqual([second.pid]);
    } finally {
      await client.close();
      await second?.stop();
    }
  });
});
