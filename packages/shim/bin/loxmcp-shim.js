#!/usr/bin/env node
// CommonJS on purpose (bin/package.json): loading one bundled CommonJS file spares every client
// start Node's ES module loader. `pnpm build` writes dist/loxmcp-shim.cjs (scripts/bundle.mjs).
require("../dist/loxmcp-shim.cjs");
