/**
 * `loxmcp stop-all`: emergency stop. Blocks every write from AI clients (persisted: survives a
 * daemon restart) and sends `stop` to every blind and gate, printing what the Miniserver said
 * for each. Lifted only by `loxmcp resume`.
 */
import { type CommandSpec, optBool, optString } from "../command.js";
import { callDaemon } from "../daemon-client.js";
import { isRecord } from "../format.js";

interface Report {
  name: string;
  room: string;
  type: string;
  ok: boolean;
  answer: string;
}

export const stopAllCommand: CommandSpec = {
  name: "stop-all",
  description: "EMERGENCY STOP: stop every blind and gate and block all AI commands until `loxmcp resume`",
  options: [
    { flags: "--reason <text>", description: "why (kept in the audit trail)" },
    { flags: "--json", description: "print the daemon's answer as JSON" },
  ],
  async run(ctx, { opts }) {
    const reason = optString(opts, "reason");
    const r = await callDaemon(ctx.paths.socket, "loxmcp/stop-all", reason ? { reason } : {}, {
      timeoutMs: 60_000,
    });
    const stopped = (isRecord(r) && Array.isArray(r.stopped) ? r.stopped : []) as Report[];
    const failed = stopped.filter((s) => !s.ok);
    if (optBool(opts, "json")) {
      ctx.out(JSON.stringify(r ?? {}));
    } else {
      ctx.out("EMERGENCY STOP active: every command from AI clients is refused until `loxmcp resume`");
      for (const s of stopped) {
        const answer = s.answer.length > 120 ? `${s.answer.slice(0, 117)}...` : s.answer;
        ctx.out(`  ${s.ok ? "stopped" : "FAILED "}  ${s.name} (${s.room}, ${s.type}): ${answer}`);
      }
      if (isRecord(r) && typeof r.warning === "string") ctx.err(`warning: ${r.warning}`);
      if (failed.length > 0)
        ctx.err(`${failed.length} device(s) did not confirm the stop: check them on site`);
    }
    return failed.length > 0 || (isRecord(r) && typeof r.warning === "string") ? 1 : 0;
  },
};
