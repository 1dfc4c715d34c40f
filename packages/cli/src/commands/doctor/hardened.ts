/**
 * `loxmcp doctor`'s hardened-mode checks: the system daemon's files out of the person's reach,
 * its socket directory and group, and the warning when a per-user daemon sits next to an agent
 * with a shell.
 */
import { SYSTEM_USER, type SystemLayout, systemUserName } from "@loxmcp/common";
import type { CommandContext } from "../../command.js";
import { octal } from "../../format.js";
import { passwdEntry } from "../../service/system/accounts.js";
import type { fetchStatus } from "../status.js";
import type { Check } from "./check.js";
import { shellClientsConfigured } from "./clients.js";
import { lstatSafe, modeOf, readable } from "./files.js";

export const isRoot = () => typeof process.getuid === "function" && process.getuid() === 0;

/**
 * Hardened mode: the system daemon's files are its own. Checks that the person's account cannot
 * read the credentials, the policy or the tokens, that the socket's directory is the daemon's
 * (0750), and that this account is in the daemon's group (or the socket is out of reach).
 */
export function systemChecks(layout: SystemLayout): Check[] {
  const out: Check[] = [];
  const user = systemUserName(layout);
  const entry = passwdEntry(user);
  if (!entry) {
    out.push({
      id: "system.user",
      level: "problem",
      message: `the system daemon's user ${user} does not exist`,
      fix: "`sudo loxmcp service install --system`",
    });
  }
  const secrets: Array<[string, string, string]> = [
    ["system.env", "credentials", `${layout.config}/.env`],
    ["system.config", "policy", `${layout.config}/config.json`],
    ["system.db", "database (tokens)", `${layout.state}/loxmcp.db`],
  ];
  for (const [id, what, file] of secrets) {
    if (isRoot()) {
      const st = modeOf(file);
      if (!st) {
        out.push({
          id,
          level: id === "system.env" ? "problem" : "info",
          message: `${what} ${file} does not exist`,
          ...(id === "system.env" ? { fix: "`sudo loxmcp init --system`" } : {}),
        });
      } else if (st.isLink || (st.mode & 0o077) !== 0 || (entry && st.uid !== entry.uid)) {
        out.push({
          id,
          level: "problem",
          message: `${what} ${file} is ${st.isLink ? "a symlink" : `mode ${octal(st.mode)}, uid ${st.uid}`}: only ${user} may read it`,
          fix: `chown ${user}:${user} ${file} && chmod 600 ${file}`,
        });
      } else {
        out.push({ id, level: "ok", message: `${what} ${file} (${octal(st.mode)}, ${user} only)` });
      }
      continue;
    }
    const r = readable(file);
    out.push(
      r === "yes"
        ? {
            id,
            level: "problem",
            message: `your account can read the system daemon's ${what} ${file}: so can any agent running as you`,
            fix: `sudo chown ${user}:${user} ${file} && sudo chmod 600 ${file}`,
          }
        : { id, level: "ok", message: `${what} ${file}: not readable by your account` },
    );
  }
  const rt = modeOf(layout.runtime);
  if (!rt) {
    out.push({
      id: "system.runtime",
      level: "info",
      message: `socket directory ${layout.runtime} does not exist (created when the system daemon starts)`,
    });
  } else if (
    rt.isLink ||
    !rt.isDir ||
    (rt.mode & 0o027) !== 0 ||
    (entry && rt.uid !== entry.uid && rt.uid !== 0)
  ) {
    out.push({
      id: "system.runtime",
      level: "problem",
      message: `socket directory ${layout.runtime} is ${rt.isLink ? "a symlink" : `mode ${octal(rt.mode)}, uid ${rt.uid}`}: it must be ${user}'s, 0750`,
      fix: `sudo chown ${user}:${user} ${layout.runtime} && sudo chmod 750 ${layout.runtime}`,
    });
  } else {
    out.push({
      id: "system.runtime",
      level: "ok",
      message: `socket directory ${layout.runtime} (${octal(rt.mode)})`,
    });
  }
  if (!isRoot() && entry && typeof process.getgroups === "function") {
    const st = lstatSafe(layout.runtime);
    const gid = st?.gid ?? entry.gid;
    out.push(
      process.getgroups().includes(gid) || process.getgid?.() === gid
        ? { id: "system.group", level: "ok", message: `you are in the system daemon's group (gid ${gid})` }
        : {
            id: "system.group",
            level: "problem",
            message: `you are not in the system daemon's group (gid ${gid}): the socket is out of your reach`,
            fix: `sudo usermod -a -G ${user} "$USER", then log in again`,
          },
    );
  }
  return out;
}

/** Per-user mode with a shell client configured: its agent can read the password and tokens. */
export function hardeningCheck(
  ctx: CommandContext,
  status: Awaited<ReturnType<typeof fetchStatus>> | undefined,
): Check | undefined {
  if (ctx.paths.system) return undefined;
  const shells = shellClientsConfigured(ctx, status);
  if (shells.length === 0) return undefined;
  return {
    id: "hardened",
    level: "warn",
    message: `a client that runs shell commands is configured (${shells.join(", ")}) and the daemon runs as you (not hardened): its agent can read the password and the tokens and reach the Miniserver directly, edit the policy or remove the PIN`,
    fix: "run the daemon as its own user: `sudo loxmcp service install --system --migrate` (docs/hardened.md)",
  };
}

/** Hardened mode, not root: the configuration is not ours to read; root's doctor checks it. */
export function systemConfigSkipped(checks: Check[], layout: SystemLayout): string {
  checks.push({
    id: "config",
    level: "skip",
    message: `configuration in ${layout.config} not checked: only root and ${systemUserName(layout) || SYSTEM_USER} may read it (\`sudo loxmcp doctor\` checks it)`,
  });
  return "https://connect.loxonecloud.com";
}
