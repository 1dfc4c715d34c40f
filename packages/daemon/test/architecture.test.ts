/**
 * The dependency rules of ../shared/DESIGN.md ("Layout"), enforced: every import, export-from,
 * `import()` and `require()` of every source file under packages/, test-support/ is read with the
 * TypeScript pre-processor (type-only imports count too) and checked against the rules below.
 * A planted violation is checked as well, so a checker that silently finds nothing fails.
 */

import { readdirSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { describe, expect, it } from "vitest";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const PACKAGES = ["common", "daemon", "shim", "cli", "simulator"] as const;

interface SourceFile {
  /** Path relative to the repository root, with forward slashes. */
  path: string;
  imports: string[];
}

function toPosix(p: string): string {
  return p.split(sep).join("/");
}

function listTs(dir: string): string[] {
  let entries: import("node:fs").Dirent[];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const e of entries) {
    if (e.name === "node_modules" || e.name === "dist") continue;
    const full = join(dir, e.name);
    if (e.isDirectory()) out.push(...listTs(full));
    else if (/\.(ts|mts|cts)$/.test(e.name) && !e.name.endsWith(".d.ts")) out.push(full);
  }
  return out;
}

function readSources(): SourceFile[] {
  const dirs = [
    ...PACKAGES.flatMap((p) => [join(ROOT, "packages", p, "src"), join(ROOT, "packages", p, "test")]),
    join(ROOT, "test-support"),
  ];
  return dirs.flatMap(listTs).map((file) => ({
    path: toPosix(relative(ROOT, file)),
    imports: ts.preProcessFile(readFileSync(file, "utf8"), true, true).importedFiles.map((f) => f.fileName),
  }));
}

const BUILTINS = new Set(builtinModules);
function isBuiltin(spec: string): boolean {
  return spec.startsWith("node:") || BUILTINS.has(spec);
}

/** The bare package name of a specifier ("@scope/name/sub" → "@scope/name"), or null if relative. */
function packageOf(spec: string): string | null {
  if (spec.startsWith(".") || spec.startsWith("/")) return null;
  const parts = spec.split("/");
  return spec.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] ?? spec);
}

/** The repository-relative path a relative specifier points at (extension as written). */
function target(from: string, spec: string): string {
  return toPosix(join(dirname(from), spec));
}

/** "packages/daemon/src/policy/x.ts" → { pkg: "daemon", part: "src", rest: "policy/x.ts" }. */
function locate(path: string): { pkg: string; part: string; rest: string } | null {
  const m = /^packages\/([^/]+)\/([^/]+)\/(.*)$/.exec(path);
  return m ? { pkg: m[1] ?? "", part: m[2] ?? "", rest: m[3] ?? "" } : null;
}

/** Every rule broken by one file, as readable lines ("<file> imports <spec>: <rule>"). */
function violations(files: SourceFile[]): string[] {
  const out: string[] = [];
  for (const file of files) {
    const here = locate(file.path);
    for (const spec of file.imports) {
      const bad = (rule: string) => out.push(`${file.path} imports "${spec}": ${rule}`);
      const pkg = packageOf(spec);
      const there = pkg === null ? locate(target(file.path, spec)) : null;
      const daemonFolder = (p: { pkg: string; part: string; rest: string } | null) =>
        p && p.pkg === "daemon" && p.part === "src" ? (p.rest.split("/")[0] ?? "") : null;

      // Anything outside a package (test-support/) and every test: no other package's src/.
      if (there && there.part === "src" && there.pkg !== here?.pkg) {
        bad(`reaches into packages/${there.pkg}/src; import "@loxmcp/${there.pkg}" instead`);
        continue;
      }
      if (here?.part !== "src") continue;

      // Product code: a relative import stays inside its own package's src/.
      if (pkg === null && (!there || there.pkg !== here.pkg || there.part !== "src")) {
        bad("a relative import leaves the package's src/");
      }
      if (here.pkg !== "simulator" && (pkg === "@loxmcp/simulator" || there?.pkg === "simulator")) {
        bad("product code never imports the simulator (tests do)");
      }
      if (pkg === "better-sqlite3" && !(here.pkg === "daemon" && here.rest.startsWith("store/"))) {
        bad("only daemon/src/store/ talks to SQLite");
      }
      if (here.pkg === "common" && pkg !== null && !isBuiltin(spec) && pkg !== "env-paths") {
        bad("common has no dependencies beyond node builtins (and env-paths)");
      }
      if (here.pkg === "shim" && pkg !== null && !isBuiltin(spec) && pkg !== "@loxmcp/common") {
        bad("the shim imports only @loxmcp/common and node builtins");
      }
      if (
        here.pkg === "cli" &&
        pkg !== null &&
        !isBuiltin(spec) &&
        pkg !== "@loxmcp/common" &&
        pkg !== "commander"
      ) {
        bad("the CLI talks to the daemon only through the socket: @loxmcp/common, commander, node builtins");
      }
      const from = here.pkg === "daemon" ? (here.rest.split("/")[0] ?? "") : null;
      const to = daemonFolder(there);
      const toRest = there?.rest ?? "";
      if (from === "policy" && (to === "relay" || to === "mux")) {
        bad("policy/ decides; it never imports relay/ or mux/ (use contracts.ts)");
      }
      if (from === "relay" && (to === "mux" || to === "policy")) {
        bad("relay/ knows nothing of shims or policy");
      }
      if (from === "mux" && (to === "policy" || toRest.startsWith("relay/auth/"))) {
        bad("mux/ knows nothing of policy or OAuth");
      }
      if (
        from === "mux" &&
        pkg === "@modelcontextprotocol/sdk" &&
        /\/(client|server|shared)\/auth/.test(spec)
      ) {
        bad("mux/ knows nothing of OAuth");
      }
    }
  }
  return out;
}

describe("architecture: the import rules of DESIGN.md", () => {
  const files = readSources();

  it("reads the whole tree (so an empty scan cannot pass)", () => {
    for (const p of ["shim", "cli", "common"]) {
      expect(files.some((f) => f.path.startsWith(`packages/${p}/src/`))).toBe(true);
    }
    for (const folder of ["policy", "relay", "mux", "store"]) {
      expect(files.some((f) => f.path.startsWith(`packages/daemon/src/${folder}/`))).toBe(true);
    }
    expect(
      files.find((f) => f.path === "packages/daemon/src/relay/upstream.ts")?.imports.length,
    ).toBeGreaterThan(0);
  });

  it("no source or test file breaks a rule", () => {
    expect(violations(files)).toEqual([]);
  });

  it("catches planted violations", () => {
    const planted: SourceFile[] = [
      { path: "packages/daemon/src/policy/x.ts", imports: ["../relay/upstream.js", "../mux/server.js"] },
      { path: "packages/daemon/src/relay/x.ts", imports: ["../policy/index.js", "../mux/session.js"] },
      { path: "packages/daemon/src/mux/x.ts", imports: ["../relay/auth/manager.js", "../policy/types.js"] },
      { path: "packages/daemon/src/mux/y.ts", imports: ["@modelcontextprotocol/sdk/client/auth.js"] },
      { path: "packages/daemon/src/config.ts", imports: ["better-sqlite3"] },
      {
        path: "packages/shim/src/x.ts",
        imports: ["@modelcontextprotocol/sdk/types.js", "../../common/src/x.js"],
      },
      { path: "packages/cli/src/x.ts", imports: ["@loxmcp/daemon", "@modelcontextprotocol/sdk/types.js"] },
      { path: "packages/daemon/src/y.ts", imports: ["@loxmcp/simulator"] },
      { path: "packages/daemon/test/x.test.ts", imports: ["../../simulator/src/types.js"] },
      { path: "test-support/x.ts", imports: ["../packages/daemon/src/contracts.js"] },
    ];
    const found = violations(planted);
    expect(found).toHaveLength(15);
    // Allowed shapes stay allowed.
    const fine: SourceFile[] = [
      {
        path: "packages/daemon/src/policy/x.ts",
        imports: ["../contracts.js", "../store/audit.js", "./types.js"],
      },
      { path: "packages/daemon/src/store/x.ts", imports: ["better-sqlite3", "node:fs"] },
      { path: "packages/daemon/test/x.test.ts", imports: ["../src/policy/index.js", "@loxmcp/simulator"] },
      { path: "packages/shim/src/x.ts", imports: ["@loxmcp/common", "node:net", "./args.js"] },
    ];
    expect(violations(fine)).toEqual([]);
  });
});
