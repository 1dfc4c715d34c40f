/**
 * loxmcpd entry point: configuration (exit 78 on a bad value), logging, the controller,
 * signals. Runs in the foreground; the service manager or the shim detaches it.
 */

import { fileURLToPath } from "node:url";
import { setFlagsFromString } from "node:v8";
import {
  asPathAccessError,
  clearStartError,
  type LoxmcpPaths,
  PathAccessError,
  resolvePaths,
  type StartProblem,
  UnsafeDirectoryError,
  UnsafeFileError,
  writeStartError,
} from "@loxmcp/common";
import {
  type ConfigCheck,
  ConfigError,
  checkConfig,
  describeConfig,
  EX_CONFIG,
  loadConfig,
} from "./config.js";
import type { StartResult } from "./daemon.js";
import { probeSocket } from "./instance.js";
import { createLogger, SecretRegistry } from "./log.js";
import { VERSION } from "./version.js";

/**
 * The process's one registry of secret values (password, tokens, client secret): scrubbed from
 * every log line and every error text. Made here and handed down: to the logger, the daemon and
 * through it the relay's token store (wiring.ts), or to the probe.
 */
const secrets = new SecretRegistry();

// The relay, SDK and policy modules are loaded only once the configuration is valid and no
// other daemon answers on the socket: config errors and "already running" exit fast.

const USAGE = `usage: loxmcpd [--insecure-tls] [--version] [--help]
       loxmcpd --check-config [--json] [--insecure-tls]
       loxmcpd --probe [--url <mcp-url>] [--fresh] [--call <tool> [--args JSON]] [--json] [--timeout S] [--progress]

Runs the loxmcp daemon in the foreground: one Loxone login and one MCP session shared by
every MCP client through the Unix socket (see \`loxmcp status\`).

Configuration (environment > <config dir>/.env > <config dir>/config.json):
  LOXONE_SERIAL, LOXONE_USER, LOXONE_PASSWORD (or LOXONE_PASSWORD_FILE / LOXONE_PASSWORD_COMMAND),
  LOXONE_CONNECT_URL (default https://connect.loxonecloud.com), LOXMCP_UPSTREAM_URL (direct mode),
  LOXMCP_HOME, LOXMCP_LOG_LEVEL, LOXMCP_POLICY (read-only|confirm|full), LOXMCP_DEBUG,
  LOXMCP_PING_INTERVAL, LOXMCP_IDLE_CHECK, LOXMCP_REQUEST_TIMEOUT, LOXMCP_SHUTDOWN_GRACE (seconds),
  LOXMCP_ALLOWED_RESOURCES (comma-separated extra OAuth audiences),
  LOXMCP_LOG_MAX_MB (rotate daemon.log at this size, default 10; 0: never),
  LOXMCP_LOG_FILES (rotated files kept, default 5).

  --insecure-tls   accept a self-signed certificate from a LOOPBACK simulator only
  --check-config   check the configuration, print EVERY problem (one per line, or one JSON
                   object with --json), exit 78 when there is one, else 0; starts nothing
`;

/**
 * Exits for a reason the person must fix: one line on stderr, and the same line (without the
 * "loxmcpd: " prefix) in <state>/last-start-error.json, where the shim, `loxmcp start` and
 * `loxmcp status` find it (a shim answers its MCP client with it).
 */
function exitStartError(
  paths: LoxmcpPaths,
  stderrLine: string,
  message: string,
  code: number,
  problems?: StartProblem[],
): never {
  process.stderr.write(`${oneLine(stderrLine)}\n`);
  const rec: Parameters<typeof writeStartError>[1] = {
    pid: process.pid,
    at: new Date().toISOString(),
    exitCode: code,
    message: oneLine(message),
  };
  if (problems && problems.length > 1)
    rec.problems = problems.map((p) => ({ ...p, message: oneLine(secrets.scrub(p.message)) }));
  writeStartError(paths, rec);
  process.exit(code);
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ");
}

/** `loxmcpd --check-config [--json]`: every problem, one per line; exit 78 if any, else 0. */
function checkConfigMain(insecureTls: boolean, json: boolean): never {
  const r: ConfigCheck = checkConfig({ insecureTls });
  if (r.config && typeof r.config.password === "string") secrets.add(r.config.password);
  const problems = r.problems.map((p) => ({ ...p, message: oneLine(secrets.scrub(p.message)) }));
  const ok = problems.length === 0;
  if (json) {
    const out: Record<string, unknown> = { ok, problems, warnings: r.warnings, sources: r.sources };
    if (r.config) out.config = describeConfig(r.config);
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } else {
    for (const p of problems) process.stdout.write(`loxmcpd: config error: ${p.message}\n`);
    for (const w of r.warnings) process.stdout.write(`loxmcpd: warning: ${oneLine(w)}\n`);
    if (ok)
      process.stdout.write(
        `loxmcpd: configuration OK (${r.sources.length ? `read ${r.sources.join(", ")} and the environment` : "from the environment only"})\n`,
      );
    else process.stdout.write(`loxmcpd: ${problems.length} configuration problem(s)\n`);
  }
  process.exit(ok ? 0 : EX_CONFIG);
}

/**
 * The old generation may grow to at most 1.5× its live size between full collections (V8 picks
 * 1.1–4× by itself). After 20 clients × 1000 calls the heap held 8.7 MB of live objects in 37.7 MB
 * of old space; with this the daemon peaks at ~78 instead of ~100 MB, with no measurable cost in
 * added latency (docs/benchmarks.md, "What the daemon's memory is made of"). V8 reads the flag at
 * each collection, so it is set here, for every way the daemon is started; a node whose V8 does not
 * know it ignores it (on the command line an unknown flag would stop node from starting).
 */
function limitHeapGrowth(): void {
  setFlagsFromString("--heap-growing-percent=50");
}

async function main(argv: string[]): Promise<void> {
  // A login or refresh flown for a running daemon (relay/auth/flight-child.ts): one flight, then exit.
  if (argv[0] === "--oauth-helper") {
    const { oauthHelperMain } = await import("./relay/auth/flight-helper.js");
    await oauthHelperMain();
  }
  limitHeapGrowth();
  // One-shot upstream check (`loxmcp login-check`): no socket, no lock, prints a summary, exits.
  if (argv.includes("--probe")) {
    if (resolvePaths(process.env).system && process.getuid?.() === 0) {
      // root would leave root-owned database files the system daemon could not write
      process.stderr.write("loxmcpd: --probe does not run as root in hardened mode: see `loxmcp status`\n");
      process.exit(EX_CONFIG);
    }
    const [{ probeMain }, { createUpstreamSession }] = await Promise.all([
      import("./login-check.js"),
      import("./wiring.js"),
    ]);
    process.exit(await probeMain(argv, createUpstreamSession, secrets));
  }
  let insecureTls = false;
  let checkOnly = false;
  let json = false;
  for (const arg of argv) {
    if (arg === "--insecure-tls") insecureTls = true;
    else if (arg === "--check-config") checkOnly = true;
    else if (arg === "--json" && argv.includes("--check-config")) json = true;
    else if (arg === "--version" || arg === "-v") {
      process.stdout.write(`${VERSION}\n`);
      return;
    } else if (arg === "--help" || arg === "-h") {
      process.stdout.write(USAGE);
      return;
    } else {
      process.stderr.write(`loxmcpd: unknown argument ${arg}\n${USAGE}`);
      process.exit(64);
    }
  }

  if (checkOnly) checkConfigMain(insecureTls, json);

  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig({ insecureTls });
  } catch (err) {
    if (err instanceof ConfigError) {
      const msg = oneLine(secrets.scrub(err.message));
      exitStartError(
        resolvePaths(process.env),
        `loxmcpd: config error: ${msg}`,
        msg,
        EX_CONFIG,
        err.problems,
      );
    }
    throw err;
  }
  if (typeof config.password === "string") secrets.add(config.password);
  if (config.paths.system && process.getuid?.() === 0) {
    // Root would create the state, log and socket as root's: the person could not connect, and
    // the point of hardened mode — an account of its own — would be gone. Write nothing.
    process.stderr.write(
      "loxmcpd: the system daemon (LOXMCP_SYSTEM=1) runs as its own user, never as root: start it with `sudo systemctl start loxmcpd` (its unit sets User=), or by hand with `sudo -u loxmcp env LOXMCP_SYSTEM=1 loxmcpd`\n",
    );
    process.exit(EX_CONFIG);
  }

  // Fast path for racing starters: a live daemon already answers on the socket.
  const live = await probeSocket(config.paths.socket);
  if (live.kind === "live") {
    process.stderr.write(`loxmcpd already running${live.pid === undefined ? "" : ` (pid ${live.pid})`}\n`);
    process.exit(0);
  }

  const pretty = process.stderr.isTTY === true || config.debug;
  let log: ReturnType<typeof createLogger>;
  try {
    log = createLogger({
      level: config.debug && config.logLevel === "info" ? "debug" : config.logLevel,
      file: config.paths.logFile,
      logDir: config.paths.log,
      pretty,
      rotate: config.logRotation,
      registry: secrets,
    });
  } catch (err) {
    // An UnsafeFileError (a link or someone else's file at the log path) names the path and the
    // fix; so does a directory we cannot create or write (PathAccessError).
    const access = asPathAccessError(err, config.paths.logFile, "open");
    const msg =
      err instanceof UnsafeFileError || access
        ? (access ?? (err as Error)).message
        : `cannot open the log file ${config.paths.logFile}: ${(err as Error).message}`;
    exitStartError(config.paths, `loxmcpd: ${msg}`, msg, EX_CONFIG);
  }
  const logger = log.logger;
  logger.info({ config: describeConfig(config) }, "configuration loaded");
  for (const w of config.warnings) logger.warn(w);

  const [{ Daemon }, { createUpstreamSession }, { policyPlugin }] = await Promise.all([
    import("./daemon.js"),
    import("./wiring.js"),
    import("./policy/plugin.js"),
  ]);

  let exiting = false;
  const daemon = new Daemon({
    config,
    logger,
    createUpstream: createUpstreamSession,
    plugins: [policyPlugin],
    secrets,
    onShutdownRequested: () => void shutdown("loxmcp/shutdown"),
    // Logins and refreshes run in a child: this very script, started with --oauth-helper.
    oauthHelperEntry: fileURLToPath(import.meta.url),
    // relogin re-reads .env, config.json, the password file/command (the environment is fixed)
    reloadConfig: () => checkConfig({ insecureTls }),
  });

  async function shutdown(why: string): Promise<void> {
    if (exiting) return;
    exiting = true;
    logger.info({ why }, "shutting down");
    try {
      await daemon.stop();
    } catch (err) {
      logger.error({ err }, "error while stopping");
    }
    log.close();
    process.exit(0);
  }

  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGHUP", () => logger.info("SIGHUP ignored (restart the daemon to reload the configuration)"));
  process.on("uncaughtException", (err) => {
    logger.fatal({ err }, "uncaught exception: exiting");
    process.stderr.write(`loxmcpd: fatal: ${secrets.scrub(err.message)}\n`);
    // Leave no start lock behind: the next start must not have to judge it stale.
    daemon.releaseNow();
    process.exit(1);
  });
  process.on("unhandledRejection", (reason) => {
    logger.error({ err: reason }, "unhandled promise rejection");
  });

  let result: StartResult;
  try {
    result = await daemon.start();
  } catch (err) {
    let msg = secrets.scrub(err instanceof Error ? err.message : String(err));
    const errno = (err as NodeJS.ErrnoException | null)?.code;
    if (errno === "ENOSPC" || errno === "EDQUOT") {
      msg += ` — the disk holding ${config.paths.state} is full: free space there and start again`;
    }
    const access = err instanceof PathAccessError ? err : undefined;
    if (access) msg = secrets.scrub(access.message);
    logger.fatal({ err }, "could not start");
    log.close();
    exitStartError(
      config.paths,
      `loxmcpd: could not start: ${msg}`,
      msg,
      err instanceof UnsafeDirectoryError || access ? EX_CONFIG : 1,
    );
  }
  if (result.kind === "started") clearStartError(config.paths);
  if (result.kind === "already-running") {
    const pid = result.pid === undefined ? "" : ` (pid ${result.pid})`;
    logger.info({ pid: result.pid }, "another loxmcpd is already running: exiting");
    process.stderr.write(`loxmcpd already running${pid}\n`);
    log.close();
    process.exit(0);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(
    `loxmcpd: fatal: ${secrets.scrub(err instanceof Error ? err.message : String(err))}\n`,
  );
  process.exit(1);
});
