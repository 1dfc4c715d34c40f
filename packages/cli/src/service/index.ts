/**
 * Service platforms behind one interface: a systemd user unit on Linux, a launchd
 * LaunchAgent on macOS. Never needs root; `render()` alone touches nothing.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname } from "node:path";
import type { Env, LoxmcpPaths } from "@loxmcp/common";
import { CliError } from "../command.js";
import { LaunchdService } from "./launchd.js";
import { SystemdService } from "./systemd.js";

export type ServicePlatformName = "linux" | "darwin";

export interface ServiceOptions {
  env: Env;
  paths: LoxmcpPaths;
  /** Absolute path of the node binary (process.execPath). */
  nodePath: string;
  /** Absolute path of the daemon's bin entry. */
  daemonBin: string;
  /** The user's home (respects $HOME). */
  home: string;
  uid: number;
  /** false: leave out the file-system sandbox (systemd namespacing needs user namespaces). */
  sandbox?: boolean;
}

export interface ServiceState {
  installed: boolean;
  /** Running right now (undefined when it could not be asked). */
  active: boolean | undefined;
  /** One line from the service manager, e.g. "active (running)" or "enabled, inactive". */
  detail: string;
}

export interface ServicePlatform {
  /** "systemd" | "launchd" */
  readonly kind: string;
  /** The installed file: unit or plist. */
  readonly file: string;
  /** The file's content for this installation (absolute paths, escaped). */
  render(): string;
  isInstalled(): boolean;
  /**
   * Writes the file and enables + starts the service. Returns lines saying what was done. When
   * the service manager fails, the file is put back as it was (removed if it was new) before the
   * error is thrown, so a failed install leaves nothing behind. `step` is told each step.
   */
  install(step?: (what: string) => void): string[];
  uninstall(): string[];
  start(): string[];
  stop(): string[];
  state(): ServiceState;
}

export function currentPlatform(override?: string): ServicePlatformName {
  const p = override ?? process.platform;
  if (p === "linux" || p === "darwin") return p;
  throw new CliError(
    "UNSUPPORTED_PLATFORM",
    `service management supports linux (systemd) and darwin (launchd), not ${p}; run \`loxmcpd\` under your own supervisor`,
  );
}

export function servicePlatform(platform: ServicePlatformName, opts: ServiceOptions): ServicePlatform {
  return platform === "darwin" ? new LaunchdService(opts) : new SystemdService(opts);
}

export function defaultServiceOptions(env: Env, paths: LoxmcpPaths, daemonBin: string): ServiceOptions {
  return {
    env,
    paths,
    nodePath: process.execPath,
    daemonBin,
    home: env.HOME || homedir(),
    uid: typeof process.getuid === "function" ? process.getuid() : 0,
  };
}

/**
 * Replaces every `@NAME@` in a template; an unknown placeholder is an error (a stale template).
 * A line holding only a placeholder that renders empty is dropped.
 */
export function renderTemplate(file: string, values: Record<string, string>): string {
  const text = readFileSync(file, "utf8");
  const sub = (line: string) =>
    line.replace(/@([A-Z_]+)@/g, (_, name: string) => {
      const v = values[name];
      if (v === undefined) {
        throw new CliError("BAD_TEMPLATE", `template ${file} uses @${name}@, which this CLI does not know`);
      }
      return v;
    });
  return text
    .split("\n")
    .flatMap((line) => {
      const only = /^\s*@([A-Z_]+)@\s*$/.exec(line);
      if (only && values[only[1] ?? ""] === "") return [];
      return [sub(line)];
    })
    .join("\n");
}

export interface ToolResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a service-manager tool (systemctl, launchctl); never throws for a non-zero exit. */
export function runTool(cmd: string, args: string[]): ToolResult {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 30_000 });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") {
      throw new CliError(
        "TOOL_MISSING",
        `${cmd} not found on PATH: this system has no ${cmd}; use \`--print\` and install the file by hand`,
      );
    }
    throw new CliError("TOOL_FAILED", `${cmd} ${args.join(" ")} failed: ${r.error.message}`);
  }
  return { status: r.status ?? 1, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
}

/**
 * Writes `file` with `content`, runs `enable`, and when that throws puts the file back as it was
 * (the previous content, or no file) and runs `cleanup` (best effort) before rethrowing.
 */
export function writeThenEnable(
  file: string,
  content: string,
  enable: () => void,
  cleanup: () => void,
): void {
  const previous = existsSync(file) ? readFileSync(file, "utf8") : undefined;
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, content, { mode: 0o644 });
  try {
    enable();
  } catch (err) {
    try {
      if (previous === undefined) rmSync(file, { force: true });
      else writeFileSync(file, previous, { mode: 0o644 });
      cleanup();
    } catch {
      // the original error says what to do; a failing cleanup must not hide it
    }
    throw err;
  }
}

/** Runs a tool and throws a CliError naming the command and its output when it fails. */
export function mustRun(cmd: string, args: string[], hint: string): string {
  const r = runTool(cmd, args);
  if (r.status !== 0) {
    const out = (r.stderr || r.stdout).trim().split("\n").slice(-3).join(" | ");
    throw new CliError(
      "TOOL_FAILED",
      `\`${cmd} ${args.join(" ")}\` failed (exit ${r.status}): ${out}; ${hint}`,
    );
  }
  return r.stdout;
}
