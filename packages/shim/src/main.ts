/**
 * `loxmcp-shim` entry point: parses flags, then bridges stdio to the daemon socket until stdin
 * ends or SIGTERM/SIGINT. stdout carries MCP JSON-RPC only; diagnostics go to stderr (quiet
 * unless LOXMCP_DEBUG=1).
 */
import { resolvePaths, startTimeoutFromEnv } from "@loxmcp/common";
import { parseArgs, USAGE } from "./args.js";
import { Bridge, type Logger } from "./bridge.js";
import { HeldNotifier } from "./notify.js";
import { VERSION } from "./version.js";

function numberFromEnv(v: string | undefined, fallback: number): number {
  const n = Number(v);
  return v !== undefined && Number.isFinite(n) && n > 0 ? n : fallback;
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  if (args.kind === "version") {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  if (args.kind === "help") {
    process.stdout.write(USAGE);
    return;
  }
  if (args.kind === "error") {
    process.stderr.write(`loxmcp-shim: ${args.message}\n\n${USAGE}`);
    process.exitCode = 2;
    return;
  }

  const env = { ...process.env };
  if (args.socket) env.LOXMCP_SOCKET = args.socket;
  const debug = env.LOXMCP_DEBUG !== undefined && env.LOXMCP_DEBUG !== "" && env.LOXMCP_DEBUG !== "0";
  const log: Logger = {
    debug: debug ? (msg) => process.stderr.write(`loxmcp-shim[${process.pid}]: ${msg}\n`) : () => {},
    warn: (msg) => process.stderr.write(`loxmcp-shim[${process.pid}]: ${msg}\n`),
  };

  const paths = resolvePaths(env);
  // The person's desktop notification when a call is held for their approval (notify.ts).
  const notifier = new HeldNotifier({ env, paths, name: args.name, log });
  let exiting = false;
  const bridge = new Bridge({
    input: process.stdin,
    output: process.stdout,
    env,
    paths,
    name: args.name,
    onHeld: (call) => notifier.held(call),
    startTimeoutMs: startTimeoutFromEnv(env),
    reconnectTimeoutMs: numberFromEnv(env.LOXMCP_RECONNECT_TIMEOUT_MS, 20_000),
    drainMs: numberFromEnv(env.LOXMCP_DRAIN_MS, 2_000),
    log,
    onDone: () => {
      if (exiting) return;
      exiting = true;
      log.debug("exiting");
      process.exit(0);
    },
  });
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) {
    process.on(sig, () => {
      log.debug(`${sig}: closing`);
      void bridge.stop();
    });
  }
  bridge.start();
}

main();
