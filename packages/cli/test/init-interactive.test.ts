/**
 * `loxmcp init` on a real terminal: a pseudo-terminal (Python's pty module drives the real CLI
 * process) answers the prompts; the typed password must not be echoed back.
 */
import { spawnSync } from "node:child_process";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { parseEnv } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CLI_BIN, CliSandbox } from "./helpers.js";

const hasPython = spawnSync("python3", ["-c", "import pty"], { stdio: "ignore" }).status === 0;
if (!hasPython) console.warn("SKIPPED interactive init test: python3 with the pty module is not available");

const DRIVER = `
import os, pty, sys, time, select, json
args = json.loads(sys.argv[1])
pid, fd = pty.fork()
if pid == 0:
    os.execve(args["node"], ["node", args["cli"], "init"], args["env"])
out = b""
def read_until(s, timeout=10):
    global out
    end = time.time() + timeout
    while s not in out and time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                out += os.read(fd, 1024)
            except OSError:
                return
for prompt, answer in args["script"]:
    read_until(prompt.encode())
    os.write(fd, answer.encode() + b"\\r")
read_until(b"next:")
read_until(b"\\n__never__", 0.3)
_, status = os.waitpid(pid, 0)
sys.stdout.write(json.dumps({"status": os.waitstatus_to_exitcode(status), "out": out.decode("utf8", "replace")}))
`;

let sb: CliSandbox;
beforeEach(() => {
  sb = new CliSandbox();
});
afterEach(() => sb.cleanup());

/** Runs `loxmcp init` on a pseudo-terminal, answering `script` (prompt substring, answer) in order. */
function initAtTerminal(script: Array<[string, string]>): { status: number; out: string } {
  const r = spawnSync(
    "python3",
    ["-c", DRIVER, JSON.stringify({ node: process.execPath, cli: CLI_BIN, env: sb.env, script })],
    { encoding: "utf8", timeout: 30_000 },
  );
  return JSON.parse(r.stdout) as { status: number; out: string };
}

const envFile = () => parseEnv(readFileSync(join(sb.loxmcpHome, "config", ".env"), "utf8"));

describe("loxmcp init (interactive)", () => {
  it.skipIf(!hasPython)("prompts for serial, user and password and never echoes the password", () => {
    const secret = "PTY-S3NTINEL-pw";
    const r = spawnSync(
      "python3",
      [
        "-c",
        DRIVER,
        JSON.stringify({
          node: process.execPath,
          cli: CLI_BIN,
          env: sb.env,
          script: [
            ["serial", "504f94a00001"],
            ["user", "ai"],
            ["Password", secret],
            ["approval PIN now", "n"],
          ],
        }),
      ],
      { encoding: "utf8", timeout: 30_000 },
    );
    const res = JSON.parse(r.stdout) as { status: number; out: string };
    expect(res.status, res.out).toBe(0);
    expect(res.out).toContain("Password (not shown)");
    expect(res.out).toContain("wrote ");
    expect(res.out).not.toContain(secret);
    // Skipping the PIN says why it matters.
    expect(res.out).toMatch(/no approval PIN is set yet: .*loxmcp pin set/s);
    const file = join(sb.loxmcpHome, "config", ".env");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(parseEnv(readFileSync(file, "utf8"))).toMatchObject({
      LOXONE_SERIAL: "504F94A00001",
      LOXONE_USER: "ai",
      LOXONE_PASSWORD: secret,
    });
  });

  it.skipIf(!hasPython)(
    "run again: Enter keeps the stored password; ! stores a password command instead",
    () => {
      const secret = "PTY-kept-pw-1";
      const first = initAtTerminal([
        ["serial", "504f94a00001"],
        ["user", "ai"],
        ["Password (not shown)", secret],
        ["approval PIN now", "n"],
      ]);
      expect(first.status, first.out).toBe(0);
      // The alternative is offered before the password is asked for.
      expect(first.out).toContain("a command that prints it, like `pass show loxone`");

      // Again, changing only the user: the defaults are the stored values, Enter keeps the password.
      const again = initAtTerminal([
        ["serial [504F94A00001]", ""],
        ["user [ai]", "ai2"],
        ["Password (not shown) [keep stored]", ""],
        ["approval PIN now", "n"],
      ]);
      expect(again.status, again.out).toBe(0);
      expect(again.out).toContain("the stored password is kept");
      expect(again.out).not.toContain(secret);
      expect(envFile()).toMatchObject({
        LOXONE_SERIAL: "504F94A00001",
        LOXONE_USER: "ai2",
        LOXONE_PASSWORD: secret,
      });

      // ! at the password prompt: a command that prints it; the stored password is dropped.
      const cmd = initAtTerminal([
        ["serial [504F94A00001]", ""],
        ["user [ai2]", ""],
        ["Password (not shown) [keep stored]", "!"],
        ["Command that prints the password", "pass show loxone/ai"],
        ["approval PIN now", "n"],
      ]);
      expect(cmd.status, cmd.out).toBe(0);
      const env = envFile();
      expect(env.LOXONE_PASSWORD_COMMAND).toBe("pass show loxone/ai");
      expect(env.LOXONE_PASSWORD).toBeUndefined();

      // Once more: the stored command is kept with Enter too.
      const keepCmd = initAtTerminal([
        ["serial [504F94A00001]", ""],
        ["user [ai2]", ""],
        ["Password (not shown) [keep stored command]", ""],
        ["approval PIN now", "n"],
      ]);
      expect(keepCmd.status, keepCmd.out).toBe(0);
      expect(envFile().LOXONE_PASSWORD_COMMAND).toBe("pass show loxone/ai");
    },
  );
});
