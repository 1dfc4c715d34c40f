/**
 * `loxmcp doctor`'s MCP client checks: the client configs that run the shim (paths that still
 * exist, the same LOXMCP_HOME / LOXMCP_SOCKET as this shell) and the approval PIN when a client
 * with a shell is configured.
 */
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { CommandContext } from "../../command.js";
import { isRecord } from "../../format.js";
import { clientConfigFile, findShimEntries } from "../client-config.js";
import type { fetchStatus } from "../status.js";
import type { Check } from "./check.js";

/** MCP client configs that run the shim: do the node and shim paths in them still exist? */
export function clientConfigChecks(ctx: CommandContext): Check[] {
  const out: Check[] = [];
  for (const kind of ["claude", "cursor"] as const) {
    let file: string;
    try {
      file = clientConfigFile(kind, ctx.env);
    } catch {
      continue;
    }
    if (!existsSync(file)) continue;
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(file, "utf8"));
    } catch {
      out.push({
        id: `client.${kind}`,
        level: "warn",
        message: `${file} is not valid JSON`,
        fix: "fix it; the client cannot read it either",
      });
      continue;
    }
    const servers = isRecord(doc) && isRecord(doc.mcpServers) ? doc.mcpServers : {};
    for (const [name, entry] of Object.entries(servers)) {
      if (!isRecord(entry) || !Array.isArray(entry.args)) continue;
      const shim = entry.args.find((a): a is string => typeof a === "string" && a.includes("loxmcp-shim"));
      if (!shim) continue;
      const missing = [typeof entry.command === "string" ? entry.command : "", shim].filter(
        (p) => p.startsWith("/") && !existsSync(p),
      );
      out.push(
        missing.length
          ? {
              id: `client.${kind}`,
              level: "problem",
              message: `${file}: mcpServers.${name} points at ${missing.join(" and ")}, which does not exist`,
              fix: `\`loxmcp client-config ${kind} --write${name === "loxone" ? "" : ` --server-name ${name}`}\``,
            }
          : { id: `client.${kind}`, level: "ok", message: `${file}: mcpServers.${name} runs the shim` },
      );
    }
  }
  return out;
}

/**
 * Client configs whose shim gets another LOXMCP_HOME / LOXMCP_SOCKET than this shell: that client
 * talks to another daemon (other credentials, policy, PIN) than the `loxmcp` run here.
 */
export function clientEnvChecks(ctx: CommandContext): Check[] {
  const same = (a: string | undefined, b: string | undefined) =>
    (a ? resolve(a) : undefined) === (b ? resolve(b) : undefined);
  const out: Check[] = [];
  for (const e of findShimEntries(ctx.env)) {
    const keys = ["LOXMCP_HOME", "LOXMCP_SOCKET"].filter((k) => !same(e.env[k], ctx.env[k] || undefined));
    if (keys.length === 0) continue;
    const show = (env: Record<string, string | undefined>) =>
      keys.map((k) => `${k}=${env[k] || "(unset)"}`).join(" ");
    const name = e.name === "loxone" ? "" : ` --server-name ${e.name}`;
    out.push({
      id: `client.env.${e.kind}`,
      level: "warn",
      message: `${e.file}: ${e.where} runs the shim with ${show(e.env)}, but this shell has ${show(ctx.env)}: that client talks to another daemon than \`loxmcp\` here`,
      fix:
        e.kind === "claude-code"
          ? `from the shell whose daemon it should use: \`claude mcp remove --scope ${e.where.startsWith("projects") ? "local" : "user"} ${e.name}\`${e.where.startsWith("projects") ? " (in that project)" : ""}, then run what \`loxmcp client-config claude-code${name}\` prints (or use the same ${keys.join("/")} here)`
          : `from the shell whose daemon it should use: \`loxmcp client-config ${e.kind} --write${name}\` (or use the same ${keys.join("/")} here)`,
    });
  }
  return out;
}

/** Clients whose agent can run shell commands as you (and so could run `loxmcp approve`). */
const SHELL_CLIENT = /claude[-_ ]?code|cursor|codex|windsurf|cline|aider|gemini|copilot|vs ?code|zed|goose/i;

/** Where MCP clients with a shell are configured to run the shim. */
export function shellClientsConfigured(
  ctx: CommandContext,
  status: { clients: Array<Record<string, unknown>> } | undefined,
): string[] {
  const found: string[] = [];
  const home = ctx.env.HOME;
  const files = home
    ? [
        ["Claude Code", `${home}/.claude.json`],
        ["Cursor", `${home}/.cursor/mcp.json`],
      ]
    : [];
  for (const [who, file] of files) {
    try {
      if (file && existsSync(file) && readFileSync(file, "utf8").includes("loxmcp-shim"))
        found.push(`${who} (${file})`);
    } catch {
      // unreadable: nothing to say about it here
    }
  }
  for (const c of status?.clients ?? []) {
    if (typeof c.name === "string" && SHELL_CLIENT.test(c.name)) found.push(`${c.name} (connected now)`);
  }
  return found;
}

/** No approval PIN while an agent with a shell is configured: it could approve on your behalf. */
export function pinCheck(
  ctx: CommandContext,
  status: Awaited<ReturnType<typeof fetchStatus>> | undefined,
): Check {
  const policy = status && isRecord(status.policy) ? status.policy : undefined;
  const pin = policy && isRecord(policy.pin) ? policy.pin : undefined;
  if (!pin) {
    return { id: "pin", level: "skip", message: "approval PIN not checked: the daemon is not running" };
  }
  if (pin.set === true) return { id: "pin", level: "ok", message: "approval PIN set" };
  const shells = shellClientsConfigured(ctx, status);
  if (shells.length > 0) {
    return {
      id: "pin",
      level: "problem",
      message: `no approval PIN is set while a client that runs shell commands is configured (${shells.join(", ")}): its agent could approve its own security actions`,
      fix: "`loxmcp pin set` in a terminal",
    };
  }
  return {
    id: "pin",
    level: "warn",
    message:
      "no approval PIN is set: approving only needs a terminal, and MCP clients' own confirmation counts",
    fix: "`loxmcp pin set` in a terminal",
  };
}
