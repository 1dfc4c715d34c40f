/**
 * How to run the daemon: which `loxmcpd` (LOXMCP_DAEMON_BIN, the installed package, the checkout,
 * the resolvable package, PATH) and the node flags a daemon run by this node gets.
 */
import { existsSync, realpathSync, statSync } from "node:fs";
import { delimiter, dirname, isAbsolute, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Env } from "./paths.js";

/**
 * V8 flags for a daemon run by this node (`node <flags> loxmcpd.js`). The daemon is a long-lived
 * I/O relay whose young objects are small JSON frames: a 1 MiB semi-space (default 16 MiB on
 * 64-bit) keeps ~17 MB less resident after a burst of calls (bench memory: 119 → 102 MB after
 * 200 calls, idle 99 → 92 MB) for slightly more frequent scavenges, which cost microseconds at
 * this heap size and did not move the added latency measurably. Flags cannot be set from inside
 * the process once V8 is up, so every starter passes them (this spawner; the bench mirrors it).
 */
export const DAEMON_NODE_FLAGS: readonly string[] = ["--max-semi-space-size=1"];

export interface DaemonCommand {
  command: string;
  args: string[];
  /**
   * Where it came from (for diagnostics): LOXMCP_DAEMON_BIN, the npm package `loxmcp` this code
   * runs from, a checkout's packages/daemon, `@loxmcp/daemon` as resolvable, or PATH.
   */
  source: "env" | "installed" | "workspace" | "package" | "path";
}

/** A daemon entry file runs with this node (so DAEMON_NODE_FLAGS apply); anything else runs as is. */
function daemonCommandFor(bin: string, source: DaemonCommand["source"]): DaemonCommand {
  return /\.[cm]?js$/.test(bin)
    ? { command: process.execPath, args: [bin], source }
    : { command: bin, args: [], source };
}

/** The first `name` on env.PATH that is a file, as an absolute path (not resolved further). */
export function findOnPath(name: string, env: Env = process.env): string | undefined {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!isAbsolute(dir)) continue;
    const p = join(dir, name);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * How to run the daemon, first match wins:
 * 1. `LOXMCP_DAEMON_BIN` (a .js file runs with this node);
 * 2. the installed npm package `loxmcp` (scripts/pack.mjs): this module is bundled into
 *    `<package>/dist/`, the daemon's launcher is `<package>/bin/loxmcpd.js`;
 * 3. the daemon package next to this one (`packages/daemon/bin/loxmcpd.js` in a checkout, also
 *    what the workspace's shim bundle in packages/shim/dist finds);
 * 4. `@loxmcp/daemon` as resolvable from here;
 * 5. `loxmcpd` on PATH (run with this node when it links to a .js file).
 * Entry files run as `node DAEMON_NODE_FLAGS <file>` (spawnDetached, and the service files).
 */
export function resolveDaemonCommand(env: Env = process.env): DaemonCommand {
  const fromEnv = env.LOXMCP_DAEMON_BIN;
  if (fromEnv) return daemonCommandFor(fromEnv, "env");
  const installed = fileURLToPath(new URL("../bin/loxmcpd.js", import.meta.url));
  if (existsSync(installed)) return daemonCommandFor(installed, "installed");
  // dist/daemon-command.js → ../../daemon/bin/loxmcpd.js (sibling package, workspace or node_modules/@loxmcp).
  const sibling = fileURLToPath(new URL("../../daemon/bin/loxmcpd.js", import.meta.url));
  if (existsSync(sibling)) return daemonCommandFor(sibling, "workspace");
  try {
    const pkg = fileURLToPath(import.meta.resolve("@loxmcp/daemon/package.json"));
    const bin = join(dirname(pkg), "bin", "loxmcpd.js");
    if (existsSync(bin)) return daemonCommandFor(bin, "package");
  } catch {
    // not resolvable from here
  }
  const onPath = findOnPath("loxmcpd", env);
  if (onPath) {
    let real = onPath;
    try {
      real = realpathSync(onPath);
    } catch {
      // a dangling link: run it as it is and let the spawn say what is wrong
    }
    return /\.[cm]?js$/.test(real)
      ? { command: process.execPath, args: [onPath], source: "path" }
      : { command: onPath, args: [], source: "path" };
  }
  return { command: "loxmcpd", args: [], source: "path" };
}
