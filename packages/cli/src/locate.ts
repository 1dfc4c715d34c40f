/**
 * Where the other programs and templates of this installation are: the shim and daemon bins
 * (siblings in the workspace) and the service templates (`systemd/`, `launchd/` at the
 * repository root). Each can be overridden from the environment.
 */
import { existsSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Env, resolveDaemonCommand } from "@loxmcp/common";
import { CliError } from "./command.js";

/** packages/cli (this file is packages/cli/dist/locate.js once built). */
export const CLI_PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** The repository / installation root holding packages/, systemd/, launchd/. */
export const REPO_ROOT = resolve(CLI_PACKAGE_DIR, "..", "..");

function fromEnvOrDefault(env: Env, key: string, fallback: string, what: string): string {
  const v = env[key];
  const p = v ? resolve(v) : fallback;
  if (!existsSync(p)) {
    throw new CliError(
      "NOT_FOUND",
      `${what} not found at ${p}: build the workspace (\`pnpm build\`)${v ? "" : ` or set ${key} to its absolute path`}`,
    );
  }
  return p;
}

/** Absolute path of `loxmcp-shim` (env LOXMCP_SHIM_BIN wins). */
export function shimBin(env: Env): string {
  return fromEnvOrDefault(
    env,
    "LOXMCP_SHIM_BIN",
    resolve(CLI_PACKAGE_DIR, "..", "shim", "bin", "loxmcp-shim.js"),
    "the shim (loxmcp-shim)",
  );
}

/**
 * Absolute path of `loxmcpd`'s bin (env LOXMCP_DAEMON_BIN wins), found the same way the shim
 * finds it (`resolveDaemonCommand` from common).
 */
export function daemonBin(env: Env): string {
  const cmd = resolveDaemonCommand(env);
  const bin = cmd.args[0] ?? cmd.command;
  if (!isAbsolute(bin) || !existsSync(bin)) {
    throw new CliError(
      "NOT_FOUND",
      `the daemon (loxmcpd) was not found (${bin}): build the workspace (\`pnpm build\`) or set LOXMCP_DAEMON_BIN to its absolute path`,
    );
  }
  return bin;
}

/** Absolute path of a service template, e.g. `systemd/loxmcpd.service.in` (env LOXMCP_TEMPLATES_DIR wins). */
export function templatePath(env: Env, relative: string): string {
  const base = env.LOXMCP_TEMPLATES_DIR ? resolve(env.LOXMCP_TEMPLATES_DIR) : REPO_ROOT;
  const p = resolve(base, relative);
  if (!existsSync(p)) {
    throw new CliError(
      "NOT_FOUND",
      `service template ${relative} not found under ${base}: run loxmcp from its checkout, or set LOXMCP_TEMPLATES_DIR to the directory holding systemd/ and launchd/`,
    );
  }
  return p;
}
