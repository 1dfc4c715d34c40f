/**
 * `loxmcp pin set|remove|status`: the person's approval PIN. Approve, resume and accepting tool
 * changes need it once it is set, and with it an AI client's own confirmation no longer approves
 * a security action. The first PIN can only be set at a terminal; once one exists, --pin-stdin
 * reads the PINs from standard input, one per line (old, new, new). Stored by the daemon only as
 * a salted scrypt hash.
 *
 * Hardened mode (the system daemon): only root sets, resets (a forgotten PIN) or removes the PIN,
 * over the admin socket that the person's account cannot open; no current PIN is asked, and
 * --pin-stdin reads the new PIN twice. The daemon refuses those changes on the ordinary socket.
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

/**
 * Hardened mode: the admin socket, when this is root; a refusal naming the sudo command otherwise.
 * undefined for a per-user daemon.
 */
function rootChannel(ctx: CommandContext, what: string): string | undefined {
  const system = ctx.paths.system;
  if (!system) return undefined;
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new CliError(
      "ROOT_REQUIRED",
      `the system daemon (hardened mode) takes PIN changes from root only: run \`sudo loxmcp pin ${what}\`; nothing was changed`,
    );
  }
  return system.adminSocket;
}

/** Root, hardened mode: the new PIN twice (terminal, or two lines with --pin-stdin). */
async function readNewPinAsRoot(ctx: CommandContext, opts: Record<string, unknown>): Promise<string> {
  let a: string;
  let b: string;
  if (optBool(opts, "pinStdin")) {
    const lines = await readStdinLines(ctx);
    if (lines.length < 2)
      throw new CliError(
        "USAGE",
        "--pin-stdin (as root, hardened mode) needs two lines: the new PIN, the new PIN again",
        2,
      );
    [a, b] = [lines[0] ?? "", lines[1] ?? ""];
  } else {
    if (!atTerminal(ctx)) {
      throw new CliError("TERMINAL_REQUIRED", "no terminal: pass the new PIN twice with --pin-stdin", 2);
    }
    a = await ask(ctx, `New approval PIN, ${MIN}+ digits or a passphrase (not shown): `, true);
    checkNewPin(a);
    b = await ask(ctx, "New approval PIN again: ", true);
  }
  if (a !== b) throw new CliError("PIN_MISMATCH", "the two PINs differ; nothing was changed", 2);
  checkNewPin(a);
  return a;
}

/** Root, hardened mode: set (or reset) the PIN over the admin socket. */
async function setPinAsRoot(
  ctx: CommandContext,
  opts: Record<string, unknown>,
  admin: string,
  action: "set" | "reset",
): Promise<void> {
  const st = await pinState(ctx);
  const next = await readNewPinAsRoot(ctx, opts);
  await callDaemon(admin, "loxmcp/pin", { action, newPin: next }, { timeoutMs: 30_000 });
  ctx.out(
    action === "reset"
      ? "approval PIN reset: the old one no longer works, wrong-PIN counter and lockout cleared"
      : st.set
        ? "approval PIN changed"
        : "approval PIN set: approve, resume and `loxmcp tools accept` now ask for it",
  );
}

/** Sets or changes the PIN (used by `pin set` and by `init`). */
export async function setPin(ctx: CommandContext, opts: Record<string, unknown>): Promise<void> {
  const admin = rootChannel(ctx, "set");
  if (admin) return setPinAsRoot(ctx, opts, admin, "set");
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

const reset: CommandSpec = {
  name: "reset",
  description:
    "hardened mode, as root: set a new approval PIN without the forgotten one (clears the lockout)",
  options: [PIN_STDIN_OPTION],
  async run(ctx, { opts }) {
    const admin = rootChannel(ctx, "reset");
    if (!admin) {
      throw new CliError(
        "NOT_HARDENED",
        "`loxmcp pin reset` is for hardened mode (root resets a forgotten PIN of the system daemon); this daemon runs as you: change the PIN with `loxmcp pin set` (a forgotten one: docs/policy.md)",
      );
    }
    await setPinAsRoot(ctx, opts, admin, "reset");
    return 0;
  },
};

const remove: CommandSpec = {
  name: "remove",
  description: "remove the approval PIN (needs the current PIN; hardened mode: root only)",
  options: [PIN_STDIN_OPTION],
  async run(ctx, { opts }) {
    const admin = rootChannel(ctx, "remove");
    const st = await pinState(ctx);
    if (!st.set) {
      ctx.out("no approval PIN is set");
      return 0;
    }
    if (admin) {
      await callDaemon(admin, "loxmcp/pin", { action: "remove" }, { timeoutMs: 30_000 });
      ctx.out("approval PIN removed: approving now needs an interactive terminal");
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
  description: "the person's approval PIN: set, reset, remove, status",
  subcommands: [set, reset, remove, status],
  helpAfter: `
With a PIN set, approve, resume and \`loxmcp tools accept\` need it (wherever they come from),
and an MCP client's own confirmation (elicitation) no longer approves a security action.
Use at least ${MIN} digits or a passphrase. Wrong PINs are counted; after 5 in a row attempts
are refused for 1 minute, doubling up to 15 minutes.
Hardened mode (the system daemon): \`sudo loxmcp pin set\` / \`sudo loxmcp pin reset\` (a forgotten
PIN) / \`sudo loxmcp pin remove\`; the person's account cannot change it.`,
  async run(ctx, input) {
    return status.run?.(ctx, input);
  },
};
