/**
 * `loxmcp restart`: stop the daemon, wait until it is gone, then start it again and wait for it —
 * after installing a newer tarball (`loxmcp status` says when the running daemon's version is not
 * the CLI's) or changing its settings. Stopping is `loxmcp stop` (loxmcp/shutdown: a
 * service-managed daemon exits 0 and stays stopped); starting is `loxmcp start`, which goes
 * through the installed service when there is one, else starts the daemon detached.
 */
import { CliError, type CommandSpec, optNumber, parseSeconds } from "../command.js";
import { VERSION } from "../version.js";
import { startCommand } from "./start.js";
import { fetchStatus } from "./status.js";
import { stopDaemon } from "./stop.js";

export const restartCommand: CommandSpec = {
  name: "restart",
  description:
    "stop the daemon and start it again (via the installed service, else detached), e.g. after an upgrade",
  options: [
    {
      flags: "--timeout <seconds>",
      description: "how long to wait for the stop, and then for the start (default 15 each)",
      parse: parseSeconds,
    },
  ],
  helpAfter:
    "\nA daemon that was not running is just started. Exit status as for `loxmcp start`: 0 it runs, " +
    "1 it could not be stopped or started, 2 bad usage.",
  async run(ctx, { opts }) {
    const t = optNumber(opts, "timeout");
    const before = await fetchStatus(ctx);
    const pid = await stopDaemon(ctx, (t ?? 15) * 1000);
    if (pid === null) ctx.out(`loxmcpd was not running (socket ${ctx.paths.socket}); starting it`);
    else ctx.out(`loxmcpd stopped (pid ${pid}${before.version ? `, v${before.version}` : ""})`);

    const start = startCommand.run;
    if (!start) throw new CliError("INTERNAL", "the start command cannot run");
    const code =
      (await start.call(startCommand, ctx, { args: [], opts: t === undefined ? {} : { timeout: t } })) ?? 0;

    const after = await fetchStatus(ctx);
    if (after.state === "down" || !after.version) return code;
    if (before.version && before.version !== after.version) {
      ctx.out(`loxmcpd now runs v${after.version} (was v${before.version})`);
    }
    if (after.version !== VERSION) {
      // e.g. a service file written from another installation (a checkout, an older prefix)
      ctx.err(
        `loxmcp: the daemon that started is v${after.version}, this CLI is v${VERSION}: it runs from another installation; \`loxmcp service install\` points the service at this one`,
      );
    }
    return code;
  },
};
