/**
 * `loxmcp init`: writes `<config dir>/.env` (0600, dir 0700) with LOXONE_SERIAL, LOXONE_USER and
 * LOXONE_PASSWORD or LOXONE_PASSWORD_COMMAND. Interactive by default; fully scriptable with
 * `--serial --user --password-stdin | --password-command CMD`. The password is never echoed.
 */
import { existsSync } from "node:fs";
import {
  checkSerial,
  connectOrStartDaemon,
  isLoopbackHost,
  splitConnectUrl,
  startTimeoutFromEnv,
  systemLayout,
  systemStartHint,
  systemUserName,
} from "@loxmcp/common";
import { CliError, type CommandContext, type CommandSpec, optBool, optString } from "../command.js";
import { envFilePath, readDotenv, updateDotenv } from "../dotenv.js";
import { pinState } from "../person.js";
import { ask, readAllStdin } from "../prompt.js";
import { passwdEntry } from "../service/system/accounts.js";
import { setPin } from "./pin.js";
import { fetchStatus } from "./status.js";

const PIN_WHY =
  "no approval PIN is set yet: without one, any program running as you at a terminal can approve an AI's security actions (unlock, disarm) and an AI client's own confirmation counts. Set one with `loxmcp pin set`";

/**
 * Where `init` writes: the caller's config dir, or — hardened mode, `--system`, as root — the
 * system daemon's /etc/loxmcp, the file given to the daemon's user (0600), which the person's
 * account cannot read. In hardened mode without --system it refuses: the system daemon would
 * never read a per-user .env.
 */
function initTarget(
  ctx: CommandContext,
  system: boolean,
): { dir: string; owner?: { uid: number; gid: number }; user?: string } {
  if (!system && !ctx.paths.system) return { dir: ctx.paths.config };
  const layout = ctx.paths.system ?? systemLayout(ctx.env);
  if (!system) {
    throw new CliError(
      "USE_SYSTEM",
      `the daemon runs in hardened mode and reads its credentials from ${layout.config}, not yours: \`sudo loxmcp init --system\``,
    );
  }
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new CliError(
      "ROOT_REQUIRED",
      `init --system writes the system daemon's credentials to ${layout.config}, which only root may: \`sudo loxmcp init --system\``,
    );
  }
  if (!existsSync(layout.config)) {
    throw new CliError(
      "NOT_INSTALLED",
      `${layout.config} does not exist: install the system daemon first (\`sudo loxmcp service install --system\`)`,
    );
  }
  const user = systemUserName(layout);
  const e = passwdEntry(user);
  if (!e)
    throw new CliError(
      "NO_SUCH_USER",
      `the system daemon's user ${user} does not exist: \`sudo loxmcp service install --system\``,
    );
  return { dir: layout.config, owner: { uid: e.uid, gid: e.gid }, user };
}

/** Offers to set the approval PIN now (the daemon keeps it, so it is started when needed). */
async function offerPin(ctx: CommandContext): Promise<void> {
  const running = await fetchStatus(ctx).catch(() => undefined);
  if (running && running.state !== "down") {
    const st = await pinState(ctx).catch(() => undefined);
    if (st?.set) {
      ctx.out("approval PIN: already set (change it with `loxmcp pin set`)");
      return;
    }
  }
  const answer = await ask(
    ctx,
    "Set an approval PIN now? Only you will be able to approve security actions (unlock, disarm) with it [Y/n]: ",
  );
  if (/^n/i.test(answer)) {
    ctx.out(PIN_WHY);
    return;
  }
  if (!running || running.state === "down") {
    ctx.err("starting the daemon to store the PIN …");
    const c = await connectOrStartDaemon({
      env: ctx.env,
      paths: ctx.paths,
      timeoutMs: startTimeoutFromEnv(ctx.env),
      log: (m) => ctx.err(m),
    });
    c.socket.destroy();
  }
  await setPin(ctx, {});
}

/**
 * --connect-url: https (http only for a loopback simulator); one that already names the
 * Miniserver (`https://connect.loxonecloud.com/504F94A0C0DE/mcp`) is split into base and serial.
 */
function connectUrlOption(raw: string | undefined): { base: string; serial?: string } | undefined {
  if (!raw) return undefined;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CliError("BAD_URL", `--connect-url ${raw} is not a URL`, 2);
  }
  if (u.protocol !== "https:" && !(u.protocol === "http:" && isLoopbackHost(u.hostname))) {
    throw new CliError(
      "BAD_URL",
      "--connect-url must be https:// (plain http:// only for a loopback simulator)",
      2,
    );
  }
  const split = splitConnectUrl(raw);
  if (!split.ok) throw new CliError("BAD_URL", `--connect-url ${raw}: ${split.problem}`, 2);
  return split.serial === undefined ? { base: split.base } : { base: split.base, serial: split.serial };
}

/**
 * Asks for the password on the terminal (not shown). Empty keeps a stored password (or
 * password command); `!` asks for a command that prints it instead (the daemon runs it).
 */
async function askPassword(
  ctx: CommandContext,
  current: Record<string, string>,
): Promise<{ password: string } | { command: string } | { keep: true }> {
  const storedCommand = current.LOXONE_PASSWORD_COMMAND;
  const stored = Boolean(current.LOXONE_PASSWORD) || Boolean(storedCommand);
  ctx.err(
    "loxmcp keeps the password in the config dir's .env (mode 0600). Or it runs a command that prints it, like `pass show loxone`: type ! and Enter for that.",
  );
  const typed = await ask(
    ctx,
    `Password (not shown)${stored ? ` [keep stored${storedCommand ? " command" : ""}]` : ""}: `,
    true,
  );
  if (typed === "" && stored) return { keep: true };
  if (typed !== "!") return { password: typed };
  const given = await ask(
    ctx,
    `Command that prints the password${storedCommand ? ` [${storedCommand}]` : ""}: `,
  );
  const command = given || storedCommand || "";
  if (!command.trim()) {
    throw new CliError("BAD_PASSWORD_COMMAND", "no command given; nothing was written", 2);
  }
  return { command };
}

export const initCommand: CommandSpec = {
  name: "init",
  description: "set up the Miniserver serial, user and password (stored in the config dir, mode 0600)",
  options: [
    {
      flags: "--serial <serial>",
      description:
        "Miniserver serial number (12 hex characters, e.g. 504F94A00001; 50:4F:94:A0:00:01 works too)",
    },
    { flags: "--user <user>", description: "Loxone user name for the MCP login" },
    {
      flags: "--system",
      description:
        "hardened mode, as root: write the system daemon's credentials (/etc/loxmcp/.env, 0600, its user's) instead of yours",
    },
    { flags: "--password-stdin", description: "read the password from stdin (for scripts)" },
    {
      flags: "--password-command <cmd>",
      description:
        "store a command that prints the password (e.g. `pass show loxone`) instead of the password",
    },
    {
      flags: "--connect-url <url>",
      description:
        "connect service base URL (default https://connect.loxonecloud.com); a URL ending in /<serial>/mcp also sets the serial",
    },
  ],
  helpAfter: `
Examples:
  loxmcp init
  printf '%s' "$PW" | loxmcp init --serial 504F94A00001 --user ai --password-stdin
  loxmcp init --serial 504F94A00001 --user ai --password-command 'pass show loxone/ai'

At the password prompt, Enter keeps the stored password (or password command) and ! asks for a
command that prints the password instead.`,
  async run(ctx, { opts }) {
    const target = initTarget(ctx, optBool(opts, "system"));
    const file = envFilePath(target.dir);
    const current = readDotenv(file);
    const interactive = Boolean(ctx.stdin.isTTY) && !optBool(opts, "passwordStdin");
    const need = (what: string) =>
      new CliError(
        "MISSING_OPTION",
        `${what} is required when not running interactively (see \`loxmcp init --help\`)`,
        2,
      );

    // A connect URL that names the Miniserver (…/<serial>/mcp) also gives the serial.
    const connect = connectUrlOption(optString(opts, "connectUrl"));
    let serial = optString(opts, "serial") ?? connect?.serial;
    if (!serial) {
      if (!interactive) throw need("--serial");
      const def = current.LOXONE_SERIAL;
      serial = (await ask(ctx, `Miniserver serial${def ? ` [${def}]` : ""}: `)) || def || "";
    }
    const checked = checkSerial(serial);
    if (!checked.ok) {
      throw new CliError(
        "BAD_SERIAL",
        `"${serial.trim()}" is not a Miniserver serial: ${checked.problem} (Loxone Config → Miniserver → Serial number)`,
        2,
      );
    }
    serial = checked.serial;
    if (connect?.serial !== undefined && connect.serial !== serial) {
      throw new CliError(
        "SERIAL_CONFLICT",
        `--connect-url names Miniserver ${connect.serial} but --serial is ${serial}; give one of them, or --connect-url ${connect.base} (the base only)`,
        2,
      );
    }

    let user = optString(opts, "user");
    if (!user) {
      if (!interactive) throw need("--user");
      const def = current.LOXONE_USER;
      user = (await ask(ctx, `Loxone user${def ? ` [${def}]` : ""}: `)) || def || "";
    }
    if (!user.trim()) throw new CliError("BAD_USER", "the user name must not be empty", 2);

    let command = optString(opts, "passwordCommand");
    let password: string | undefined;
    let keep = false;
    if (command !== undefined) {
      if (!command.trim())
        throw new CliError("BAD_PASSWORD_COMMAND", "--password-command must not be empty", 2);
      if (optBool(opts, "passwordStdin")) {
        throw new CliError("USAGE", "use either --password-stdin or --password-command, not both", 2);
      }
    } else if (optBool(opts, "passwordStdin")) {
      password = (await readAllStdin(ctx)).replace(/\r?\n$/, "");
    } else if (interactive) {
      const answer = await askPassword(ctx, current);
      if ("keep" in answer) keep = true;
      else if ("command" in answer) command = answer.command;
      else password = answer.password;
    } else {
      throw need("--password-stdin or --password-command");
    }
    if (password !== undefined && password.length === 0) {
      throw new CliError("EMPTY_PASSWORD", "the password is empty; nothing was written", 2);
    }

    const set: Record<string, string> = { LOXONE_SERIAL: serial, LOXONE_USER: user.trim() };
    if (connect) set.LOXONE_CONNECT_URL = connect.base;
    let remove: string[];
    if (keep) {
      remove = [];
    } else if (command !== undefined) {
      set.LOXONE_PASSWORD_COMMAND = command;
      remove = ["LOXONE_PASSWORD"];
    } else {
      set.LOXONE_PASSWORD = password ?? "";
      remove = ["LOXONE_PASSWORD_COMMAND"];
    }
    updateDotenv(file, target.dir, set, remove, target.owner);
    const keys = Object.keys(set).join(", ");
    ctx.out(
      `wrote ${file} (mode 0600${target.user ? `, owned by ${target.user}` : ""}): ${keys}${keep ? " (the stored password is kept)" : ""}`,
    );
    const running = await fetchStatus(ctx).catch(() => undefined);
    if (running && running.state !== "down") {
      ctx.out(
        "the running daemon still uses the old settings: `loxmcp relogin` makes it read the new credentials and log in with them (a changed serial or connect URL needs `loxmcp stop && loxmcp start`)",
      );
    }
    if (target.owner) {
      if (!running || running.state === "down")
        ctx.out(`start the system daemon with these credentials: \`${systemStartHint()}\``);
      ctx.out("approval PIN: `sudo loxmcp pin set` (in hardened mode only root sets it)");
    } else if (interactive) await offerPin(ctx);
    else ctx.out(PIN_WHY);
    ctx.out(
      target.owner
        ? "next: `loxmcp status` shows whether the system daemon logs in; MCP client configs need no LOXMCP_HOME (`loxmcp client-config claude-code` …)"
        : "next: `loxmcp login-check` tests the login, then `loxmcp client-config claude-desktop` (or claude-code, cursor, vscode, windsurf)",
    );
    return 0;
  },
};
