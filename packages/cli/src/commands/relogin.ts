/** `loxmcp relogin`: the daemon drops its tokens and logs in again now (`loxmcp/relogin`). */
import { type CommandSpec, optBool } from "../command.js";
import { callDaemon } from "../daemon-client.js";
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
    const r = await callDaemon(ctx.paths.socket, "loxmcp/relogin", params, { timeoutMs: 120_000 });
    const state = isRecord(r) && typeof r.state === "string" ? r.state : undefined;
    if (optBool(opts, "json")) {
      ctx.out(JSON.stringify(r ?? {}));
    } else if (state) {
      const reason = isRecord(r) && typeof r.reason === "string" && state !== "ready" ? ` (${r.reason})` : "";
      ctx.out(`relogin: ${state}${reason}`);
      const hint = hintFor(state);
      if (hint) ctx.out(`hint: ${hint}`);
    } else {
      ctx.out("relogin: done");
    }
    return state === undefined || state === "ready" ? 0 : 1;
  },
};
