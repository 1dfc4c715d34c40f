/**
 * `loxmcp logs [-f] [-n N] [--level L] [--json]`: readable lines from the daemon's pino log
 * file (`paths.logFile`, and the rotated `daemon.log.1` … when it holds fewer than N lines);
 * `-f` follows it across rotation and truncation. The file holds no secrets by design; values
 * under secret-looking keys are masked here anyway.
 */
import { closeSync } from "node:fs";
import {
  CliError,
  type CommandContext,
  type CommandSpec,
  optBool,
  optNumber,
  optString,
  parseCount,
} from "../command.js";
import { callDaemon, DaemonNotRunningError, delay } from "../daemon-client.js";
import { useColor } from "../format.js";
import { follow, olderLines, openLog, tailFd } from "./logs/file.js";
import { LEVELS, type LogLine, parseLogLine, prettyLine } from "./logs/format.js";

/**
 * Hardened mode: the log file belongs to the system daemon's user, so the daemon reads it
 * (`loxmcp/logs`): the last lines, then — following — what was written since its cursor.
 */
async function logsThroughDaemon(
  ctx: CommandContext,
  n: number,
  min: number,
  keep: (l: LogLine) => boolean,
  emit: (l: LogLine) => void,
  followMode: boolean,
): Promise<number> {
  type Chunk = { lines?: unknown; cursor?: unknown; more?: unknown };
  const show = (r: Chunk) => {
    for (const raw of Array.isArray(r.lines) ? r.lines : []) {
      if (typeof raw !== "string") continue;
      const l = parseLogLine(raw);
      if (keep(l)) emit(l);
    }
  };
  const first = (await callDaemon(ctx.paths.socket, "loxmcp/logs", { lines: n, minLevel: min })) as Chunk;
  show(first);
  if (!followMode) return 0;
  let cursor = first.cursor ?? null;
  const stop = { stopped: false };
  const onSignal = () => {
    stop.stopped = true;
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let away = false;
  try {
    while (!stop.stopped) {
      let more = false;
      try {
        const r = (await callDaemon(
          ctx.paths.socket,
          "loxmcp/logs",
          cursor ? { cursor } : { lines: 0 },
        )) as Chunk;
        if (away) ctx.err("the daemon is back");
        away = false;
        show(r);
        cursor = r.cursor ?? cursor;
        more = r.more === true;
      } catch (err) {
        if (!(err instanceof DaemonNotRunningError)) throw err;
        if (!away) ctx.err(`the daemon is not running; waiting for it (${ctx.paths.socket})…`);
        away = true;
      }
      if (!more) await delay(away ? 1_000 : 300);
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  return 0;
}

export const logsCommand: CommandSpec = {
  name: "logs",
  description:
    "show the daemon log as readable lines (pino JSON pretty-printed); -f follows (hardened mode: read through the daemon)",
  options: [
    { flags: "-f, --follow", description: "keep printing new lines (handles rotation and truncation)" },
    {
      flags: "-n, --lines <n>",
      description: "how many lines to show first",
      defaultValue: 50,
      parse: parseCount,
    },
    {
      flags: "--level <level>",
      description: "only lines at or above this level",
      choices: Object.keys(LEVELS),
    },
    { flags: "--json", description: "print the raw JSON lines (filtered) instead of pretty text" },
  ],
  async run(ctx: CommandContext, { opts }) {
    const file = ctx.paths.logFile;
    const n = optNumber(opts, "lines") ?? 50;
    const levelName = optString(opts, "level");
    const min = levelName ? (LEVELS[levelName] ?? 0) : 0;
    const keep = (l: LogLine) => (min === 0 ? true : l.level !== undefined && l.level >= min);
    const json = optBool(opts, "json");
    const color = !json && useColor(ctx.stdoutIsTTY, ctx.env);
    const emit = (l: LogLine) => ctx.out(json ? l.raw : prettyLine(l, color));
    const followMode = optBool(opts, "follow");
    if (ctx.paths.system) return logsThroughDaemon(ctx, n, min, keep, emit, followMode);
    const log = openLog(file);
    if (log) {
      try {
        const lines = tailFd(log.fd, log.size, n, keep);
        // A file just rotated holds few lines: the rest come from daemon.log.1, .2 …
        const older = lines.length < n ? olderLines(file, log, n - lines.length, keep) : [];
        for (const l of older) emit(l);
        for (const l of lines) emit(l);
        log.pos = log.size;
      } catch (e) {
        closeSync(log.fd);
        throw e;
      }
      if (!followMode) closeSync(log.fd);
    } else if (!followMode) {
      throw new CliError(
        "NO_LOG_FILE",
        `no daemon log at ${file} yet: the daemon has not run with these settings${ctx.env.LOXMCP_HOME ? ` (LOXMCP_HOME=${ctx.env.LOXMCP_HOME})` : ""}; start it with \`loxmcp start\``,
      );
    } else {
      ctx.err(`waiting for ${file} to appear…`);
    }
    if (!followMode) return 0;
    const stop = { stopped: false };
    const onSignal = () => {
      stop.stopped = true;
    };
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    try {
      await follow(file, log, emit, keep, stop);
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
    return 0;
  },
};
