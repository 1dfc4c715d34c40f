/**
 * When the daemon the shim starts cannot run because of something the person must fix, the MCP
 * client (and so the AI, and the person reading its error) gets the daemon's own line naming the
 * key and the fix — on initialize and on every request — not "daemon not reachable". Real shim,
 * real daemon, the SDK client over stdio; the read-only LOXMCP_HOME case runs as another user.
 */
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ErrorCodes, resolvePaths } from "@loxmcp/common";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DAEMON_BIN } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { controlCall } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";
import { baseEnv, type Msg, SHIM_BIN, spawnShim } from "./helpers.js";

const INIT = {
  jsonrpc: "2.0",
  id: 0,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } },
};

let home: TempHome;
let sim: SimHandle;

beforeEach(async () => {
  home = makeHome();
  sim = await withSimulator();
});

afterEach(async () => {
  // a daemon the shim started (the recovery case): stop it through its socket
  const socket = resolvePaths({ LOXMCP_HOME: home.home }).socket;
  if (existsSync(socket)) await controlCall(socket, "loxmcp/shutdown", {}).catch(() => {});
  await waitFor(() => !existsSync(socket), { what: "daemon gone", timeoutMs: 10_000 }).catch(() => {});
  await sim.stop();
  home.cleanup();
});

describe("the daemon's own start error reaches the MCP client", () => {
  it("SDK client: initialize fails with the daemon's line naming LOXMCP_POLICY and the fix", async () => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [SHIM_BIN, "--name", "claude-test"],
      env: baseEnv(sim.env(home.home, { LOXMCP_DAEMON_BIN: DAEMON_BIN, LOXMCP_POLICY: "readonly" })),
      stderr: "pipe",
    });
    const client = new Client({ name: "t", version: "1" });
    const err = await client.connect(transport).then(
      () => undefined,
      (e: unknown) => e,
    );
    await client.close().catch(() => {});
    expect(err).toBeInstanceOf(McpError);
    const e = err as McpError;
    expect(e.code).toBe(ErrorCodes.DaemonUnreachable);
    expect(e.message).toContain(
      'loxmcpd cannot start: LOXMCP_POLICY "readonly" is not one of read-only, confirm, full (did you mean "read-only"?)',
    );
    expect(e.message).toContain("fix LOXMCP_POLICY in the environment");
    expect(e.message).not.toContain("not reachable");
    expect(e.message).not.toContain(sim.sim.password);
    expect(e.data).toMatchObject({ exitCode: 78 });
  });

  it("every request gets it; once config.json is fixed the next request starts the daemon", async () => {
    const configDir = join(home.home, "config");
    mkdirSync(configDir, { recursive: true, mode: 0o700 });
    const file = join(configDir, "config.json");
    writeFileSync(file, JSON.stringify({ policy: { rateLimit: { motorPerMinute: 2 }, mode: "ful" } }));
    const s = spawnShim(sim.env(home.home, { LOXMCP_DAEMON_BIN: DAEMON_BIN }));
    try {
      s.send(INIT);
      const first = await s.waitMessage((m) => m.id === 0, "initialize error", 20_000);
      const e0 = first.error as { code: number; message: string; data: Record<string, unknown> };
      expect(e0.code).toBe(ErrorCodes.DaemonUnreachable);
      expect(e0.message).toMatch(/^loxmcpd cannot start: /);
      expect(e0.message).toContain('unknown key "policy.rateLimit" (did you mean "policy.rateLimits"?)');
      expect(e0.message).toContain("1 more problem: config.json:policy.mode");
      // every problem, as data, for a client that shows it
      const problems = e0.data.problems as Array<{ key: string }>;
      expect(problems.map((p) => p.key)).toEqual(["config.json:policy.rateLimit", "config.json:policy.mode"]);

      s.send({ jsonrpc: "2.0", id: 1, method: "tools/list" });
      const second = await s.waitMessage((m) => m.id === 1, "tools/list error", 20_000);
      expect((second.error as { message: string }).message).toBe(e0.message);

      writeFileSync(file, JSON.stringify({ policy: { rateLimits: { motorPerMinute: 2 } } }));
      s.send({ ...INIT, id: 2 });
      const ok: Msg = await s.waitMessage((m) => m.id === 2, "initialize after the fix", 30_000);
      expect(ok.error, JSON.stringify(ok.error)).toBeUndefined();
      expect(ok.result).toBeDefined();
    } finally {
      await s.kill();
    }
  });
});

const canSwitchUser = process.getuid?.() === 0 && existsSync("/usr/bin/setpriv");
if (!canSwitchUser) {
  console.warn("skipping the read-only LOXMCP_HOME shim test: needs root and setpriv to run as another user");
}

describe.runIf(canSwitchUser)("a LOXMCP_HOME the user cannot write (as uid 65534)", () => {
  it("the client gets one line naming the directory and the fix", async () => {
    const parent = join(home.home, "ro");
    mkdirSync(parent, { mode: 0o755 });
    chmodSync(home.home, 0o755); // reachable by the other user; `parent` stays root's
    const loxHome = join(parent, "x");
    const env = baseEnv(sim.env(loxHome, { LOXMCP_DAEMON_BIN: DAEMON_BIN, HOME: "/nonexistent" }));
    const child = spawn(
      "setpriv",
      ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, SHIM_BIN],
      { env, stdio: ["pipe", "pipe", "pipe"] },
    );
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    child.stdin.write(`${JSON.stringify(INIT)}\n`);
    try {
      const line = await waitFor(() => out.split("\n").find((l) => l.includes('"id":0')), {
        what: "initialize answer",
        timeoutMs: 20_000,
      });
      const msg = JSON.parse(line) as { error: { code: number; message: string } };
      expect(msg.error.code).toBe(ErrorCodes.DaemonUnreachable);
      expect(msg.error.message).toBe(
        `loxmcpd cannot start: cannot create ${join(loxHome, "state")}: permission denied: ${parent} is not writable for you (uid 65534) — it belongs to uid 0: set LOXMCP_HOME to a directory you own (e.g. mkdir -m 700 ~/.loxmcp and LOXMCP_HOME=~/.loxmcp), or ask its owner`,
      );
    } finally {
      child.kill("SIGKILL");
    }
    // the unprivileged user really could not write there (so the test is not vacuous)
    const probe = spawnSync("setpriv", [
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      "mkdir",
      loxHome,
    ]);
    expect(probe.status).not.toBe(0);
  });
});
