/** `loxmcp start`: start the daemon if it is not running (installed service first, else detached), wait for its socket. */
import { existsSync } from "node:fs";
import { connectOrStartDaemon, DaemonUnreachableError, startTimeoutFromEnv } from "@loxmcp/common";
import { CliError, type CommandSpec, optNumber, parseSeconds } from "../command.js";
import { type LogLine, prettyLine, tailLines } from "./logs.js";
import { fetchStatus, hintFor } from "./status.js";

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
    { flags: "--timeout <seconds>", description: "how long to wait for the socket", parse: parseSeconds },
  ],
  async run(ctx, { opts }) {
    const t = optNumber(opts, "timeout");
    const timeoutMs = t !== undefined ? t * 1000 : startTimeoutFromEnv(ctx.env);
    let started: string | undefined;
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
      if (err instanceof DaemonUnreachableError) {
        // the daemon's own last words (e.g. "config error: LOXONE_SERIAL is missing …") are in its log
        if (err.detail.exitCode !== undefined) for (const l of lastProblems(ctx.paths.logFile)) ctx.err(l);
        throw new CliError(err.code, err.message);
      }
      throw err;
    }
    const s = await fetchStatus(ctx);
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
    if (hint && s.state !== "ready") ctx.out(`hint: ${hint}`);
    return 0;
  },
};
