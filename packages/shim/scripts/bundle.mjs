#!/usr/bin/env node
// Bundles the compiled shim (dist/main.js and what it imports: @loxmcp/common, env-paths) into ONE
// CommonJS file, dist/loxmcp-shim.cjs, which bin/loxmcp-shim.js loads. Every MCP client start runs
// the shim, and on Node 20 resolving and linking a graph of ES modules (package.json lookups through
// pnpm's symlinks, the ESM loader itself) cost ~18 ms of a ~55 ms start; one CommonJS file does not
// (bench start: see docs/benchmarks.md). Run after `tsc -b`; `pnpm build` does both.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const outfile = join(pkg, "dist", "loxmcp-shim.cjs");

const result = await build({
  entryPoints: [join(pkg, "dist", "main.js")],
  outfile,
  bundle: true,
  platform: "node",
  format: "cjs",
  target: "node20",
  // The bundle sits in shim/dist like common's module sat in common/dist, so URLs computed
  // relative to import.meta.url (the daemon bin next door) resolve the same.
  // Computed on first use (only to find or start a daemon), not on every start.
  define: { "import.meta.url": "__loxmcpMeta.url", "import.meta.resolve": "__loxmcpMeta.resolve" },
  banner: {
    js: [
      '"use strict";',
      "const __loxmcpMeta = {",
      '  get url() { return require("node:url").pathToFileURL(__filename).href; },',
      '  resolve: (s) => require("node:url").pathToFileURL(require.resolve(s)).href,',
      "};",
    ].join("\n"),
  },
  // Whitespace and syntax minified (names kept, so stack traces stay readable): 68 → 49 KB to
  // scan and compile at every client start (bench start, ~1 ms).
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: "eof",
  logLevel: "warning",
});
const left = readFileSync(outfile, "utf8").match(/import_meta\b/g);
if (left) {
  console.error(`bundle-shim: ${outfile} still uses import.meta (${left.length}×); add it to define`);
  process.exit(1);
}
if (result.errors.length > 0 || result.warnings.length > 0) {
  console.error(`bundle-shim: ${result.errors.length} errors, ${result.warnings.length} warnings; see above`);
  process.exit(1);
}
