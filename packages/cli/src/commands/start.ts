/** `loxmcp start`: start the daemon if it is not running (installed service first, else detached), wait for its socket. */
import { connectOrStartDaemon, DaemonUnreachableError, startTimeoutFromEnv } from "@loxmcp/common";
import { CliError, type CommandContext, type CommandSpec, optNumber, parseSeconds } from "../command.js";
import { delay } from "../daemon-client.js";
import type { Progress } from "../progress.js";
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

/**
 * Every problem THIS start ran into, in the daemon's words (from its last-start-error record, or
 * its stderr lines written to the log since it was spawned) — never older lines of the log.
 */
function startProblems(err: DaemonUnreachableError): string[] {
  const problems = err.detail.startError?.problems ?? [];
  return problems.length > 1 ? problems.map((p) => `loxmcpd: ${p.message}`) : [];
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
        // the message holds the daemon's own reason (e.g. "loxmcpd cannot start: LOXONE_SERIAL is
        // missing — …"); with several problems, each one on its line first
        for (const l of startProblems(err)) ctx.err(l);
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
