/**
 * `loxmcp init`: writes `<config dir>/.env` (0600, dir 0700) with LOXONE_SERIAL, LOXONE_USER and
 * LOXONE_PASSWORD or LOXONE_PASSWORD_COMMAND. Interactive by default; fully scriptable with
 * `--serial --user --password-stdin | --password-command CMD`. The password is never echoed.
 */
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import { CliError, type CommandContext, type CommandSpec, optBool, optString } from "../command.js";
import { envFilePath, readDotenv, updateDotenv } from "../dotenv.js";
import { fetchStatus } from "./status.js";

const SERIAL_RE = /^[0-9A-F]{12}$/i;

async function readAllStdin(ctx: CommandContext): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of ctx.stdin) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(String(c)));
  return Buffer.concat(chunks).toString("utf8");
}

/** Asks one question on the terminal; `secret` hides what is typed. */
async function ask(ctx: CommandContext, question: string, secret = false): Promise<string> {
  let muted = false;
  const output = new Writable({
    write(chunk, _enc, cb) {
      if (!muted) process.stderr.write(chunk);
      cb();
    },
  });
  const rl = createInterface({ input: ctx.stdin, output, terminal: Boolean(ctx.stdin.isTTY) });
  try {
    return await new Promise<string>((resolve, reject) => {
      rl.question(question, (answer) => resolve(answer.trim()));
      rl.once("close", () => reject(new CliError("ABORTED", "init aborted: no input")));
      if (secret) muted = true;
    });
  } finally {
    if (secret) process.stderr.write("\n");
    rl.close();
  }
}

export const initCommand: CommandSpec = {
  name: "init",
  description: "set up the Miniserver serial, user and password (stored in the config dir, mode 0600)",
  options: [
    {
      flags: "--serial <serial>",
      description: "Miniserver serial number (12 hex characters, e.g. 504F94A00001)",
    },
    { flags: "--user <user>", description: "Loxone user name for the MCP login" },
    { flags: "--password-stdin", description: "read the password from stdin (for scripts)" },
    {
      flags: "--password-command <cmd>",
      description:
        "store a command that prints the password (e.g. `pass show loxone`) instead of the password",
    },
    {
      flags: "--connect-url <url>",
      description: "connect service base URL (default https://connect.loxonecloud.com)",
    },
  ],
  helpAfter: `
Examples:
  loxmcp init
  printf '%s' "$PW" | loxmcp init --serial 504F94A00001 --user ai --password-stdin
  loxmcp init --serial 504F94A00001 --user ai --password-command 'pass show loxone/ai'`,
  async run(ctx, { opts }) {
    const file = envFilePath(ctx.paths.config);
    const current = readDotenv(file);
    const interactive = Boolean(ctx.stdin.isTTY) && !optBool(opts, "passwordStdin");
    const need = (what: string) =>
      new CliError(
        "MISSING_OPTION",
        `${what} is required when not running interactively (see \`loxmcp init --help\`)`,
        2,
      );

    let serial = optString(opts, "serial");
    if (!serial) {
      if (!interactive) throw need("--serial");
      const def = current.LOXONE_SERIAL;
      serial = (await ask(ctx, `Miniserver serial${def ? ` [${def}]` : ""}: `)) || def || "";
    }
    serial = serial.trim().toUpperCase();
    if (!SERIAL_RE.test(serial)) {
      throw new CliError(
        "BAD_SERIAL",
        `"${serial}" is not a Miniserver serial: expected 12 hex characters (Loxone Config → Miniserver → Serial number, e.g. 504F94A00001)`,
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

    const command = optString(opts, "passwordCommand");
    let password: string | undefined;
    if (command !== undefined) {
      if (!command.trim())
        throw new CliError("BAD_PASSWORD_COMMAND", "--password-command must not be empty", 2);
      if (optBool(opts, "passwordStdin")) {
        throw new CliError("USAGE", "use either --password-stdin or --password-command, not both", 2);
      }
    } else if (optBool(opts, "passwordStdin")) {
      password = (await readAllStdin(ctx)).replace(/\r?\n$/, "");
    } else if (interactive) {
      password = await ask(ctx, "Password (not shown): ", true);
    } else {
      throw need("--password-stdin or --password-command");
    }
    if (password !== undefined && password.length === 0) {
      throw new CliError("EMPTY_PASSWORD", "the password is empty; nothing was written", 2);
    }

    const set: Record<string, string> = { LOXONE_SERIAL: serial, LOXONE_USER: user.trim() };
    const connectUrl = optString(opts, "connectUrl");
    if (connectUrl) {
      let u: URL;
      try {
        u = new URL(connectUrl);
      } catch {
        throw new CliError("BAD_URL", `--connect-url ${connectUrl} is not a URL`, 2);
      }
      if (
        u.protocol !== "https:" &&
        !(u.protocol === "http:" && /^(127\.|localhost$|\[::1\]$)/.test(u.hostname))
      ) {
        throw new CliError(
          "BAD_URL",
          "--connect-url must be https:// (plain http:// only for a loopback simulator)",
          2,
        );
      }
      set.LOXONE_CONNECT_URL = connectUrl;
    }
    let remove: string[];
    if (command !== undefined) {
      set.LOXONE_PASSWORD_COMMAND = command;
      remove = ["LOXONE_PASSWORD"];
    } else {
      set.LOXONE_PASSWORD = password ?? "";
      remove = ["LOXONE_PASSWORD_COMMAND"];
    }
    updateDotenv(file, ctx.paths.config, set, remove);
    const keys = Object.keys(set).join(", ");
    ctx.out(`wrote ${file} (mode 0600): ${keys}`);
    const running = await fetchStatus(ctx).catch(() => undefined);
    if (running && running.state !== "down") {
      ctx.out(
        "the running daemon still uses the old settings: restart it with `loxmcp stop && loxmcp start`",
      );
    }
    ctx.out(
      "next: `loxmcp login-check` tests the login, then `loxmcp client-config claude` (or cursor, claude-code)",
    );
    return 0;
  },
};
