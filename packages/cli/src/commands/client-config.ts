/**
 * `loxmcp client-config claude|claude-code|cursor [--write] [--name N]`: the exact MCP client
 * configuration for this installation (absolute node + shim paths); `--write` merges it into
 * the client's config file under `mcpServers.<server name>` after a timestamped backup.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import type { Env } from "@loxmcp/common";
import { CliError, type CommandSpec, optBool, optString } from "../command.js";
import { isRecord, shellQuote } from "../format.js";
import { shimBin } from "../locate.js";

const CLIENTS = ["claude", "claude-code", "cursor"] as const;
type ClientKind = (typeof CLIENTS)[number];

/** Name the shim reports to the daemon (status, audit, per-client policy rules). */
const DEFAULT_NAME: Record<ClientKind, string> = {
  claude: "claude-desktop",
  "claude-code": "claude-code",
  cursor: "cursor",
};

export interface ServerEntry {
  command: string;
  args: string[];
  env?: Record<string, string>;
}

export function serverEntry(env: Env, clientName: string): ServerEntry {
  const entry: ServerEntry = { command: process.execPath, args: [shimBin(env), "--name", clientName] };
  const pass: Record<string, string> = {};
  for (const key of ["LOXMCP_HOME", "LOXMCP_SOCKET"]) {
    const v = env[key];
    if (v) pass[key] = v;
  }
  if (Object.keys(pass).length > 0) entry.env = pass;
  return entry;
}

/** The client's config file for this platform. */
export function clientConfigFile(kind: "claude" | "cursor", env: Env, platform = process.platform): string {
  const home = env.HOME || homedir();
  if (kind === "cursor") return join(home, ".cursor", "mcp.json");
  if (platform === "darwin")
    return join(home, "Library", "Application Support", "Claude", "claude_desktop_config.json");
  if (platform === "linux")
    return join(env.XDG_CONFIG_HOME || join(home, ".config"), "Claude", "claude_desktop_config.json");
  throw new CliError(
    "UNSUPPORTED_PLATFORM",
    `no known Claude Desktop config location on ${platform}; paste the printed snippet yourself`,
  );
}

function timestamp(d = new Date()): string {
  return d
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
}

/**
 * Merges `entry` into the JSON config `file` under mcpServers[serverName], keeping everything
 * else. Refuses to touch a file that is not a JSON object. Returns what happened.
 */
export function mergeClientConfig(
  file: string,
  serverName: string,
  entry: ServerEntry,
): { changed: boolean; backup?: string } {
  let doc: Record<string, unknown> = {};
  let original: string | undefined;
  if (existsSync(file)) {
    original = readFileSync(file, "utf8");
    if (original.trim() !== "") {
      let parsed: unknown;
      try {
        parsed = JSON.parse(original);
      } catch (err) {
        throw new CliError(
          "CONFIG_UNPARSEABLE",
          `refusing to change ${file}: it is not valid JSON (${(err as Error).message}); fix or move it, then run this again — or paste the printed snippet by hand`,
        );
      }
      if (!isRecord(parsed)) {
        throw new CliError(
          "CONFIG_UNPARSEABLE",
          `refusing to change ${file}: its top level is not a JSON object; fix or move it first`,
        );
      }
      doc = parsed;
    }
  }
  const servers = doc.mcpServers ?? {};
  if (!isRecord(servers)) {
    throw new CliError(
      "CONFIG_UNPARSEABLE",
      `refusing to change ${file}: "mcpServers" is not an object; fix it first`,
    );
  }
  if (JSON.stringify(servers[serverName]) === JSON.stringify(entry)) return { changed: false };
  const next = { ...doc, mcpServers: { ...servers, [serverName]: entry } };
  mkdirSync(dirname(file), { recursive: true });
  let backup: string | undefined;
  let mode = 0o600;
  if (original !== undefined) {
    backup = `${file}.bak-${timestamp()}`;
    copyFileSync(file, backup);
    mode = statSync(file).mode & 0o777;
  }
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, `${JSON.stringify(next, null, 2)}\n`, { mode });
  renameSync(tmp, file);
  return backup ? { changed: true, backup } : { changed: true };
}

export function claudeCodeCommand(serverName: string, entry: ServerEntry): string {
  const words = ["claude", "mcp", "add", "--scope", "user"];
  for (const [k, v] of Object.entries(entry.env ?? {})) words.push("-e", `${k}=${v}`);
  words.push(serverName, "--", entry.command, ...entry.args);
  return words.map(shellQuote).join(" ");
}

export const clientConfigCommand: CommandSpec = {
  name: "client-config",
  description: "print (or --write) the MCP client configuration that runs the loxmcp shim",
  arguments: [{ name: "client", description: CLIENTS.join("|"), required: true, choices: CLIENTS }],
  options: [
    {
      flags: "--write",
      description: "merge it into the client's config file (a timestamped backup is kept)",
    },
    {
      flags: "--name <name>",
      description: "client name the shim reports (status, audit, per-client policy)",
    },
    { flags: "--server-name <key>", description: "key under mcpServers", defaultValue: "loxone" },
  ],
  async run(ctx, { args, opts }) {
    const kind = args[0] as ClientKind;
    const serverName = optString(opts, "serverName") ?? "loxone";
    const entry = serverEntry(ctx.env, optString(opts, "name") ?? DEFAULT_NAME[kind]);
    if (kind === "claude-code") {
      ctx.out(claudeCodeCommand(serverName, entry));
      if (optBool(opts, "write")) {
        ctx.err("claude-code keeps its own config: run the command above (nothing was written)");
      }
      return 0;
    }
    const file = clientConfigFile(kind, ctx.env);
    if (!optBool(opts, "write")) {
      ctx.out(JSON.stringify({ mcpServers: { [serverName]: entry } }, null, 2));
      ctx.err(`add this to ${file} (or run with --write to merge it there)`);
      return 0;
    }
    const r = mergeClientConfig(file, serverName, entry);
    if (!r.changed) {
      ctx.out(`${file} already has this mcpServers.${serverName} entry; nothing changed`);
      return 0;
    }
    if (r.backup) ctx.out(`backup: ${r.backup}`);
    ctx.out(`wrote mcpServers.${serverName} to ${file}`);
    ctx.out(`restart ${kind === "claude" ? "Claude Desktop" : "Cursor"} to pick it up`);
    return 0;
  },
};
