/** `loxmcp resume`: lifts the emergency stop (CLI only: no MCP client can do this). */
import { type CommandSpec, optBool } from "../command.js";
import { callDaemon } from "../daemon-client.js";
import { isRecord } from "../format.js";

export const resumeCommand: CommandSpec = {
  name: "resume",
  description: "lift the emergency stop: AI clients may send commands again (within the policy)",
  options: [{ flags: "--json", description: "print the daemon's answer as JSON" }],
  async run(ctx, { opts }) {
    const r = await callDaemon(ctx.paths.socket, "loxmcp/resume", {});
    if (optBool(opts, "json")) ctx.out(JSON.stringify(r ?? {}));
    else if (isRecord(r) && r.wasActive === true)
      ctx.out("emergency stop lifted: commands are allowed again");
    else ctx.out("no emergency stop was active");
    return 0;
  },
};
