/**
 * The shape of one CLI subcommand. Command modules (`commands/<name>.ts`) export a
 * `CommandSpec` and know nothing of commander; `cli.ts` turns specs into commander commands.
 * Adding a command = one import + one entry in the `COMMANDS` list of `cli.ts`.
 */
import type { Readable } from "node:stream";
import type { Env, LoxmcpPaths } from "@loxmcp/common";
import type { Progress } from "./progress.js";

export interface OptionSpec {
  /** Commander flags, e.g. "-n, --lines <n>" or "--json". */
  flags: string;
  description: string;
  defaultValue?: string | boolean | number;
  /** Allowed values (commander checks them and prints a clear error). */
  choices?: readonly string[];
  /** Parses the raw value (throw an Error with a clear message when invalid). */
  parse?: (value: string) => unknown;
}

export interface ArgumentSpec {
  /** Argument name as shown in help, without brackets. */
  name: string;
  description: string;
  required?: boolean;
  choices?: readonly string[];
}

/** What a command receives: its environment, resolved paths and output streams. */
export interface CommandContext {
  env: Env;
  paths: LoxmcpPaths;
  /** Writes one line (newline added) to stdout. */
  out(line: string): void;
  /** Writes one line (newline added) to stderr. */
  err(line: string): void;
  stdin: Readable & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  stdoutIsTTY: boolean;
  /**
   * Progress while waiting: a spinner line on stderr when stderr is a terminal, a no-op
   * otherwise (pass `NO_PROGRESS` for --json). `out`/`err` lines are printed above it.
   */
  progress(): Progress;
}

export interface CommandInput {
  /** Positional arguments, in the order of `arguments`. */
  args: Array<string | undefined>;
  /** Parsed options by commander's camelCase name (e.g. `--password-stdin` → `passwordStdin`). */
  opts: Record<string, unknown>;
}

export interface CommandSpec {
  name: string;
  description: string;
  arguments?: readonly ArgumentSpec[];
  options?: readonly OptionSpec[];
  /** Nested commands, e.g. `structure show|diff`. A spec may have both `run` and subcommands. */
  subcommands?: readonly CommandSpec[];
  /** Extra help text printed after the generated help. */
  helpAfter?: string;
  /** Runs the command; resolves with the process exit code (undefined = 0). */
  run?(ctx: CommandContext, input: CommandInput): Promise<number | undefined> | number | undefined;
}

/** An expected failure: printed as one line `loxmcp: <message>` (no stack), exit `exitCode`. */
export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = "CliError";
  }
}

// ------------------------------------------------------------------ option helpers

export function optString(opts: Record<string, unknown>, key: string): string | undefined {
  const v = opts[key];
  return typeof v === "string" ? v : undefined;
}

export function optBool(opts: Record<string, unknown>, key: string): boolean {
  return opts[key] === true;
}

export function optNumber(opts: Record<string, unknown>, key: string): number | undefined {
  const v = opts[key];
  return typeof v === "number" ? v : undefined;
}

/** Option parser for a non-negative integer (`-n 20`). */
export function parseCount(value: string): number {
  if (!/^\d+$/.test(value)) throw new Error(`expected a whole number, got "${value}"`);
  return Number(value);
}

/** Option parser for a positive number of seconds (`--timeout 15`). */
export function parseSeconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`expected a positive number of seconds, got "${value}"`);
  return n;
}
