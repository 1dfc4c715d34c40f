/**
 * The daemon's own control methods (`loxmcp/*`, for the person's CLI): `loxmcp/status`, the log
 * through the daemon, `loxmcp/relogin` (the credentials read again first) and `loxmcp/shutdown`;
 * and the status section that says which daemon this is. The components add theirs (policy,
 * page) through the same registry.
 */
import { userInfo } from "node:os";
import { ErrorCodes, systemStopHint } from "@loxmcp/common";
import type { Logger } from "pino";
import type { ConfigCheck, DaemonConfig } from "./config.js";
import { ControlError, type Upstream } from "./contracts.js";
import type { SecretRegistry } from "./log.js";
import { type LogCursor, readLogSince, readLogTail } from "./log-read.js";
import type { Controls, StatusSection } from "./mux/control.js";

/** Minimum time between two `loxmcp relogin` (unless --force). */
const RELOGIN_MIN_INTERVAL_MS = 30_000;

export interface CoreControlsDeps {
  /** The daemon's configuration; relogin writes the re-read credentials into it. */
  config: DaemonConfig;
  logger: Logger;
  secrets: SecretRegistry;
  upstream: Upstream;
  status: () => Record<string, unknown>;
  addStatusSection: (section: StatusSection) => void;
  /** Checks the configuration again from its files (DaemonOptions.reloadConfig). */
  reloadConfig: (() => ConfigCheck) | undefined;
  /** Runs once the shutdown answer is on its way (main.ts exits, or the daemon stops). */
  shutdown: () => void;
}

export function registerCoreControls(controls: Controls, deps: CoreControlsDeps): void {
  const { config, logger } = deps;
  let lastRelogin = 0;
  controls.register("loxmcp/status", () => deps.status());
  // Which daemon this is: hardened mode (the system daemon, its own user) or per-user.
  deps.addStatusSection(() =>
    config.paths.system
      ? { mode: "system", systemUser: userName(), adminSocket: config.paths.system.adminSocket }
      : { mode: "user" },
  );
  // The log through the daemon: in hardened mode the person cannot read the file itself.
  controls.register("loxmcp/logs", (params) => {
    const c = params.cursor as Partial<LogCursor> | undefined;
    if (c && typeof c.ino === "number" && typeof c.pos === "number" && c.pos >= 0) {
      return readLogSince(config.paths.logFile, { ino: c.ino, pos: c.pos });
    }
    const n = typeof params.lines === "number" && params.lines >= 0 ? params.lines : 50;
    const min = typeof params.minLevel === "number" ? params.minLevel : 0;
    return readLogTail(config.paths.logFile, n, min);
  });
  controls.register("loxmcp/relogin", async (params, ctx) => {
    // The person fixed the password (`loxmcp init`, the password file or command, config.json)
    // and runs relogin, as every hint says: read the credentials again first. An invalid
    // configuration is refused here with every problem named: nothing changes.
    const fresh = rereadCredentials(deps);
    // A full OAuth login costs the Miniserver and connect's rate budget: at most one per 30 s.
    const since = Date.now() - lastRelogin;
    if (since < RELOGIN_MIN_INTERVAL_MS && params.force !== true) {
      const wait = Math.ceil((RELOGIN_MIN_INTERVAL_MS - since) / 1000);
      throw new ControlError(
        ErrorCodes.InvalidRequest,
        `a relogin ran ${Math.round(since / 1000)} s ago; wait ${wait} s or use \`loxmcp relogin --force\``,
        { retryAfterSec: wait },
      );
    }
    lastRelogin = Date.now();
    const restartNeeded = fresh ? applyCredentials(deps, fresh) : [];
    logger.info({ by: ctx.client.name, force: params.force === true }, "relogin requested");
    await deps.upstream.relogin();
    const st = deps.status();
    if (fresh) st.credentials = { reread: true, passwordSource: config.passwordSource };
    if (restartNeeded.length > 0) st.restartNeeded = restartNeeded;
    return st;
  });
  controls.register("loxmcp/shutdown", (_params, ctx) => {
    // The system daemon is stopped by its service manager (root), not by whoever can reach the
    // socket: in hardened mode that includes every agent running as the person.
    const system = config.paths.system;
    if (system && ctx.client.admin !== true) {
      throw new ControlError(
        ErrorCodes.InvalidRequest,
        `the system daemon (hardened mode) is stopped by root: ${systemStopHint(system.platform)}`,
        { reason: "root-required" },
      );
    }
    logger.info({ by: ctx.client.name }, "shutdown requested over the socket");
    setImmediate(() => deps.shutdown());
    return { ok: true, pid: process.pid };
  });
}

/** The configuration read again (undefined without `reloadConfig`); throws when it is invalid. */
function rereadCredentials(deps: CoreControlsDeps): DaemonConfig | undefined {
  const { reloadConfig: reload, logger, secrets } = deps;
  if (!reload) return undefined;
  const r = reload();
  if (r.config) return r.config;
  const [first, ...rest] = r.problems;
  const more = rest.length > 0 ? ` (and ${rest.length} more: ${rest.map((p) => p.key).join(", ")})` : "";
  logger.warn({ problems: r.problems }, "relogin refused: the configuration is invalid");
  throw new ControlError(
    ErrorCodes.InvalidParams,
    `the configuration is invalid, nothing was changed and no login was tried: ${secrets.scrub(first?.message ?? "invalid")}${more}; fix it (\`loxmcp doctor\` lists every problem), then run \`loxmcp relogin\` again`,
    { problems: r.problems.map((p) => ({ ...p, message: secrets.scrub(p.message) })) },
  );
}

/**
 * Takes the credential part of a re-read configuration (user, password and where it comes
 * from); returns the settings that changed but need a restart (which Miniserver, which relay).
 */
function applyCredentials(deps: CoreControlsDeps, fresh: DaemonConfig): string[] {
  const { config: cfg, logger } = deps;
  const changed =
    cfg.user !== fresh.user || cfg.passwordSource !== fresh.passwordSource || cfg.password !== fresh.password;
  cfg.user = fresh.user;
  cfg.password = fresh.password;
  cfg.passwordSource = fresh.passwordSource;
  if (typeof fresh.password === "string") deps.secrets.add(fresh.password);
  const restart: string[] = [];
  if (fresh.serial !== cfg.serial) restart.push("LOXONE_SERIAL");
  if (fresh.connectUrl !== cfg.connectUrl) restart.push("LOXONE_CONNECT_URL");
  if (fresh.upstreamUrl !== cfg.upstreamUrl) restart.push("LOXMCP_UPSTREAM_URL");
  logger.info(
    { passwordSource: fresh.passwordSource, changed, restartNeeded: restart },
    changed ? "relogin: credentials re-read; they changed" : "relogin: credentials re-read; unchanged",
  );
  for (const w of fresh.warnings) logger.warn(w);
  return restart;
}

function userName(): string {
  try {
    return userInfo().username;
  } catch {
    return String(process.getuid?.() ?? "?");
  }
}
