/**
 * `loxmcp relogin`: the daemon re-reads its credentials (.env, config.json, the password file or
 * command; not the environment it started with), drops its tokens and logs in again now
 * (`loxmcp/relogin`). A configuration that became invalid is refused with every problem named.
 */
import { type CommandSpec, optBool } from "../command.js";
import { callDaemon, DaemonRpcError } from "../daemon-client.js";
import { isRecord } from "../format.js";
import { hintFor } from "./status.js";

export const reloginCommand: CommandSpec = {
  name: "relogin",
  description: "drop the tokens and log in to the Miniserver again now",
  options: [
    { flags: "--force", description: "log in again even if a relogin ran less than 30 s ago" },
    { flags: "--json", description: "print the daemon's answer as JSON" },
  ],
  async run(ctx, { opts }) {
    const params = optBool(opts, "force") ? { force: true } : {};
    let r: unknown;
    try {
      r = await callDaemon(ctx.paths.socket, "loxmcp/relogin", params, { timeoutMs: 120_000 });
    } catch (err) {
      // an invalid configuration: every problem on its own line, then the one-line error
      const problems = err instanceof DaemonRpcError && isRecord(err.data) ? err.data.problems : undefined;
      if (Array.isArray(problems) && problems.length > 1)
        for (const p of problems) if (isRecord(p)) ctx.err(`loxmcpd: ${String(p.message)}`);
      throw err;
    }
    const state = isRecord(r) && typeof r.state === "string" ? r.state : undefined;
    if (optBool(opts, "json")) {
      ctx.out(JSON.stringify(r ?? {}));
    } else if (state) {
      const reason = isRecord(r) && typeof r.reason === "string" && state !== "ready" ? ` (${r.reason})` : "";
      ctx.out(`relogin: ${state}${reason}`);
      const restart = isRecord(r) && Array.isArray(r.restartNeeded) ? r.restartNeeded.map(String) : [];
      if (restart.length > 0)
        ctx.out(
          `note: ${restart.join(", ")} changed; the daemon uses the new value only after \`loxmcp stop && loxmcp start\``,
        );
      const hint = hintFor(state);
      if (hint) ctx.out(`hint: ${hint}`);
    } else {
      ctx.out("relogin: done");
    }
    return state === undefined || state === "ready" ? 0 : 1;
  },
};
