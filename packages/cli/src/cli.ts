/**
 * Commander wiring for `loxmcp`. Commands are declarative `CommandSpec`s from
 * `commands/<name>.ts`; to add one: import it and append it to COMMANDS.
 */

import { isAbsolute, resolve } from "node:path";
import { asPathAccessError, PathAccessError, resolvePaths } from "@loxmcp/common";
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { CliError, type CommandContext, type CommandSpec } from "./command.js";
import { approveCommand, denyCommand } from "./commands/approve.js";
import { auditCommand } from "./commands/audit.js";
import { clientConfigCommand } from "./commands/client-config.js";
import { doctorCommand } from "./commands/doctor.js";
import { initCommand } from "./commands/init.js";
import { loginCheckCommand } from "./commands/login-check.js";
import { logsCommand } from "./commands/logs.js";
import { openCommand } from "./commands/open.js";
import { pinCommand } from "./commands/pin.js";
import { reloginCommand } from "./commands/relogin.js";
import { restartCommand } from "./commands/restart.js";
import { resumeCommand } from "./commands/resume.js";
import { serviceCommand } from "./commands/service.js";
import { startCommand } from "./commands/start.js";
import { statusCommand } from "./commands/status.js";
import { stopCommand } from "./commands/stop.js";
import { stopAllCommand } from "./commands/stop-all.js";
import { structureCommand } from "./commands/structure.js";
import { toolsCommand } from "./commands/tools.js";

import { NO_PROGRESS, progressEnabled, Spinner } from "./progress.js";
import { VERSION } from "./version.js";

export { VERSION };

/** Every subcommand, in help order. */
export const COMMANDS: CommandSpec[] = [
  statusCommand,
  logsCommand,
  reloginCommand,
  loginCheckCommand,
  startCommand,
  stopCommand,
  restartCommand,
  initCommand,
  clientConfigCommand,
  serviceCommand,
  doctorCommand,
  approveCommand,
  denyCommand,
  pinCommand,
  stopAllCommand,
  resumeCommand,
  openCommand,
  toolsCommand,
  auditCommand,
  structureCommand,
];

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  stdout?: NodeJS.WritableStream & { isTTY?: boolean };
  stderr?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stdin?: CommandContext["stdin"];
  commands?: CommandSpec[];
}

function addSpec(
  parent: Command,
  spec: CommandSpec,
  state: { exitCode: number },
  makeCtx: () => CommandContext,
) {
  const cmd = parent.command(spec.name).description(spec.description);
  for (const a of spec.arguments ?? []) {
    const arg = new Argument(a.required ? `<${a.name}>` : `[${a.name}]`, a.description);
    if (a.choices) arg.choices(a.choices);
    cmd.addArgument(arg);
  }
  for (const o of spec.options ?? []) {
    const opt = new Option(o.flags, o.description);
    if (o.choices) opt.choices(o.choices);
    if (o.parse) {
      const parse = o.parse;
      opt.argParser((value: string) => {
        try {
          return parse(value);
        } catch (err) {
          // commander prints "option '--wait <seconds>' argument 'x' is invalid. <message>" (exit 2)
          throw new InvalidArgumentError((err as Error).message);
        }
      });
    }
    if (o.defaultValue !== undefined) opt.default(o.defaultValue);
    cmd.addOption(opt);
  }
  if (spec.helpAfter) cmd.addHelpText("after", spec.helpAfter);
  for (const sub of spec.subcommands ?? []) addSpec(cmd, sub, state, makeCtx);
  const run = spec.run;
  if (run) {
    cmd.action(async (...params: unknown[]) => {
      const n = spec.arguments?.length ?? 0;
      const args = params.slice(0, n) as Array<string | undefined>;
      const opts = (params[n] ?? {}) as Record<string, unknown>;
      state.exitCode = (await run.call(spec, makeCtx(), { args, opts })) ?? 0;
    });
  }
}

/**
 * LOXMCP_HOME / LOXMCP_SOCKET made absolute: they end up in service files, client configs and
 * the environment of a detached daemon whose working directory differs from ours.
 */
function absolutePathVars(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const key of ["LOXMCP_HOME", "LOXMCP_SOCKET"]) {
    const v = out[key];
    if (v && !isAbsolute(v)) out[key] = resolve(v);
  }
  return out;
}

/** Builds the commander program (exported for help/doc generation and tests). */
export function buildProgram(opts: RunOptions = {}): { program: Command; state: { exitCode: number } } {
  const env = absolutePathVars(opts.env ?? process.env);
  const stdout = opts.stdout ?? process.stdout;
  const stderr = opts.stderr ?? process.stderr;
  const state = { exitCode: 0 };
  const makeCtx = (): CommandContext => {
    // At most one spinner per command; lines printed while it shows go above it.
    let spinner: Spinner | undefined;
    return {
      env,
      paths: resolvePaths(env),
      out: (line) => {
        if (spinner) spinner.print(stdout, line);
        else stdout.write(`${line}\n`);
      },
      err: (line) => {
        if (spinner) spinner.print(stderr, line);
        else stderr.write(`${line}\n`);
      },
      stdin: opts.stdin ?? process.stdin,
      stdoutIsTTY: Boolean(stdout.isTTY),
      progress: () => {
        if (!progressEnabled(stderr, env)) return NO_PROGRESS;
        spinner ??= new Spinner(stderr, env);
        return spinner;
      },
    };
  };
  const program = new Command("loxmcp")
    .description("loxmcp: control the daemon that shares one safe Loxone MCP session with your MCP clients")
    .version(VERSION, "-V, --version")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({
      writeOut: (s) => stdout.write(s),
      writeErr: (s) => stderr.write(s),
      // "loxmcp: unknown option '--x'" like every other error line
      outputError: (s, write) => write(s.replace(/^error: /, "loxmcp: ")),
    });
  program.addHelpText(
    "after",
    `
Files: LOXMCP_HOME (when set) holds config/, state/, log/ and run/ (the socket).
Docs: docs/cli.md`,
  );
  for (const spec of opts.commands ?? COMMANDS) addSpec(program, spec, state, makeCtx);
  return { program, state };
}

/** Runs the CLI with `argv` (as process.argv) and resolves with the exit code. */
export async function run(argv: string[], opts: RunOptions = {}): Promise<number> {
  const stderr = opts.stderr ?? process.stderr;
  const { program, state } = buildProgram(opts);
  try {
    await program.parseAsync(argv);
    return state.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) {
      // help and version are "errors" with exit code 0; everything else commander reports is bad
      // usage (unknown command or option, missing argument, bad value, no subcommand): exit 2
      return err.exitCode === 0 ? 0 : 2;
    }
    if (err instanceof CliError) {
      stderr.write(`loxmcp: ${err.message}\n`);
      return err.exitCode;
    }
    const e = err as NodeJS.ErrnoException;
    // A loxmcp directory or file we cannot create or write (a read-only LOXMCP_HOME …): one line
    // naming the path and the fix, not "unexpected error (EACCES)".
    const access =
      typeof e?.path === "string" || e instanceof PathAccessError
        ? asPathAccessError(e, e.path ?? "")
        : undefined;
    if (access) {
      stderr.write(`loxmcp: ${access.message}\n`);
      return 1;
    }
    stderr.write(`loxmcp: unexpected error${e.code ? ` (${e.code})` : ""}: ${e.message}\n`);
    if (opts.env?.LOXMCP_DEBUG ?? process.env.LOXMCP_DEBUG) stderr.write(`${e.stack ?? ""}\n`);
    return 1;
  }
}
