/**
 * Runs a command on a pseudo-terminal with `script -qec` (util-linux), as a person at a terminal
 * would: each answer is typed once its prompt appeared on the screen. For the CLI's prompts
 * (PIN with echo off, "yes" confirmations) and for proving that without a terminal they fail fast.
 */
import { spawn } from "node:child_process";

export interface PtyResult {
  code: number | null;
  /** Everything the terminal showed (stdout and stderr of the command, and any echo). */
  screen: string;
}

const quote = (w: string) => `'${w.replace(/'/g, `'\\''`)}'`;

/**
 * `argv` runs under `script -qec` with `env`; `script` pairs (prompt substring, answer) are typed in
 * order. Rejects when a prompt does not appear within `timeoutMs`.
 */
export function runInPty(
  argv: string[],
  env: Record<string, string>,
  script: Array<[string, string]> = [],
  timeoutMs = 20_000,
): Promise<PtyResult> {
  return new Promise((resolve, reject) => {
    const child = spawn("script", ["-qec", argv.map(quote).join(" "), "/dev/null"], {
      env,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let screen = "";
    let step = 0;
    let typedAt = 0;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(`pty: timed out waiting for ${JSON.stringify(script[step]?.[0])}; screen:\n${screen}`),
      );
    }, timeoutMs);
    const advance = () => {
      while (step < script.length) {
        const [prompt, answer] = script[step] as [string, string];
        const at = screen.indexOf(prompt, typedAt);
        if (at < 0) return;
        typedAt = at + prompt.length;
        step++;
        child.stdin.write(`${answer}\r`);
      }
    };
    child.stdout.on("data", (c: Buffer) => {
      screen += c.toString("utf8");
      advance();
    });
    child.stderr.on("data", (c: Buffer) => {
      screen += c.toString("utf8");
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, screen });
    });
  });
}
