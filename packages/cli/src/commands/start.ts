/** `loxmcp start`: start the daemon if it is not running (installed service first, else detached), wait for its socket. */
import { existsSync } from "node:fs";
import { connectOrStartDaemon, DaemonUnreachableError, startTimeoutFromEnv } from "@loxmcp/common";
import { CliError, type CommandContext, type CommandSpec, optNumber, parseSeconds } from "../command.js";
import { delay } from "../daemon-client.js";
import type { Progress } from "../progress.js";
import { type LogLine, prettyLine, tailLines } from "./logs.js";
import { type DaemonStatus, fetchStatus, hintFor } from "./status.js";

/** States the daemon moves through while it logs in; `start` waits for it to leave them. */
const CONNECTING = new Set(["starting", "resolving", "authenticating", "connecting"]);

/**
 * Waits (until `deadline`) for the daemon to finish logging in: ready, auth_failed (it will not
 * try again by itself) or degraded (it keeps retrying). Returns the last status seen.
 */
async function settle(ctx: CommandContext, deadline: number, progress: Progress): Promise<DaemonStatus> {
  let s = await fetchStatus(ctx);
  while (CONNECTING.has(s.state) && Date.now() < deadline) {
    progress.step(`loxmcpd is up; logging in to the Miniserver (now ${s.state})`);
    await delay(200);
    s = await fetchStatus(ctx);
  }
  return s;
}

/** The last few error lines (or plain-text lines) of the daemon log, pretty-printed. */
function lastProblems(file: string): string[] {
  if (!existsSync(file)) return [];
  try {
    const keep = (l: LogLine) => l.obj === undefined || (l.level ?? 0) >= 50;
    return tailLines(file, 3, keep).lines.map(
      (l) => `loxmcpd: ${l.obj ? prettyLine(l, false) : l.raw.replace(/^loxmcpd: /, "")}`,
    );
  } catch {
    return [];
  }
}

export const startCommand: CommandSpec = {
  name: "start",
  description:
    "start the daemon if it is not running (via the installed service, else detached) and wait for it",
  options: [
    {
      flags: "--timeout <seconds>",
      description: "how long to wait for the socket and the login (default 15, LOXMCP_START_TIMEOUT_MS)",
      parse: parseSeconds,
    },
  ],
  helpAfter:
    "\nExit status: 0 the daemon runs (ready, or still connecting / degraded: it keeps retrying), " +
    "1 it could not be started or its login failed (auth_failed: it will not retry until `loxmcp relogin`), " +
    "2 bad usage.",
  async run(ctx, { opts }) {
    const t = optNumber(opts, "timeout");
    const timeoutMs = t !== undefined ? t * 1000 : startTimeoutFromEnv(ctx.env);
    const deadline = Date.now() + timeoutMs;
    let started: string | undefined;
    const progress = ctx.progress();
    progress.step(`starting loxmcpd; waiting for ${ctx.paths.socket}`);
    try {
      const c = await connectOrStartDaemon({
        env: ctx.env,
        paths: ctx.paths,
        timeoutMs,
        log: (m) => ctx.err(m),
      });
      c.socket.destroy();
      started = c.started;
    } catch (err) {
      progress.stop();
      if (err instanceof DaemonUnreachableError) {
        // the daemon's own last words (e.g. "config error: LOXONE_SERIAL is missing …") are in its log
        if (err.detail.exitCode !== undefined) for (const l of lastProblems(ctx.paths.logFile)) ctx.err(l);
        throw new CliError(err.code, err.message);
      }
      throw err;
    }
    let s: DaemonStatus;
    try {
      s = await settle(ctx, deadline, progress);
    } finally {
      progress.stop();
    }
    const how =
      started === undefined
        ? "already running"
        : started === "spawn"
          ? "started"
          : started === "other-starter"
            ? "started by another client"
            : `started by ${started}`;
    ctx.out(`loxmcpd ${how}: pid ${s.pid ?? "?"}, state ${s.state}, socket ${ctx.paths.socket}`);
    const hint = hintFor(s.state);
    if (s.state === "auth_failed") {
      // It runs, but it will not log in until the credentials are fixed: not a successful start.
      ctx.err(`loxmcp: loxmcpd could not log in: ${s.reason ?? "the login was rejected"}`);
      if (hint) ctx.err(`hint: ${hint}`);
      return 1;
    }
    if (s.state !== "ready" && s.reason) ctx.out(`reason: ${s.reason}`);
    if (hint && s.state !== "ready") ctx.out(`hint: ${hint}`);
    return 0;
  },
};
