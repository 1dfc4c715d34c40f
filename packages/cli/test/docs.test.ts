/**
 * docs/cli.md stays complete: every command registered in cli.ts COMMANDS, every subcommand,
 * every flag and every argument has a row in its command table (a row starting with
 * "| `loxmcp <command>"), and every row says its exit codes. A new command or option fails
 * this test until it is documented.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { COMMANDS } from "../src/cli.js";
import type { CommandSpec } from "../src/command.js";
import { REPO_ROOT } from "./helpers.js";

const doc = readFileSync(join(REPO_ROOT, "docs", "cli.md"), "utf8");

/** Table rows whose first cell starts with `loxmcp <name>` (the name as whole words). */
function rowsFor(name: string): string[][] {
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const head = new RegExp(`^\`loxmcp ${escaped}(?=[\` \\\\]|$)`);
  return doc
    .split("\n")
    .filter((l) => l.startsWith("|"))
    .map((l) =>
      l
        .replaceAll("\\|", "\u0000")
        .split("|")
        .slice(1, -1)
        .map((c) => c.replaceAll("\u0000", "|").trim()),
    )
    .filter((cells) => head.test(cells[0] ?? ""));
}

/** Every command with its full name ("pin set"), depth first. */
function walk(specs: readonly CommandSpec[], prefix = ""): Array<{ name: string; spec: CommandSpec }> {
  return specs.flatMap((spec) => {
    const name = `${prefix}${spec.name}`;
    return [{ name, spec }, ...walk(spec.subcommands ?? [], `${name} `)];
  });
}

/** `-n, --lines <n>` → ["-n", "--lines"]. */
function flagsOf(flags: string): string[] {
  return flags.split(/[ ,|]+/).filter((f) => f.startsWith("-"));
}

describe("docs/cli.md documents every command, subcommand, flag and exit code", () => {
  const all = walk(COMMANDS);

  it("knows the commands of cli.ts", () => {
    expect(all.map((c) => c.name)).toEqual(expect.arrayContaining(["status", "pin set", "structure show"]));
  });

  for (const { name, spec } of all) {
    it(`loxmcp ${name}`, () => {
      const rows = rowsFor(name);
      expect(
        rows.length,
        `no row starting with \`loxmcp ${name}\` in a table of docs/cli.md`,
      ).toBeGreaterThan(0);
      const synopsis = rows.map((r) => r[0]).join(" ");
      for (const o of spec.options ?? []) {
        for (const f of flagsOf(o.flags)) {
          expect(synopsis, `loxmcp ${name}: ${f} is not in its row of docs/cli.md`).toMatch(
            new RegExp(`${f}(?![\\w-])`),
          );
        }
      }
      for (const a of spec.arguments ?? []) {
        const shown =
          synopsis.toLowerCase().includes(a.name.toLowerCase()) ||
          (a.choices ?? []).some((c) => synopsis.includes(c));
        expect(shown, `loxmcp ${name}: argument ${a.name} is not in its row of docs/cli.md`).toBe(true);
      }
      // Only runnable commands exit; a pure group (`tools`) exits 2 without a subcommand.
      if (spec.run) {
        const exits = rows.map((r) => r.at(-1) ?? "").join(" ");
        expect(exits, `loxmcp ${name}: its row has no exit codes`).toMatch(/\b0\b.*\b2\b/);
      }
    });
  }
});
