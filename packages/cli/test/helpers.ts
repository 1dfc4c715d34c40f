/** Runs the REAL built CLI (`node packages/cli/bin/loxmcp.js …`) as a child process. */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const CLI_BIN = join(REPO_ROOT, "packages/cli/bin/loxmcp.js");
export const SHIM_BIN = join(REPO_ROOT, "packages/shim/bin/loxmcp-shim.js");
export const DAEMON_BIN = join(REPO_ROOT, "packages/daemon/bin/loxmcpd.js");

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliRunOptions {
  /** Written to stdin, then closed (stdin is always a pipe: never a TTY). */
  input?: string;
  timeoutMs?: number;
}

/**
 * A temp HOME + LOXMCP_HOME pair and a `run()` that executes the CLI with only PATH, HOME,
 * LOXMCP_HOME and `extra` in its environment (no XDG_* leaking in from the test machine).
 */
export class CliSandbox {
  readonly root: string;
  readonly home: string;
  readonly loxmcpHome: string;
  env: Record<string, string>;

  constructor(extra: Record<string, string> = {}) {
    this.root = mkdtempSync("/tmp/lxc-");
    this.home = join(this.root, "h");
    this.loxmcpHome = join(this.root, "x");
    this.env = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: this.home,
      LOXMCP_HOME: this.loxmcpHome,
      // never reach the real cloud from tests
      LOXONE_CONNECT_URL: "http://127.0.0.1:9",
      ...extra,
    };
  }

  run(args: string[], opts: CliRunOptions = {}, env: Record<string, string> = {}): Promise<CliResult> {
    return runCli(args, { ...this.env, ...env }, opts);
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

export function runCli(
  args: string[],
  env: Record<string, string>,
  opts: CliRunOptions = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI_BIN, ...args], { cwd: REPO_ROOT, env, stdio: "pipe" });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `loxmcp ${args.join(" ")} did not finish within ${opts.timeoutMs ?? 30_000} ms\n${stdout}\n${stderr}`,
        ),
      );
    }, opts.timeoutMs ?? 30_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
    // A command that exits without reading its input (e.g. refused at once) closes the pipe: EPIPE
    // on our side is expected then, not an error of the test.
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}
