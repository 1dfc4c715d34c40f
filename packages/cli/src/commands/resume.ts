/**
 * `loxmcp resume`: lifts the emergency stop. The person's decision: the approval PIN when one is
 * set, else an interactive terminal. No MCP client can do this.
 */
import { type CommandSpec, optBool } from "../command.js";
import { callDaemon } from "../daemon-client.js";
import { isRecord } from "../format.js";
import { PIN_STDIN_OPTION, personProof } from "../person.js";

export const resumeCommand: CommandSpec = {
  name: "resume",
  description: "lift the emergency stop: AI clients may send commands again (within the policy)",
  options: [PIN_STDIN_OPTION, { flags: "--json", description: "print the daemon's answer as JSON" }],
  async run(ctx, { opts }) {
    const st = await callDaemon(ctx.paths.socket, "loxmcp/status", {});
    const policy = isRecord(st) && isRecord(st.policy) ? st.policy : {};
    const estop = isRecord(policy.emergencyStop) ? policy.emergencyStop : undefined;
    if (!estop?.active) {
      if (optBool(opts, "json")) ctx.out(JSON.stringify({ active: false, wasActive: false }));
      else ctx.out("no emergency stop is active");
      return 0;
    }
    const since = typeof estop.since === "number" ? new Date(estop.since).toISOString() : "?";
    ctx.err(`emergency stop active since ${since} (by ${String(estop.by ?? "?")})`);
    const proof = await personProof(ctx, opts, "resume", "Allow AI clients to send commands again?");
    const r = await callDaemon(ctx.paths.socket, "loxmcp/resume", proof);
    if (optBool(opts, "json")) ctx.out(JSON.stringify(r ?? {}));
    else if (isRecord(r) && r.wasActive === true)
      ctx.out("emergency stop lifted: commands are allowed again");
    else ctx.out("no emergency stop was active");
    return 0;
  },
};
