/**
 * The person's proof for approve, resume and `tools accept`: the approval PIN when one is set
 * (asked on the terminal with echo off, or read with --pin-stdin), else the person at an
 * interactive terminal typing "yes". Never plain piped input without a PIN: an agent's
 * non-interactive shell gets a clear refusal at once, it never hangs.
 */
import { CliError, type CommandContext, optBool } from "./command.js";
import { callDaemon } from "./daemon-client.js";
import { isRecord } from "./format.js";
import { ask, readStdinLines } from "./prompt.js";

export interface PinState {
  set: boolean;
  setAt?: number;
  failures: number;
  lockedForSec?: number;
}

export const PIN_STDIN_OPTION = {
  flags: "--pin-stdin",
  description: "read the approval PIN from standard input (one line), e.g. from a password manager",
} as const;

export async function pinState(ctx: CommandContext): Promise<PinState> {
  const r = await callDaemon(ctx.paths.socket, "loxmcp/pin", { action: "status" });
  const o = isRecord(r) ? r : {};
  const st: PinState = { set: o.set === true, failures: typeof o.failures === "number" ? o.failures : 0 };
  if (typeof o.lockedForSec === "number") st.lockedForSec = o.lockedForSec;
  if (typeof o.setAt === "number") st.setAt = o.setAt;
  return st;
}

/** True when the person is at an interactive terminal (stdin is a TTY). */
export function atTerminal(ctx: CommandContext): boolean {
  return Boolean(ctx.stdin.isTTY);
}

/**
 * Asks for the person's proof for `what` ("approve", "resume", "tools accept") and returns the
 * parameters to send with the request. `confirmQuestion` is asked when no PIN is set.
 */
export async function personProof(
  ctx: CommandContext,
  opts: Record<string, unknown>,
  what: string,
  confirmQuestion: string,
): Promise<Record<string, unknown>> {
  const st = await pinState(ctx);
  const fromStdin = optBool(opts, "pinStdin");
  if (st.lockedForSec !== undefined) {
    throw new CliError(
      "PIN_LOCKED",
      `too many wrong PINs (${st.failures} in a row): ${what} is refused for another ${st.lockedForSec} s`,
    );
  }
  if (st.set) {
    if (fromStdin) {
      const [pin] = await readStdinLines(ctx);
      if (!pin) throw new CliError("NO_PIN_GIVEN", "--pin-stdin: standard input held no PIN", 2);
      return { pin };
    }
    if (!atTerminal(ctx)) {
      throw new CliError(
        "PIN_NEEDED",
        `${what} needs your approval PIN: run \`loxmcp ${what}\` in a terminal (it asks for the PIN), or pass it with --pin-stdin`,
      );
    }
    const pin = await ask(ctx, "Approval PIN (not shown): ", true);
    if (!pin) throw new CliError("NO_PIN_GIVEN", "no PIN entered: nothing was done", 1);
    return { pin };
  }
  if (fromStdin) {
    throw new CliError(
      "NO_PIN_SET",
      "no approval PIN is set, so --pin-stdin cannot be used: set one at a terminal with `loxmcp pin set`",
      2,
    );
  }
  if (!atTerminal(ctx)) {
    throw new CliError(
      "TERMINAL_REQUIRED",
      `${what} must be done by the person at an interactive terminal: no approval PIN is set and standard input is not a terminal. Run \`loxmcp ${what}\` yourself in a terminal, or set a PIN with \`loxmcp pin set\``,
    );
  }
  const answer = await ask(ctx, `${confirmQuestion} Type "yes" to confirm: `);
  if (answer.toLowerCase() !== "yes") throw new CliError("NOT_CONFIRMED", "not confirmed: nothing was done");
  return { interactive: true };
}
