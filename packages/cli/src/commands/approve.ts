/**
 * `loxmcp approve [CODE]` and `loxmcp deny CODE`: the PERSON decides on an action an AI asked
 * for (two-phase confirmation). Without a code (or with --list) approve lists the held actions.
 * Before asking for the PIN, approve shows what will happen: device, room, action and client.
 * With a PIN set the PIN is needed (terminal prompt or --pin-stdin); without one, approving needs
 * an interactive terminal. Denying needs neither: it can only stop an action.
 */
import { CliError, type CommandContext, type CommandSpec, optBool } from "../command.js";
import { callDaemon } from "../daemon-client.js";
import { isRecord, printable } from "../format.js";
import { PIN_STDIN_OPTION, personProof } from "../person.js";

interface Pending {
  code: string;
  client: string;
  tool: string;
  summary: string;
  approved: boolean;
  expiresAt: number;
  arguments?: string;
}

function secondsLeft(p: Pending): number {
  return Math.max(0, Math.round((p.expiresAt - Date.now()) / 1000));
}

async function listPending(ctx: CommandContext): Promise<Pending[]> {
  const r = await callDaemon(ctx.paths.socket, "loxmcp/approve", { list: true });
  const list = (isRecord(r) && Array.isArray(r.pending) ? r.pending : []) as Pending[];
  return list.map(safe);
}

/** Client and tool names come from MCP clients: never let them drive the person's terminal. */
function safe(p: Pending): Pending {
  return {
    ...p,
    client: printable(String(p.client)),
    tool: printable(String(p.tool)),
    summary: printable(String(p.summary)),
    ...(typeof p.arguments === "string" ? { arguments: printable(p.arguments) } : {}),
  };
}

function noSuchCode(code: string): CliError {
  return new CliError(
    "NO_SUCH_CODE",
    `no pending approval with code ${code} (wrong or expired); list them with \`loxmcp approve --list\``,
  );
}

export const approveCommand: CommandSpec = {
  name: "approve",
  description: "approve an action an AI client asked for, by its one-time code (no code: list held ones)",
  arguments: [{ name: "code", description: "the 6-character code the AI told you" }],
  options: [
    { flags: "--list", description: "list held actions" },
    PIN_STDIN_OPTION,
    { flags: "--json", description: "print the daemon's answer as JSON" },
  ],
  helpAfter: `
Read what will happen before approving: the AI then has to repeat exactly the same call
within the code's lifetime (about 2 minutes) for it to run, once.
With an approval PIN set (\`loxmcp pin set\`) the PIN is asked for; without one, approving
works only at an interactive terminal. \`loxmcp deny CODE\` drops a held action.`,
  async run(ctx, { args, opts }) {
    const code = args[0]?.trim().toUpperCase();
    const json = optBool(opts, "json");
    if (!code || optBool(opts, "list")) {
      const pending = await listPending(ctx);
      if (json) {
        ctx.out(JSON.stringify({ pending }));
        return 0;
      }
      if (pending.length === 0) {
        ctx.out("no actions are waiting for approval");
        return 0;
      }
      for (const p of pending) {
        ctx.out(
          `${p.code}  ${p.approved ? "approved, waiting for the repeat" : "waiting"}  ${secondsLeft(p)}s left  ${p.client}: ${p.summary}`,
        );
      }
      ctx.out("approve one with: loxmcp approve CODE   (or drop it: loxmcp deny CODE)");
      return 0;
    }
    const held = (await listPending(ctx)).find((p) => p.code === code);
    if (!held) throw noSuchCode(code);
    if (held.approved) {
      ctx.out(
        `${code} is already approved; it runs when ${held.client} repeats the call (${secondsLeft(held)} s left)`,
      );
      return 0;
    }
    // What will happen, before any PIN is asked for.
    ctx.err(`${held.client} asks to ${held.summary}`);
    ctx.err(`(tool ${held.tool}, code ${code}, ${secondsLeft(held)} s left)`);
    // A call without a checkable target: every argument it will be sent with, nothing hidden.
    if (typeof held.arguments === "string")
      ctx.err(`arguments, exactly as they will be sent: ${held.arguments}`);
    const proof = await personProof(ctx, opts, "approve", `Approve this for ${held.client}?`);
    const r = await callDaemon(ctx.paths.socket, "loxmcp/approve", { code, ...proof });
    const approved = (isRecord(r) && isRecord(r.approved) ? r.approved : undefined) as Pending | undefined;
    const entry = approved ? safe(approved) : undefined;
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

export const denyCommand: CommandSpec = {
  name: "deny",
  description: "drop an action an AI client asked for: it never runs (no PIN needed)",
  arguments: [{ name: "code", description: "the 6-character code of the held action", required: true }],
  options: [{ flags: "--json", description: "print the daemon's answer as JSON" }],
  async run(ctx, { args, opts }) {
    const code = (args[0] ?? "").trim().toUpperCase();
    const r = await callDaemon(ctx.paths.socket, "loxmcp/deny", { code });
    const denied = (isRecord(r) && isRecord(r.denied) ? r.denied : undefined) as Pending | undefined;
    const entry = denied ? safe(denied) : undefined;
    if (optBool(opts, "json")) ctx.out(JSON.stringify(r ?? {}));
    else if (entry) ctx.out(`denied ${entry.code}: ${entry.client} will not ${entry.summary}`);
    return 0;
  },
};
