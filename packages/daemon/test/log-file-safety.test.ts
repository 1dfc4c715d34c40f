/**
 * The daemon log is opened without following links (O_NOFOLLOW) and must be a regular file of
 * ours: a link planted at <LOXMCP_HOME>/log/daemon.log must not make the daemon (or the shim
 * that starts it) chmod or append to whatever it points at. The real daemon refuses to start,
 * exit 78, with one line naming the path and "remove it".
 */
import { spawn } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { resolvePaths } from "@loxmcp/common";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DAEMON_BIN, type DaemonProcess, REPO_ROOT, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { controlCall } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";

const EX_CONFIG = 78;

describe("the daemon log file is never followed through a link", () => {
  let home: TempHome;
  let sim: SimHandle;
  let logFile: string;
  let target: string;
  let daemons: DaemonProcess[] = [];
  const daemon = (env: Record<string, string>) => {
    const d = spawnDaemon(env);
    daemons.push(d);
    return d;
  };

  beforeEach(async () => {
    home = makeHome();
    sim = await withSimulator();
    const logDir = join(home.home, "log");
    mkdirSync(logDir, { mode: 0o700 });
    logFile = join(logDir, "daemon.log");
    // Something of the person's that a planted link points at.
    target = join(home.home, "precious.txt");
    writeFileSync(target, "the person's file\n");
    chmodSync(target, 0o644);
  });

  afterEach(async () => {
    // A daemon that started although it should have refused must not outlive the test.
    for (const d of daemons) await d.kill9();
    daemons = [];
    const socket = resolvePaths({ LOXMCP_HOME: home.home }).socket;
    if (existsSync(socket)) await controlCall(socket, "loxmcp/shutdown").catch(() => {});
    await sim.stop();
    home.cleanup();
  });

  const unchanged = () => {
    expect(readFileSync(target, "utf8")).toBe("the person's file\n");
    expect(statSync(target).mode & 0o777).toBe(0o644);
  };

  it("a symlink at the log path: the daemon refuses to start and leaves the target alone", async () => {
    symlinkSync(target, logFile);
    const d = daemon(sim.env(home.home));
    const exit = await d.waitExit(20_000);
    expect(exit.code).toBe(EX_CONFIG);
    expect(d.stderr()).toBe(
      `loxmcpd: refusing the log file ${logFile}: it is a symbolic link; remove it (the daemon creates a new one) and start again\n`,
    );
    unchanged();
  });

  it("a symlink at the log path: a shim starting the daemon does not append its output to the target", async () => {
    symlinkSync(target, logFile);
    const shim = spawn(process.execPath, [join(REPO_ROOT, "packages/shim/bin/loxmcp-shim.js")], {
      env: { PATH: process.env.PATH ?? "", ...sim.env(home.home, { LOXMCP_DAEMON_BIN: DAEMON_BIN }) },
      stdio: "pipe",
    });
    try {
      let out = "";
      shim.stdout.setEncoding("utf8").on("data", (s: string) => {
        out += s;
      });
      shim.stdin.write(
        `${JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } } })}\n`,
      );
      const line = await waitFor(() => out.split("\n").find((l) => l.includes('"id":1')), {
        what: "the shim's answer",
        timeoutMs: 20_000,
      });
      const answer = JSON.parse(line) as { error?: { message?: string; data?: { exitCode?: number } } };
      // the client gets the daemon's own reason, not a bare "not reachable"
      expect(answer.error?.message).toContain(`loxmcpd cannot start: refusing the log file ${logFile}`);
      expect(answer.error?.data?.exitCode).toBe(EX_CONFIG);
      unchanged();
    } finally {
      shim.kill("SIGKILL");
    }
  });

  it.runIf(process.getuid?.() === 0)("a log file owned by another user is refused too", async () => {
    writeFileSync(logFile, "");
    chownSync(logFile, 65534, 65534);
    const d = daemon(sim.env(home.home));
    const exit = await d.waitExit(20_000);
    expect(exit.code).toBe(EX_CONFIG);
    expect(d.stderr()).toContain(`refusing the log file ${logFile}: it is owned by uid 65534`);
    expect(d.stderr()).toContain("remove it");
  });

  it("a regular log file of ours is appended to and kept 0600", async () => {
    writeFileSync(logFile, "earlier line\n");
    chmodSync(logFile, 0o644);
    const d = daemon(sim.env(home.home));
    try {
      await d.waitReady();
    } finally {
      await d.stop();
    }
    expect(readFileSync(logFile, "utf8").startsWith("earlier line\n")).toBe(true);
    expect(readFileSync(logFile, "utf8")).toContain("configuration loaded");
    expect(statSync(logFile).mode & 0o777).toBe(0o600);
  });
});
