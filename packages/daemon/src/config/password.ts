/**
 * The Loxone password: from the environment, .env or config.json, directly, from a file or from a
 * command (run when needed, its stdout never shown: a failure says its status and stderr's first
 * line, with anything it printed on stdout cut out).
 */
import { execFile } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import type { Env } from "@loxmcp/common";
import { ConfigError, type ConfigFile } from "./schema.js";

export function resolvePassword(
  procEnv: Env,
  dotenv: Record<string, string>,
  file: ConfigFile,
  fixHint: string,
): { password: string | (() => Promise<string>); passwordSource: string } {
  // Highest-precedence layer that sets any password key wins as a whole.
  const layers: Array<[string, Record<string, string | undefined>]> = [
    ["environment", procEnv],
    [".env", dotenv],
    [
      "config.json",
      {
        LOXONE_PASSWORD: file.password,
        LOXONE_PASSWORD_FILE: file.passwordFile,
        LOXONE_PASSWORD_COMMAND: file.passwordCommand,
      },
    ],
  ];
  for (const [layer, vals] of layers) {
    const direct = vals.LOXONE_PASSWORD;
    if (direct !== undefined && direct !== "") return { password: direct, passwordSource: layer };
    const pwFile = vals.LOXONE_PASSWORD_FILE?.trim();
    if (pwFile) {
      let text: string;
      try {
        const st = statSync(pwFile);
        if (!st.isFile()) throw new Error("not a regular file");
        text = readFileSync(pwFile, "utf8");
      } catch (err) {
        throw new ConfigError(
          "LOXONE_PASSWORD_FILE",
          `LOXONE_PASSWORD_FILE ${pwFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}) — point it at a readable file holding the password`,
        );
      }
      const pw = text.replace(/\r?\n$/, "");
      if (pw === "")
        throw new ConfigError(
          "LOXONE_PASSWORD_FILE",
          `LOXONE_PASSWORD_FILE ${pwFile} is empty — put the password in it`,
        );
      return { password: pw, passwordSource: `file:${pwFile}` };
    }
    const cmd = vals.LOXONE_PASSWORD_COMMAND?.trim();
    if (cmd) return { password: () => runPasswordCommand(cmd), passwordSource: "command" };
  }
  throw new ConfigError(
    "LOXONE_PASSWORD",
    `LOXONE_PASSWORD is missing — ${fixHint} (or set LOXONE_PASSWORD_FILE / LOXONE_PASSWORD_COMMAND)`,
  );
}

/** Runs the password command (`sh -c`), returns its stdout without the trailing newline. */
export function runPasswordCommand(cmd: string, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("/bin/sh", ["-c", cmd], { timeout: timeoutMs, maxBuffer: 64 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        // Never stdout (it may hold the password): the exit status and stderr's first line.
        const e = err as { code?: unknown; signal?: unknown; killed?: boolean };
        const how =
          e.killed && e.signal
            ? `was stopped after ${Math.round(timeoutMs / 1000)} s (${String(e.signal)})`
            : e.code === "ERR_CHILD_PROCESS_STDIO_MAXBUFFER"
              ? "printed more than 64 KiB"
              : typeof e.code === "number"
                ? `exited with status ${e.code}`
                : e.signal
                  ? `was killed by ${String(e.signal)}`
                  : `could not run (${String(e.code ?? "error")})`;
        const line = firstStderrLine(String(stderr ?? ""), String(stdout ?? ""));
        reject(
          new ConfigError(
            "LOXONE_PASSWORD_COMMAND",
            `LOXONE_PASSWORD_COMMAND ${how}${line ? `: ${line}` : " (nothing on stderr)"}; run it by hand to check it`,
          ),
        );
        return;
      }
      const pw = stdout.replace(/\r?\n$/, "");
      if (pw === "") {
        reject(
          new ConfigError(
            "LOXONE_PASSWORD_COMMAND",
            "LOXONE_PASSWORD_COMMAND printed nothing; it must print the password",
          ),
        );
        return;
      }
      resolve(pw);
    });
  });
}

/**
 * The first non-empty line of a failed password command's stderr, for the error: control
 * characters removed, at most 200 characters, and anything the command printed on stdout (which
 * could be the password) cut out of it.
 */
function firstStderrLine(stderr: string, stdout: string): string {
  const line = stderr
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l !== "");
  if (!line) return "";
  let out = [...line].filter((ch) => ch >= " " && ch !== "\u007f").join("");
  for (const s of [stdout.trim(), ...stdout.split(/\r?\n/).map((l) => l.trim())]) {
    if (s.length >= 3) out = out.split(s).join("[stdout removed]");
  }
  return out.length > 200 ? `${out.slice(0, 200)}…` : out;
}
