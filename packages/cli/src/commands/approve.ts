/**
 * `loxmcp approve [CODE]`: the PERSON approves an action an AI asked for (two-phase
 * confirmation). Without a code (or with --list) it lists the pending approvals. Only this
 * command (the control socket) can approve: an AI repeating its call or the code does nothing.
 */
import { type CommandSpec, optBool } from "../command.js";
import { callDaemon } from "../daemon-client.js";
import { isRecord } from "../format.js";

interface Pending {
  code: string;
  client: string;
  tool: string;
  summary: string;
  approved: boolean;
  expiresAt: number;
}

function secondsLeft(p: Pending): number {
  return Math.max(0, Math.round((p.expiresAt - Date.now()) / 1000));
}

export const approveCommand: CommandSpec = {
  name: "approve",
  description: "approve an action an AI client asked for, by its one-time code (no code: list pending ones)",
  arguments: [{ name: "code", description: "the 6-character code from the AI's message" }],
  options: [
    { flags: "--list", description: "list pending approvals" },
    { flags: "--json", description: "print the daemon's answer as JSON" },
  ],
  helpAfter: `
Read what will happen before approving: the AI then has to repeat exactly the same call
within the code's lifetime (about 2 minutes) for it to run, once.`,
  async run(ctx, { args, opts }) {
    const code = args[0];
    const json = optBool(opts, "json");
    if (!code || optBool(opts, "list")) {
      const r = await callDaemon(ctx.paths.socket, "loxmcp/approve", { list: true });
      const pending = (isRecord(r) && Array.isArray(r.pending) ? r.pending : []) as Pending[];
      if (json) {
        ctx.out(JSON.stringify({ pending }));
        return 0;
      }
      if (pending.length === 0) {
        ctx.out("no pending approvals");
        return 0;
      }
      for (const p of pending) {
        ctx.out(
          `${p.code}  ${p.approved ? "approved, waiting for the repeat" : "pending"}  ${secondsLeft(p)}s left  ${p.client}: ${p.summary}`,
        );
      }
      ctx.out("approve one with: loxmcp approve CODE");
      return 0;
    }
    const r = await callDaemon(ctx.paths.socket, "loxmcp/approve", { code });
    const entry = (isRecord(r) && isRecord(r.approved) ? r.approved : undefined) as Pending | undefined;
    if (json) {
      ctx.out(JSON.stringify(r ?? {}));
    } else if (entry) {
      ctx.out(`approved ${entry.code}: ${entry.client} may now ${entry.summary}`);
      ctx.out(
        `it runs when ${entry.client} repeats the identical call within ${secondsLeft(entry)} s (once)`,
      );
    }
    return 0;
  },
};
