/**
 * Bad usage exits 2 (docs/cli.md), never 1 (which means "failed / not healthy"): unknown command
 * or option, missing argument, bad option value, a missing subcommand. The real CLI binary.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CliSandbox } from "./helpers.js";

let sb: CliSandbox;
beforeEach(() => {
  sb = new CliSandbox();
});
afterEach(() => sb.cleanup());

describe("usage errors exit 2 with one line saying what is wrong", () => {
  const cases: Array<[string[], RegExp]> = [
    [["frobnicate"], /^loxmcp: unknown command 'frobnicate'/],
    [["status", "--bogus"], /^loxmcp: unknown option '--bogus'/],
    [["status", "extra"], /^loxmcp: too many arguments for 'status'/],
    [["deny"], /^loxmcp: missing required argument 'code'/],
    [["status", "--wait", "soon"], /^loxmcp: option '--wait <seconds>' argument 'soon' is invalid/],
    [["logs", "-n", "x"], /^loxmcp: option '-n, --lines <n>' argument 'x' is invalid/],
    [["logs", "--level", "loud"], /^loxmcp: option '--level <level>' argument 'loud' is invalid/],
    [["service", "frob"], /^loxmcp: command-argument value 'frob' is invalid for argument 'action'/],
    [["init", "--serial"], /^loxmcp: option '--serial <serial>' argument missing/],
    [["login-check", "--args", "{}x", "--call", "t"], /^loxmcp: --args must be a JSON object/],
    [["login-check", "--args", '{"a":1}'], /^loxmcp: --args only makes sense with --call/],
    [["structure"], /^Usage: loxmcp structure/],
  ];
  for (const [args, message] of cases) {
    it(`loxmcp ${args.join(" ")}`, async () => {
      const r = await sb.run(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe("");
    });
  }

  it("--help and --version are not errors", async () => {
    expect((await sb.run(["--help"])).code).toBe(0);
    expect((await sb.run(["status", "--help"])).code).toBe(0);
    expect((await sb.run(["--version"])).code).toBe(0);
  });
});
