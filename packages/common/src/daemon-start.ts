/**
 * Starting a daemon: its installed user service (systemd user unit or LaunchAgent), or a detached
 * `node loxmcpd.js` writing to the daemon log; and what a spawned one said there before it exited.
 */
import type { ChildProcess } from "node:child_process";
import { closeSync, existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { join } from "node:path";
import { DAEMON_NODE_FLAGS, type DaemonCommand } from "./daemon-command.js";
import { type Env, ensurePrivateDir, type LoxmcpPaths } from "./paths.js";
import { openPrivateAppend } from "./private-file.js";

/**
 * `node:child_process`, loaded only when a daemon has to be started. Every MCP client start runs
 * the shim, and the shim's normal path (daemon already listening) never spawns: loading the
 * module up front cost ~4 ms of each start (bench start).
 */
let lazyRequire: NodeJS.Require | undefined;
const childProcess = (): typeof import("node:child_process") => {
  lazyRequire ??= createRequire(import.meta.url);
  return lazyRequire("node:child_process");
};

export interface ServiceUnit {
  kind: "systemd" | "launchd";
  /** systemd unit name or launchd label. */
  name: string;
  file: string;
}

/** The installed user service for the daemon, if any (systemd user unit or LaunchAgent). */
export function findInstalledService(env: Env = process.env): ServiceUnit | undefined {
  const home = env.HOME ?? homedir();
  if (process.platform === "linux") {
    const configHome = env.XDG_CONFIG_HOME || join(home, ".config");
    const file = join(configHome, "systemd", "user", "loxmcpd.service");
    if (existsSync(file)) return { kind: "systemd", name: "loxmcpd.service", file };
  } else if (process.platform === "darwin") {
    const dir = join(home, "Library", "LaunchAgents");
    try {
      const plist = readdirSync(dir).find((f) => /loxmcp/i.test(f) && f.endsWith(".plist"));
      if (plist) return { kind: "launchd", name: plist.slice(0, -".plist".length), file: join(dir, plist) };
    } catch {
      // no LaunchAgents dir
    }
  }
  return undefined;
}

export function startService(unit: ServiceUnit): boolean {
  const r =
    unit.kind === "systemd"
      ? childProcess().spawnSync("systemctl", ["--user", "start", "--no-block", unit.name], {
          stdio: "ignore",
          timeout: 5_000,
        })
      : childProcess().spawnSync("launchctl", ["kickstart", `gui/${process.getuid?.() ?? 0}/${unit.name}`], {
          stdio: "ignore",
          timeout: 5_000,
        });
  return r.status === 0;
}

export function fileSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/**
 * The last line a daemon wrote on stderr (`loxmcpd: …`) into the log since `offset` (the log's
 * size when it was spawned), without the prefix: this start's words, never an older one's.
 */
export function lastDaemonLine(logFile: string, offset: number | undefined): string | undefined {
  if (offset === undefined) return undefined;
  let text: string;
  try {
    const buf = readFileSync(logFile);
    if (buf.length <= offset) return undefined;
    text = buf.subarray(Math.max(offset, buf.length - 64 * 1024)).toString("utf8");
  } catch {
    return undefined;
  }
  const lines = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => /^loxmcpd(: |\[)/.test(l) && !/already running/.test(l));
  const last = lines[lines.length - 1];
  return last?.replace(/^loxmcpd: (config error: )?/, "");
}

export function spawnDetached(
  cmd: DaemonCommand,
  env: Env,
  paths: LoxmcpPaths,
  log: (msg: string) => void,
): ChildProcess {
  let out: number | "ignore" = "ignore";
  try {
    ensurePrivateDir(paths.log);
    // Not followed if it is a link (the daemon then refuses to start and says so).
    out = openPrivateAppend(paths.logFile);
  } catch (e) {
    log(`the daemon's output goes nowhere: ${(e as Error).message}`);
    out = "ignore";
  }
  try {
    const args = cmd.command === process.execPath ? [...DAEMON_NODE_FLAGS, ...cmd.args] : cmd.args;
    const child = childProcess().spawn(cmd.command, args, {
      detached: true,
      stdio: ["ignore", out, out],
      env: env as NodeJS.ProcessEnv,
      cwd: paths.state,
    });
    child.unref();
    return child;
  } finally {
    if (typeof out === "number") closeSync(out);
  }
}
