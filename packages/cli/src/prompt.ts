/**
 * Asking the person: questions on the terminal (secrets with echo off), and lines read from
 * standard input for scripted use (`--password-stdin`, `--pin-stdin`). Prompts go to stderr so
 * stdout stays the command's answer.
 */
import { createInterface } from "node:readline";
import { Writable } from "node:stream";
import { CliError, type CommandContext } from "./command.js";

/** Largest standard input read for a password or PIN (a PIN is at most 256 characters). */
const MAX_STDIN_BYTES = 64 * 1024;

/** Reads standard input to its end (bounded). */
export async function readAllStdin(ctx: CommandContext): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of ctx.stdin) {
    const b = Buffer.isBuffer(c) ? c : Buffer.from(String(c));
    size += b.length;
    if (size > MAX_STDIN_BYTES) {
      throw new CliError("STDIN_TOO_LARGE", `standard input is larger than ${MAX_STDIN_BYTES} bytes`, 2);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Standard input as lines (without their line ends). */
export async function readStdinLines(ctx: CommandContext): Promise<string[]> {
  const text = await readAllStdin(ctx);
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === "") lines.pop();
  return lines;
}

/** Asks one question on the terminal; `secret` hides what is typed. */
export async function ask(ctx: CommandContext, question: string, secret = false): Promise<string> {
  let muted = false;
  const output = new Writable({
    write(chunk, _enc, cb) {
      if (!muted) process.stderr.write(chunk);
      cb();
    },
  });
  const rl = createInterface({ input: ctx.stdin, output, terminal: Boolean(ctx.stdin.isTTY) });
  try {
    return await new Promise<string>((resolve, reject) => {
      rl.question(question, (answer) => resolve(secret ? answer : answer.trim()));
      rl.once("close", () => reject(new CliError("ABORTED", "aborted: no input")));
      if (secret) muted = true;
    });
  } finally {
    if (secret) process.stderr.write("\n");
    rl.close();
  }
}
