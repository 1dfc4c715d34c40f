/**
 * The page as the daemon's part, without a browser, against the REAL daemon: its HTTP connections
 * count against the daemon's connection limits (and never take the CLI's reserve), a port in use
 * or `page.enabled: false` leave the daemon running without a page (status and `loxmcp open` say
 * why), LOXMCP_PAGE_PORT is validated, and a shim with no notifier around writes nothing but MCP.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { controlCall, RawConnection } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";
import { runCli } from "../../cli/test/helpers.js";
import { spawnShim } from "../../shim/test/helpers.js";
import { checkConfig } from "../src/config.js";

// biome-ignore lint/suspicious/noExplicitAny: loose JSON
type J = any;

let s: SimHandle;
const homes: TempHome[] = [];
const daemons: DaemonProcess[] = [];
const sockets: Socket[] = [];
const raws: RawConnection[] = [];
const servers: Server[] = [];

async function daemonWith(config: Record<string, unknown>, extra: Record<string, string> = {}) {
  const h = makeHome();
  homes.push(h);
  mkdirSync(join(h.home, "config"), { recursive: true, mode: 0o700 });
  writeFileSync(join(h.home, "config", "config.json"), JSON.stringify(config));
  const d = spawnDaemon(s.env(h.home, extra));
  daemons.push(d);
  await d.waitReady(30_000);
  return { h, d };
}

function cliEnv(home: string): Record<string, string> {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: home, LOXMCP_HOME: home };
}

/** A TCP connection to the page that has sent nothing yet; resolves with what the page wrote, if anything. */
async function tcp(port: number): Promise<{ sock: Socket; received: () => string }> {
  const sock = connect(port, "127.0.0.1");
  sockets.push(sock);
  await new Promise((r) => sock.once("connect", r));
  let got = "";
  sock.setEncoding("utf8").on("data", (c: string) => {
    got += c;
  });
  sock.on("error", () => {});
  return { sock, received: () => got };
}

async function mcpClient(socketPath: string, name: string): Promise<{ raw: RawConnection; answer: J }> {
  const r = await RawConnection.open(socketPath);
  raws.push(r);
  await r.send({ jsonrpc: "2.0", method: "loxmcp/hello", params: { kind: "shim", name, pid: 1 } });
  await r.send({
    jsonrpc: "2.0",
    id: "init",
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name, version: "1" } },
  });
  const answer = await r.waitMessage((m) => m.id === "init" || (m.id === null && "error" in m), 15_000);
  return { raw: r, answer };
}

beforeAll(async () => {
  s = await withSimulator();
}, 60_000);

afterAll(async () => {
  for (const x of sockets) x.destroy();
  for (const r of raws) r.close();
  for (const srv of servers) srv.close();
  for (const d of daemons) await d.stop().catch(() => d.kill9());
  await s?.stop();
  for (const h of homes) h.cleanup();
});

describe("the page and the daemon's limits", () => {
  it("page connections count against limits: capped by limits.pageConnections, they shrink the MCP clients' share, never the CLI's reserve", async () => {
    const { d } = await daemonWith({ limits: { maxConnections: 8, controlReserve: 2, pageConnections: 3 } });
    const page = (await d.status()).page as J;
    const port = Number(new URL(page.url).port);
    expect(new URL(page.url).hostname).toBe("127.0.0.1");

    const held = [await tcp(port), await tcp(port), await tcp(port)];
    await d.waitStatus((st) => (st.page as J).connections === 3, 10_000, "3 page connections");
    const before = ((await d.status()).counters as J).refusedConnections as number;
    const fourth = await tcp(port);
    await waitFor(() => fourth.received().includes("503"), { what: "the 4th page connection refused" });
    expect(fourth.received()).toMatch(/too many connections/);

    // MCP clients get maxConnections − controlReserve = 6 slots, 3 of them taken by the page.
    const ok = [];
    for (let i = 0; i < 3; i++) ok.push(await mcpClient(d.socketPath, `c${i}`));
    for (const c of ok) expect(c.answer.result).toBeDefined();
    const refused = await mcpClient(d.socketPath, "c-over");
    expect(refused.answer.error?.code).toBe(-32008);

    // The CLI still gets through, and sees the numbers.
    const st = (await controlCall(d.socketPath, "loxmcp/status")) as J;
    expect(st.page.connections).toBe(3);
    expect(st.counters.refusedConnections).toBeGreaterThanOrEqual(before + 2);

    // The page's connections go away: an MCP client fits again.
    for (const x of held) x.sock.destroy();
    await d.waitStatus((x) => (x.page as J).connections === 0, 10_000, "page connections closed");
    const again = await mcpClient(d.socketPath, "c-again");
    expect(again.answer.result).toBeDefined();
  });

  it("a page port in use, or page.enabled false: the daemon runs without the page and says why", async () => {
    const squatter = createServer();
    servers.push(squatter);
    await new Promise<void>((r) => squatter.listen(0, "127.0.0.1", () => r()));
    const taken = (squatter.address() as { port: number }).port;
    const { h, d } = await daemonWith({}, { LOXMCP_PAGE_PORT: String(taken) });
    const page = (await d.status()).page as J;
    expect(page.url).toBeUndefined();
    expect(page.error).toMatch(new RegExp(`port ${taken} on 127.0.0.1 is in use`));
    const open = await runCli(["open", "--no-browser"], cliEnv(h.home));
    expect(open.code).toBe(1);
    expect(open.stderr).toMatch(/the page is not available: port \d+ on 127\.0\.0\.1 is in use/);
    expect(open.stdout).toBe("");

    const off = await daemonWith({ page: { enabled: false } });
    expect(((await off.d.status()).page as J).enabled).toBe(false);
    const r = await runCli(["open", "--no-browser"], cliEnv(off.h.home));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/the page is off: page\.enabled is false/);
  });

  it("a fixed page port is used as given; LOXMCP_PAGE_PORT and page.port are validated", async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", () => r()));
    const free = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const { h, d } = await daemonWith({ page: { port: free } });
    expect(((await d.status()).page as J).url).toBe(`http://127.0.0.1:${free}/`);
    const open = await runCli(["open", "--no-browser", "--json"], cliEnv(h.home));
    expect(JSON.parse(open.stdout).url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${free}/login#`));

    const bad = checkConfig({ env: { ...s.env(h.home), LOXMCP_PAGE_PORT: "80a" } });
    expect(bad.problems.map((p) => p.key)).toContain("LOXMCP_PAGE_PORT");
    writeFileSync(
      join(h.home, "config", "config.json"),
      JSON.stringify({ page: { port: 70000, open: true } }),
    );
    const file = checkConfig({ env: s.env(h.home) });
    expect(file.problems.map((p) => p.key)).toEqual(
      expect.arrayContaining(["config.json:page.port", "config.json:page.open"]),
    );
  });

  it("a shim with no notifier around answers the held call and writes nothing but MCP to stdout", async () => {
    const { h } = await daemonWith({ policy: { mode: "confirm" } });
    const shim = spawnShim({ ...cliEnv(h.home), PATH: join(h.home, "no-bin") }, ["--name", "claude-desktop"]);
    try {
      shim.send({
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "x", version: "1" } },
      });
      await shim.waitMessage((m) => m.id === 1, "initialize", 20_000);
      shim.send({ jsonrpc: "2.0", method: "notifications/initialized" });
      const door = s.sim.house().controls.find((c) => c.name === "Front Door Intercom")?.uuid;
      shim.send({
        jsonrpc: "2.0",
        id: 2,
        method: "tools/call",
        params: { name: "control_command", arguments: { uuid: door, command: "open" } },
      });
      const r = (await shim.waitMessage((m) => m.id === 2, "the held call", 20_000)) as J;
      expect(r.result._meta["loxmcp/policy"].code).toBe("APPROVAL_REQUIRED");
      const lines = shim.stdout().split("\n").filter(Boolean);
      expect(lines.every((l) => (JSON.parse(l) as J).jsonrpc === "2.0")).toBe(true);
      expect(shim.stdout()).not.toMatch(/\/login#/);
    } finally {
      await shim.kill();
    }
  });
});
