#!/usr/bin/env node
// `pnpm bench`: runs every bench/*.bench.mjs, prints each result as JSON and a table, and writes
// bench/results/latest.json. Benchmarks report numbers; they never pass/fail on timing.
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith(".bench.mjs"))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort();

if (files.length === 0) {
  console.log(JSON.stringify({ benchmarks: [], note: "no benchmarks found in bench/" }));
  process.exit(0);
}

const results = [];
for (const f of files) {
  const mod = await import(pathToFileURL(join(here, f)).href);
  process.stderr.write(`[bench] ${f} …\n`);
  const r = await mod.run();
  results.push({ file: f, ...r });
}

const out = {
  machine: { node: process.version, cpus: (await import("node:os")).cpus().length },
  at: new Date().toISOString(),
  results,
};
mkdirSync(join(here, "results"), { recursive: true });
writeFileSync(join(here, "results", "latest.json"), `${JSON.stringify(out, null, 2)}\n`);
console.log(JSON.stringify(out));
for (const r of results) {
  console.log(`\n${r.name ?? r.file}`);
  if (Array.isArray(r.rows)) console.table(r.rows);
}
