/**
 * Where the other programs and templates of this installation are: the shim and daemon bins and
 * the service templates (`systemd/`, `launchd/`). Two layouts:
 *
 * - a checkout (`pnpm build`): this file is `packages/cli/dist/locate.js`; the bins are the
 *   sibling packages' `packages/{shim,daemon}/bin/*.js`, the templates at the repository root;
 * - the npm package `loxmcp` (scripts/pack.mjs, `npm install -g loxmcp-<version>.tgz`): this code
 *   is bundled into `<package>/dist/`, next to `<package>/bin/`, `systemd/` and `launchd/`. MCP
 *   client configs and service files then name the commands npm put on PATH
 *   (`<prefix>/bin/loxmcp-shim`, `<prefix>/bin/loxmcpd`): those paths stay the same when a newer
 *   tarball is installed over this one.
 *
 * Each can be overridden from the environment (LOXMCP_SHIM_BIN, LOXMCP_DAEMON_BIN,
 * LOXMCP_TEMPLATES_DIR).
 */
import { existsSync, readFileSync, realpathSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { type Env, findOnPath, resolveDaemonCommand } from "@loxmcp/common";
import { CliError } from "./command.js";

/** The npm package's name (scripts/pack.mjs writes it into the packed package.json). */
export const PACKAGE_NAME = "loxmcp";

export interface Installation {
  kind: "workspace" | "package";
  /** The repository root, or the installed package's directory. */
  root: string;
}

/**
 * Which layout `moduleDir` (the directory of this module once built or bundled) belongs to: the
 * package when its parent holds the `loxmcp` package.json and `bin/loxmcpd.js`, else a checkout.
 */
export function detectInstallation(moduleDir: string): Installation {
  const up = resolve(moduleDir, "..");
  try {
    const pkg = JSON.parse(readFileSync(join(up, "package.json"), "utf8")) as { name?: unknown };
    if (pkg.name === PACKAGE_NAME && existsSync(join(up, "bin", "loxmcpd.js"))) {
      return { kind: "package", root: up };
    }
  } catch {
    // no package.json there: a checkout
  }
  return { kind: "workspace", root: resolve(up, "..", "..") };
}

export const INSTALLATION: Installation = detectInstallation(dirname(fileURLToPath(import.meta.url)));

function realpathOr(p: string): string | undefined {
  try {
    return realpathSync(p);
  } catch {
    return undefined;
  }
}

/**
 * The command npm linked to `target` (a file in the installed package) under `name`: `<prefix>/bin`
 * for a global install (`<prefix>/lib/node_modules/loxmcp`), `node_modules/.bin` for a local one,
 * else the first `name` on PATH that is a link to it. undefined when none is.
 */
export function linkedBin(
  name: string,
  target: string,
  env: Env,
  root = INSTALLATION.root,
): string | undefined {
  const real = realpathOr(target);
  if (!real) return undefined;
  const candidates: string[] = [];
  const nodeModules = dirname(root);
  if (basename(nodeModules) === "node_modules") {
    const above = dirname(nodeModules);
    if (basename(above) === "lib") candidates.push(join(dirname(above), "bin", name));
    candidates.push(join(nodeModules, ".bin", name));
  }
  const onPath = findOnPath(name, env);
  if (onPath) candidates.push(onPath);
  return candidates.find((c) => isAbsolute(c) && realpathOr(c) === real);
}

function notFound(what: string, p: string, envKey: string, fromEnv: boolean): CliError {
  const fix =
    INSTALLATION.kind === "package"
      ? `reinstall loxmcp (\`npm install -g loxmcp-<version>.tgz\`)`
      : "build the workspace (`pnpm build`)";
  return new CliError(
    "NOT_FOUND",
    `${what} not found at ${p}: ${fromEnv ? `fix ${envKey}` : `${fix} or set ${envKey} to its absolute path`}`,
  );
}

/**
 * Absolute path of `loxmcp-shim` for MCP client configs (env LOXMCP_SHIM_BIN wins): the command on
 * PATH when installed from the package, else the package's or the checkout's bin file.
 */
export function shimBin(env: Env): string {
  const v = env.LOXMCP_SHIM_BIN;
  if (v) {
    const p = resolve(v);
    if (!existsSync(p)) throw notFound("the shim (loxmcp-shim)", p, "LOXMCP_SHIM_BIN", true);
    return p;
  }
  const { kind, root } = INSTALLATION;
  const file =
    kind === "package"
      ? join(root, "bin", "loxmcp-shim.cjs")
      : join(root, "packages", "shim", "bin", "loxmcp-shim.js");
  if (!existsSync(file)) throw notFound("the shim (loxmcp-shim)", file, "LOXMCP_SHIM_BIN", false);
  return (kind === "package" && linkedBin("loxmcp-shim", file, env)) || file;
}

/**
 * Absolute path of `loxmcpd`'s bin for service files and `login-check` (env LOXMCP_DAEMON_BIN
 * wins), found the same way the shim finds it (`resolveDaemonCommand` from common); from the
 * package, the command on PATH that links to it. Callers run it as `node [flags] <bin>`.
 */
export function daemonBin(env: Env): string {
  const cmd = resolveDaemonCommand(env);
  const bin = cmd.args[0] ?? cmd.command;
  if (!isAbsolute(bin) || !existsSync(bin)) {
    throw notFound("the daemon (loxmcpd)", bin, "LOXMCP_DAEMON_BIN", cmd.source === "env");
  }
  return (cmd.source === "installed" && linkedBin("loxmcpd", bin, env)) || bin;
}

/** Absolute path of a service template, e.g. `systemd/loxmcpd.service.in` (env LOXMCP_TEMPLATES_DIR wins). */
export function templatePath(env: Env, relative: string): string {
  const base = env.LOXMCP_TEMPLATES_DIR ? resolve(env.LOXMCP_TEMPLATES_DIR) : INSTALLATION.root;
  const p = resolve(base, relative);
  if (!existsSync(p)) {
    throw new CliError(
      "NOT_FOUND",
      `service template ${relative} not found under ${base}: ${
        env.LOXMCP_TEMPLATES_DIR
          ? "fix LOXMCP_TEMPLATES_DIR (the directory holding systemd/ and launchd/)"
          : INSTALLATION.kind === "package"
            ? "reinstall loxmcp (`npm install -g loxmcp-<version>.tgz`), or set LOXMCP_TEMPLATES_DIR to the directory holding systemd/ and launchd/"
            : "run loxmcp from its checkout, or set LOXMCP_TEMPLATES_DIR to the directory holding systemd/ and launchd/"
      }`,
    );
  }
  return p;
}
