/**
 * `loxmcp login-check [--url <mcp-url>] [--fresh] [--call <tool> [--args JSON]] [--json]`: one-shot check
 * of the whole upstream path (resolve, headless login, initialize, tools/list, optionally one
 * tool call). It does not need the daemon running and never touches tokens itself: it runs
 * `loxmcpd --probe …`, the daemon's own client code in a separate one-shot process, and passes
 * its summary and exit code (0 ok, 1 failed, 78 configuration problem) through.
 */
import { spawn } from "node:child_process";
import { PROGRESS_PREFIX } from "@loxmcp/common";
import { CliError, type CommandSpec, optBool, optString } from "../command.js";
import { daemonBin } from "../locate.js";
import { NO_PROGRESS, type Progress } from "../progress.js";

/** The probe's step lines on stderr (`loxmcpd --probe --progress`), shown as the progress line. */

export const loginCheckCommand: CommandSpec = {
  name: "login-check",
  description: "log in to the Miniserver once, list its tools (and call one) without the daemon running",
  options: [
    {
      flags: "--url <mcp-url>",
      description: "talk to this MCP URL directly instead of resolving the serial via connect (direct mode)",
    },
    {
      flags: "--fresh",
      description: "forget the stored tokens of this Miniserver/URL first, so the password is really checked",
    },
    { flags: "--call <tool>", description: "also call this tool (read tools only make sense here)" },
    { flags: "--args <json>", description: "arguments for --call, as a JSON object", defaultValue: "{}" },
    { flags: "--timeout <seconds>", description: "give up after this many seconds", defaultValue: "90" },
    { flags: "--json", description: "print the summary as one JSON object" },
  ],
  helpAfter:
    "\nExit status: 0 login and tools/list worked (and the call, if asked), 1 something failed " +
    "(the summary says what and what to do), 78 the configuration is incomplete.",
  async run(ctx, { opts }) {
    if (ctx.paths.system) {
      // The probe opens the daemon's database and log: as anyone but the daemon's own user it
      // could not, or (root) would leave files the daemon then cannot write.
      throw new CliError(
        "HARDENED",
        "in hardened mode the system daemon logs in by itself: `loxmcp status` shows whether that works (`loxmcp logs -n 50` why not), `sudo loxmcp doctor` checks its configuration",
      );
    }
    const args = ["--probe"];
    const url = optString(opts, "url");
    const call = optString(opts, "call");
    const callArgs = optString(opts, "args") ?? "{}";
    if (url !== undefined) args.push("--url", url);
    if (optBool(opts, "fresh")) args.push("--fresh");
    if (call !== undefined) {
      try {
        const parsed: unknown = JSON.parse(callArgs);
        if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
          throw new Error("not an object");
      } catch {
        throw new CliError(
          "BAD_ARGS",
          `--args must be a JSON object, e.g. '{"query":"kitchen"}' (got ${callArgs})`,
          2,
        );
      }
      args.push("--call", call, "--args", callArgs);
    } else if (optString(opts, "args") !== "{}" && optString(opts, "args") !== undefined) {
      throw new CliError("BAD_ARGS", "--args only makes sense with --call <tool>", 2);
    }
    const timeoutSec = Number(optString(opts, "timeout") ?? "90");
    if (!Number.isFinite(timeoutSec) || timeoutSec <= 0) {
      throw new CliError(
        "BAD_ARGS",
        `--timeout must be a positive number of seconds (got ${optString(opts, "timeout")})`,
        2,
      );
    }
    args.push("--timeout", String(timeoutSec));
    const json = optBool(opts, "json");
    if (json) args.push("--json");
    const progress = json ? NO_PROGRESS : ctx.progress();
    if (progress.active) {
      args.push("--progress");
      progress.step("starting the login check");
    }
    try {
      return await runProbe(ctx, daemonBin(ctx.env), args, progress);
    } finally {
      progress.stop();
    }
  },
};

function runProbe(
  ctx: { env: Record<string, string | undefined>; out(line: string): void; err(line: string): void },
  bin: string,
  args: string[],
  progress: Progress,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(ctx.env)) if (v !== undefined) env[k] = v;
    const child = spawn(process.execPath, [bin, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    const pipeLines = (stream: NodeJS.ReadableStream, write: (line: string) => void) => {
      let buf = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        buf += chunk;
        for (let nl = buf.indexOf("\n"); nl !== -1; nl = buf.indexOf("\n")) {
          write(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
      });
      stream.on("end", () => {
        if (buf.length > 0) write(buf);
      });
    };
    let outDone: Promise<void> = Promise.resolve();
    let errDone: Promise<void> = Promise.resolve();
    if (child.stdout) {
      pipeLines(child.stdout, (l) => {
        progress.stop(); // the summary replaces the progress line
        ctx.out(l);
      });
      outDone = new Promise((r) => child.stdout?.on("end", () => r()));
    }
    if (child.stderr) {
      pipeLines(child.stderr, (l) => {
        if (l.startsWith(PROGRESS_PREFIX)) progress.step(l.slice(PROGRESS_PREFIX.length));
        else ctx.err(l);
      });
      errDone = new Promise((r) => child.stderr?.on("end", () => r()));
    }
    child.on("error", (err) =>
      reject(new CliError("PROBE_FAILED", `could not run the daemon's probe (${bin}): ${err.message}`)),
    );
    child.on("close", (code, signal) => {
      void Promise.all([outDone, errDone]).then(() => resolve(code ?? (signal ? 1 : 0)));
    });
  });
}
