/**
 * `loxmcp pin set|remove|status`: the person's approval PIN. Approve, resume and accepting tool
 * changes need it once it is set, and with it an AI client's own confirmation no longer approves
 * a security action. The first PIN can only be set at a terminal; once one exists, --pin-stdin
 * reads the PINs from standard input, one per line (old, new, new). Stored by the daemon only as
 * a salted scrypt hash.
 */
import { CliError, type CommandContext, type CommandSpec, optBool } from "../command.js";
import { callDaemon } from "../daemon-client.js";
import { atTerminal, PIN_STDIN_OPTION, type PinState, pinState } from "../person.js";
import { ask, readStdinLines } from "../prompt.js";

const MIN = 6;

/** Local check before anything is sent (the daemon checks again). */
function checkNewPin(pin: string): void {
  if (pin.trim().length < MIN) {
    throw new CliError(
      "WEAK_PIN",
      `the PIN is too short: use at least ${MIN} digits or a passphrase of ${MIN}+ characters; nothing was changed`,
      2,
    );
  }
}

/** Reads the old PIN (when one is set) and the new one twice. */
async function readPins(
  ctx: CommandContext,
  opts: Record<string, unknown>,
  st: PinState,
  wantNew: boolean,
): Promise<{ old?: string; next?: string }> {
  if (optBool(opts, "pinStdin")) {
    if (!st.set) {
      throw new CliError(
        "TERMINAL_REQUIRED",
        "the first approval PIN can only be set at an interactive terminal (not with --pin-stdin): run `loxmcp pin set` in a terminal",
        2,
      );
    }
    const lines = await readStdinLines(ctx);
    const need = wantNew ? 3 : 1;
    if (lines.length < need) {
      throw new CliError(
        "USAGE",
        `--pin-stdin needs ${wantNew ? "three lines: the current PIN, the new PIN, the new PIN again" : "one line: the current PIN"}`,
        2,
      );
    }
    const [old, a, b] = lines;
    if (!wantNew) return { old: old ?? "" };
    if (a !== b) throw new CliError("PIN_MISMATCH", "the two new PINs differ; nothing was changed", 2);
    return { old: old ?? "", next: a ?? "" };
  }
  if (!atTerminal(ctx)) {
    throw new CliError(
      "TERMINAL_REQUIRED",
      st.set
        ? "changing the approval PIN needs an interactive terminal or --pin-stdin (current PIN, new PIN, new PIN again, one per line)"
        : "the first approval PIN can only be set by the person at an interactive terminal: run `loxmcp pin set` in a terminal",
      2,
    );
  }
  const out: { old?: string; next?: string } = {};
  if (st.set) out.old = await ask(ctx, "Current approval PIN (not shown): ", true);
  if (wantNew) {
    const a = await ask(ctx, `New approval PIN, ${MIN}+ digits or a passphrase (not shown): `, true);
    checkNewPin(a);
    const b = await ask(ctx, "New approval PIN again: ", true);
    if (a !== b) throw new CliError("PIN_MISMATCH", "the two PINs differ; nothing was changed", 2);
    out.next = a;
  }
  return out;
}

/** Sets or changes the PIN (used by `pin set` and by `init`). */
export async function setPin(ctx: CommandContext, opts: Record<string, unknown>): Promise<void> {
  const st = await pinState(ctx);
  if (st.lockedForSec !== undefined) {
    throw new CliError(
      "PIN_LOCKED",
      `too many wrong PINs (${st.failures} in a row): try again in ${st.lockedForSec} s`,
    );
  }
  const { old, next } = await readPins(ctx, opts, st, true);
  checkNewPin(next ?? "");
  const params: Record<string, unknown> = { action: "set", newPin: next, interactive: atTerminal(ctx) };
  if (old !== undefined) params.pin = old;
  await callDaemon(ctx.paths.socket, "loxmcp/pin", params, { timeoutMs: 30_000 });
  ctx.out(
    st.set
      ? "approval PIN changed"
      : "approval PIN set: approve, resume and `loxmcp tools accept` now ask for it, and an AI client's own confirmation no longer approves a security action",
  );
}

const set: CommandSpec = {
  name: "set",
  description: "set or change the approval PIN (asks on the terminal; the current PIN first when one is set)",
  options: [PIN_STDIN_OPTION],
  async run(ctx, { opts }) {
    await setPin(ctx, opts);
    return 0;
  },
};

const remove: CommandSpec = {
  name: "remove",
  description: "remove the approval PIN (needs the current PIN)",
  options: [PIN_STDIN_OPTION],
  async run(ctx, { opts }) {
    const st = await pinState(ctx);
    if (!st.set) {
      ctx.out("no approval PIN is set");
      return 0;
    }
    const { old } = await readPins(ctx, opts, st, false);
    await callDaemon(ctx.paths.socket, "loxmcp/pin", { action: "remove", pin: old }, { timeoutMs: 30_000 });
    ctx.out(
      "approval PIN removed: approving now needs an interactive terminal, and MCP clients' own confirmation approves again",
    );
    return 0;
  },
};

const status: CommandSpec = {
  name: "status",
  description: "say whether an approval PIN is set and whether attempts are locked",
  options: [{ flags: "--json", description: "print the daemon's answer as JSON" }],
  async run(ctx, { opts }) {
    const st = await pinState(ctx);
    if (optBool(opts, "json")) {
      ctx.out(JSON.stringify(st));
      return 0;
    }
    ctx.out(
      st.set
        ? `approval PIN: set${st.setAt ? ` (on ${new Date(st.setAt).toISOString()}; if that was not you, see docs/policy.md "Threats, honestly")` : ""}`
        : "approval PIN: not set (set one with `loxmcp pin set`)",
    );
    if (st.failures > 0) ctx.out(`wrong PINs in a row: ${st.failures}`);
    if (st.lockedForSec !== undefined) ctx.out(`attempts locked for another ${st.lockedForSec} s`);
    return 0;
  },
};

export const pinCommand: CommandSpec = {
  name: "pin",
  description: "the person's approval PIN: set, remove, status",
  subcommands: [set, remove, status],
  helpAfter: `
With a PIN set, approve, resume and \`loxmcp tools accept\` need it (wherever they come from),
and an MCP client's own confirmation (elicitation) no longer approves a security action.
Use at least ${MIN} digits or a passphrase. Wrong PINs are counted; after 5 in a row attempts
are refused for 1 minute, doubling up to 15 minutes.`,
  async run(ctx, input) {
    return status.run?.(ctx, input);
  },
};
