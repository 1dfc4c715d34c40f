/**
 * `loxmcp client-config claude-desktop|claude-code|cursor|vscode|windsurf [--write] [--name N]
 * [--server-name K]`: the exact MCP client configuration for this installation (absolute node +
 * shim paths, `--name <client>` for per-client policy rules, LOXMCP_HOME/LOXMCP_SOCKET when set).
 * `--write` merges it into the client's config file after a timestamped backup; Claude Code
 * keeps its own config, so for it the `claude mcp add` command is printed to run.
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

/** Accepted on the command line; `claude` is the old name of claude-desktop. */
const CLIENT_ARGS = ["claude-desktop", "claude", "claude-code", "cursor", "vscode", "windsurf"] as const;
type ClientArg = (typeof CLIENT_ARGS)[number];
export type ClientKind = Exclude<ClientArg, "claude">;
/** Clients whose configuration is a JSON file loxmcp can merge into. */
export type FileClient = Exclude<ClientKind, "claude-code">;

export function clientKind(arg: string): ClientKind {
  return arg === "claude" ? "claude-desktop" : (arg as ClientKind);
}

interface ClientSpec {
  title: string;
  /** Top-level key of the servers map in the client's file. */
  key: "mcpServers" | "servers";
  /** VS Code wants the transport named in each entry. */
  typed: boolean;
}

const SPECS: Record<FileClient, ClientSpec> = {
  "claude-desktop": { title: "Claude Desktop", key: "mcpServers", typed: false },
  cursor: { title: "Cursor", key: "mcpServers", typed: false },
  vscode: { title: "VS Code", key: "servers", typed: true },
  windsurf: { title: "Windsurf", key: "mcpServers", typed: false },
};

export interface ServerEntry {
  type?: "stdio";
  command: string;
  args: string[];
  env?: Record<string, string>;
}

/**
 * The entry that runs this installation's shim as `clientName` (the name per-client policy rules
 * match), passing LOXMCP_HOME / LOXMCP_SOCKET so the client's shim finds this shell's daemon.
 */
export function serverEntry(env: Env, clientName: string, typed = false): ServerEntry {
  const entry: ServerEntry = typed
    ? { type: "stdio", command: process.execPath, args: [shimBin(env), "--name", clientName] }
    : { command: process.execPath, args: [shimBin(env), "--name", clientName] };
  const pass: Record<string, string> = {};
  for (const key of ["LOXMCP_HOME", "LOXMCP_SOCKET"]) {
    const v = env[key];
    if (v) pass[key] = v;
  }
  if (Object.keys(pass).length > 0) entry.env = pass;
  return entry;
}

function unsupported(what: string, platform: string): CliError {
  return new CliError(
    "UNSUPPORTED_PLATFORM",
    `no known ${what} config location on ${platform}; paste the printed snippet yourself`,
  );
}

/** The client's (user-wide) config file for this platform. `claude` is accepted for claude-desktop. */
export function clientConfigFile(
  kind: FileClient | "claude",
  env: Env,
  platform: NodeJS.Platform = process.platform,
): string {
  const home = env.HOME || homedir();
  const xdgConfig = env.XDG_CONFIG_HOME || join(home, ".config");
  switch (clientKind(kind)) {
    case "cursor":
      return join(home, ".cursor", "mcp.json");
    case "windsurf":
      return join(home, ".codeium", "windsurf", "mcp_config.json");
    case "vscode":
      if (platform === "darwin")
        return join(home, "Library", "Application Support", "Code", "User", "mcp.json");
      if (platform === "linux") return join(xdgConfig, "Code", "User", "mcp.json");
      throw unsupported("VS Code", platform);
    default:
      if (platform === "darwin")
        return join(home, "Library", "Application Support", "Claude", "claude_desktop_config.json");
      if (platform === "linux") return join(xdgConfig, "Claude", "claude_desktop_config.json");
      throw unsupported("Claude Desktop", platform);
  }
}

/** Claude Code's own config (user-scope servers at the top level, local ones under projects). */
export function claudeCodeConfigFile(env: Env): string {
  return join(env.HOME || homedir(), ".claude.json");
}

function timestamp(d = new Date()): string {
  return d
    .toISOString()
    .replace(/[-:]/g, "")
    .replace(/\.\d+Z$/, "Z");
}

function readJsonObject(file: string): { doc: Record<string, unknown>; original?: string } {
  if (!existsSync(file)) return { doc: {} };
  const original = readFileSync(file, "utf8");
  if (original.trim() === "") return { doc: {}, original };
  let parsed: unknown;
  try {
    parsed = JSON.parse(original);
  } catch (err) {
    throw new CliError(
      "CONFIG_UNPARSEABLE",
      `refusing to change ${file}: it is not valid JSON (${(err as Error).message}; comments are not understood either); fix or move it, then run this again — or paste the printed snippet by hand`,
    );
  }
  if (!isRecord(parsed)) {
    throw new CliError(
      "CONFIG_UNPARSEABLE",
      `refusing to change ${file}: its top level is not a JSON object; fix or move it first`,
    );
  }
  return { doc: parsed, original };
}

/**
 * Merges `entry` into the JSON config `file` under <key>[serverName] (key "mcpServers", or
 * "servers" for VS Code), keeping everything else. Refuses to touch a file that is not a JSON
 * object. A changed file is backed up first (`<file>.bak-<UTC time>`). Returns what happened.
 */
export function mergeClientConfig(
  file: string,
  serverName: string,
  entry: ServerEntry,
  key: "mcpServers" | "servers" = "mcpServers",
): { changed: boolean; backup?: string } {
  const { doc, original } = readJsonObject(file);
  const servers = doc[key] ?? {};
  if (!isRecord(servers)) {
    throw new CliError(
      "CONFIG_UNPARSEABLE",
      `refusing to change ${file}: "${key}" is not an object; fix it first`,
    );
  }
  if (JSON.stringify(servers[serverName]) === JSON.stringify(entry)) return { changed: false };
  const next = { ...doc, [key]: { ...servers, [serverName]: entry } };
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

/**
 * `claude mcp add --scope user <name> -e K=V … -- <node> <shim> --name …`. The server name comes
 * before `-e`: Claude Code's `-e` takes several values and would swallow a name after it.
 */
export function claudeCodeCommand(serverName: string, entry: ServerEntry): string {
  const words = ["claude", "mcp", "add", "--scope", "user", serverName];
  for (const [k, v] of Object.entries(entry.env ?? {})) words.push("-e", `${k}=${v}`);
  words.push("--", entry.command, ...entry.args);
  return words.map(shellQuote).join(" ");
}

/** One configured server that runs the loxmcp shim, wherever a client keeps it. */
export interface ShimEntry {
  kind: ClientKind;
  file: string;
  /** Where in the file, e.g. `mcpServers.loxone` or `projects["/src/x"].mcpServers.loxone`. */
  where: string;
  /** The server's key (for `--server-name`). */
  name: string;
  command: string;
  args: string[];
  env: Record<string, string>;
}

function shimEntriesOf(
  kind: ClientKind,
  file: string,
  servers: unknown,
  prefix: string,
  out: ShimEntry[],
): void {
  if (!isRecord(servers)) return;
  for (const [name, e] of Object.entries(servers)) {
    if (!isRecord(e) || !Array.isArray(e.args)) continue;
    const args = e.args.filter((a): a is string => typeof a === "string");
    if (!args.some((a) => a.includes("loxmcp-shim"))) continue;
    const env: Record<string, string> = {};
    if (isRecord(e.env)) for (const [k, v] of Object.entries(e.env)) if (typeof v === "string") env[k] = v;
    out.push({
      kind,
      file,
      where: `${prefix}${name}`,
      name,
      command: typeof e.command === "string" ? e.command : "",
      args,
      env,
    });
  }
}

/**
 * Every server entry that runs the loxmcp shim in the user-wide configs of the clients this
 * command knows (unreadable or invalid files are skipped: doctor reports those elsewhere).
 */
export function findShimEntries(env: Env): ShimEntry[] {
  const out: ShimEntry[] = [];
  const read = (file: string): Record<string, unknown> | undefined => {
    try {
      return existsSync(file) ? readJsonObject(file).doc : undefined;
    } catch {
      return undefined;
    }
  };
  for (const kind of Object.keys(SPECS) as FileClient[]) {
    let file: string;
    try {
      file = clientConfigFile(kind, env);
    } catch {
      continue;
    }
    const doc = read(file);
    if (doc) shimEntriesOf(kind, file, doc[SPECS[kind].key], `${SPECS[kind].key}.`, out);
  }
  const cc = claudeCodeConfigFile(env);
  const doc = read(cc);
  if (doc) {
    shimEntriesOf("claude-code", cc, doc.mcpServers, "mcpServers.", out);
    if (isRecord(doc.projects)) {
      for (const [dir, p] of Object.entries(doc.projects)) {
        if (isRecord(p))
          shimEntriesOf("claude-code", cc, p.mcpServers, `projects[${JSON.stringify(dir)}].mcpServers.`, out);
      }
    }
  }
  return out;
}

export const clientConfigCommand: CommandSpec = {
  name: "client-config",
  description: "print (or --write) the MCP client configuration that runs the loxmcp shim",
  arguments: [
    {
      name: "client",
      description: "claude-desktop (or claude) | claude-code | cursor | vscode | windsurf",
      required: true,
      choices: CLIENT_ARGS,
    },
  ],
  options: [
    {
      flags: "--write",
      description: "merge it into the client's config file (a timestamped backup is kept)",
    },
    {
      flags: "--name <name>",
      description: "client name the shim reports (status, audit, per-client policy); default: the client's",
    },
    {
      flags: "--server-name <key>",
      description: "key of the server in the client's config",
      defaultValue: "loxone",
    },
  ],
  helpAfter: `
Examples:
  loxmcp client-config claude-desktop --write
  loxmcp client-config claude-code          # prints \`claude mcp add …\` to run
  loxmcp client-config vscode --name vscode-work --write`,
  async run(ctx, { args, opts }) {
    const kind = clientKind(args[0] ?? "");
    const serverName = optString(opts, "serverName") ?? "loxone";
    if (!serverName.trim()) throw new CliError("USAGE", "--server-name must not be empty", 2);
    const clientName = optString(opts, "name") ?? kind;
    if (!clientName.trim()) throw new CliError("USAGE", "--name must not be empty", 2);
    if (kind === "claude-code") {
      const entry = serverEntry(ctx.env, clientName);
      ctx.out(claudeCodeCommand(serverName, entry));
      const file = claudeCodeConfigFile(ctx.env);
      const existing = findShimEntries(ctx.env).some(
        (e) => e.kind === "claude-code" && e.where === `mcpServers.${serverName}`,
      );
      if (existing) {
        ctx.err(
          `${file} already has a user-scope server "${serverName}": run \`claude mcp remove --scope user ${serverName}\` first, then the command above`,
        );
      }
      if (optBool(opts, "write")) {
        ctx.err(`Claude Code keeps its own config (${file}): run the command above; nothing was written`);
      }
      return 0;
    }
    const spec = SPECS[kind];
    const entry = serverEntry(ctx.env, clientName, spec.typed);
    const file = clientConfigFile(kind, ctx.env);
    if (!optBool(opts, "write")) {
      ctx.out(JSON.stringify({ [spec.key]: { [serverName]: entry } }, null, 2));
      const project = kind === "vscode" ? " (or to .vscode/mcp.json in a workspace)" : "";
      ctx.err(`add this to ${file}${project}, or run with --write to merge it there`);
      return 0;
    }
    const r = mergeClientConfig(file, serverName, entry, spec.key);
    if (!r.changed) {
      ctx.out(`${file} already has this ${spec.key}.${serverName} entry; nothing changed`);
      return 0;
    }
    if (r.backup) ctx.out(`backup: ${r.backup}`);
    ctx.out(`wrote ${spec.key}.${serverName} to ${file}`);
    ctx.out(`restart ${spec.title} (or reload its MCP servers) to pick it up`);
    return 0;
  },
};
