/** `loxmcp stop`: ask the daemon to shut down (`loxmcp/shutdown`) and wait until its socket is gone. */
import { existsSync } from "node:fs";
import { pidAlive } from "@loxmcp/common";
import { CliError, type CommandContext, type CommandSpec, optNumber, parseSeconds } from "../command.js";
import { callDaemon, DaemonNotRunningError, isDaemonListening, pollUntil } from "../daemon-client.js";
import { fetchStatus } from "./status.js";

/** Stops the daemon; resolves with its pid, or null when it was not running. */
export async function stopDaemon(ctx: CommandContext, timeoutMs: number): Promise<number | null> {
  const s = await fetchStatus(ctx);
  if (s.state === "down") return null;
  try {
    await callDaemon(ctx.paths.socket, "loxmcp/shutdown", {}, { timeoutMs, closeIsAnswer: true });
  } catch (err) {
    if (err instanceof DaemonNotRunningError) return null;
    throw err;
  }
  const pid = typeof s.pid === "number" ? s.pid : null;
  const gone = await pollUntil(
    async () => !existsSync(ctx.paths.socket) || !(await isDaemonListening(ctx.paths.socket)),
    timeoutMs,
  );
  const exited = gone && (pid === null || (await pollUntil(() => !pidAlive(pid), timeoutMs)));
  if (!exited) {
    throw new CliError(
      "STOP_TIMEOUT",
      `the daemon${pid ? ` (pid ${pid})` : ""} did not stop within ${Math.round(timeoutMs / 1000)} s; look at \`loxmcp logs -n 50\`${pid ? `, or end it with \`kill ${pid}\`` : ""}`,
    );
  }
  return pid ?? 0;
}

export const stopCommand: CommandSpec = {
  name: "stop",
  description: "stop the daemon gracefully and wait until it is gone",
  options: [
    { flags: "--timeout <seconds>", description: "how long to wait (default 15)", parse: parseSeconds },
  ],
  async run(ctx, { opts }) {
    const timeoutMs = (optNumber(opts, "timeout") ?? 15) * 1000;
    const pid = await stopDaemon(ctx, timeoutMs);
    if (pid === null) ctx.out(`loxmcpd was not running (socket ${ctx.paths.socket})`);
    else ctx.out(`loxmcpd stopped${pid ? ` (pid ${pid})` : ""}`);
    return 0;
  },
};
