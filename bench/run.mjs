#!/usr/bin/env node
// `pnpm bench`: runs every bench/*.bench.mjs (or those whose file name contains one of the
// arguments, e.g. `node bench/run.mjs start fanin`), prints each result as JSON and a table, a
// summary of the goals, and writes bench/results/latest.json. Benchmarks report numbers; they never
// pass/fail on timing. The exit code is 1 only when a benchmark could not run at all.
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const ORDER = ["start", "overhead", "peer", "fanin", "memory", "abuse"];
const rank = (f) => {
  const i = ORDER.findIndex((o) => f.startsWith(o));
  return i === -1 ? ORDER.length : i;
};
const files = readdirSync(here)
  .filter((f) => f.endsWith(".bench.mjs"))
  .filter((f) => only.length === 0 || only.some((o) => f.includes(o)))
  .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));

if (files.length === 0) {
  console.log(JSON.stringify({ benchmarks: [], note: "no benchmarks found in bench/" }));
  process.exit(0);
}

const cpus = os.cpus();
const machine = {
  node: process.version,
  platform: `${os.platform()} ${os.release()} ${os.arch()}`,
  cpuModel: cpus[0]?.model ?? "unknown",
  cpus: cpus.length,
  memGb: Math.round(os.totalmem() / 2 ** 30),
  loadavg1m: os.loadavg()[0],
  note: process.env.BENCH_MACHINE_NOTE ?? undefined,
};

const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k.startsWith("BENCH_")));
const results = [];
let failed = 0;
const started = Date.now();
for (const f of files) {
  process.stderr.write(`[bench] ${f} …\n`);
  const t0 = Date.now();
  try {
    const mod = await import(pathToFileURL(join(here, f)).href);
    const r = await mod.run();
    results.push({ file: f, seconds: Math.round((Date.now() - t0) / 100) / 10, ...r });
  } catch (e) {
    failed++;
    process.stderr.write(`[bench] ${f} FAILED: ${e?.stack ?? e}\n`);
    results.push({ file: f, error: String(e?.message ?? e).slice(0, 2000) });
  }
}

const goals = results.flatMap((r) => (r.goals ?? []).map((g) => ({ bench: r.file, ...g })));
const out = {
  machine,
  env,
  at: new Date().toISOString(),
  totalSeconds: Math.round((Date.now() - started) / 1000),
  results,
  goals,
};
mkdirSync(join(here, "results"), { recursive: true });
// A partial run (`pnpm bench abuse`) does not overwrite the full run's file.
const outName = only.length === 0 ? "latest.json" : `latest-${only.join("-")}.json`;
writeFileSync(join(here, "results", outName), `${JSON.stringify(out, null, 2)}\n`);
console.log(JSON.stringify(out));
for (const r of results) {
  console.log(`\n${r.name ?? r.file}${r.error ? `  — FAILED: ${r.error.split("\n")[0]}` : ""}`);
  // `columns` (optional) fixes the table's columns and their order when rows differ in keys.
  if (Array.isArray(r.rows)) console.table(r.rows, Array.isArray(r.columns) ? r.columns : undefined);
}
if (goals.length > 0) {
  console.log("\nGoals (reported, never asserted)");
  console.table(goals.map(({ bench: _b, ...g }) => g));
}
console.log(
  `\nwritten: bench/results/${outName} (${machine.cpus}× ${machine.cpuModel}, node ${machine.node})`,
);
process.exit(failed > 0 ? 1 : 0);
