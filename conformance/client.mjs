#!/usr/bin/env node
/**
 * Adapter the MCP conformance suite runs as `--command` (see run.mjs): `node client.mjs <server-url>`.
 *
 * It drives the PRODUCT's own upstream client — the daemon's probe, i.e. the same resolver-less
 * direct-mode UpstreamSession, headless OAuth driver, SQLite token store and resource policy that
 * `loxmcpd` and `loxmcp login-check --url` use — from the built `packages/daemon/dist`. Nothing
 * here speaks MCP or OAuth itself. Per scenario it only decides which tool to call (the suite's
 * servers expose fixed test tools) and stands in for the person answering an elicitation.
 *
 * Environment from the suite: MCP_CONFORMANCE_SCENARIO (scenario name), MCP_CONFORMANCE_CONTEXT
 * (JSON; `client_id` / `client_secret` for pre-registered client credentials).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "..", "packages", "daemon", "dist");
const { loadConfig } = await import(join(dist, "config.js"));
const { createLogger, SecretRegistry } = await import(join(dist, "log.js"));
const { runProbe } = await import(join(dist, "login-check.js"));
const { formatProbeSummary } = await import(join(dist, "login-check-summary.js"));
const { createUpstreamSession } = await import(join(dist, "wiring.js"));

const serverUrl = process.argv[2];
if (!serverUrl) {
  console.error("usage: client.mjs <mcp-server-url>  (run by the conformance suite)");
  process.exit(2);
}
const scenario = process.env.MCP_CONFORMANCE_SCENARIO ?? "";
let context = {};
try {
  context = JSON.parse(process.env.MCP_CONFORMANCE_CONTEXT ?? "{}");
} catch {
  console.error("MCP_CONFORMANCE_CONTEXT is not JSON; ignoring it");
}

/** The tool each scenario's server expects to be called (none: initialize + tools/list only). */
function toolFor(name) {
  if (name === "tools_call") return { name: "add_numbers", arguments: { a: 5, b: 3 } };
  if (name === "sse-retry") return { name: "test_reconnection", arguments: {} };
  if (name === "elicitation-sep1034-client-defaults")
    return { name: "test_client_elicitation_defaults", arguments: {} };
  if (name.startsWith("auth/")) return { name: "test-tool", arguments: {} };
  return undefined;
}

/**
 * Stands in for the person at the MCP client: accepts an elicitation with the defaults the
 * server proposed (what pressing "OK" on a pre-filled form does).
 */
async function answerServerRequest(req) {
  if (req.method === "elicitation/create") {
    const props = req.params?.requestedSchema?.properties ?? {};
    const content = {};
    for (const [k, v] of Object.entries(props)) if (v && v.default !== undefined) content[k] = v.default;
    return { action: "accept", content };
  }
  throw new Error(`unexpected server request ${req.method}`);
}

const home = mkdtempSync(join(tmpdir(), "lx-cf-"));
const env = {
  ...process.env,
  LOXMCP_HOME: home,
  LOXMCP_UPSTREAM_URL: serverUrl,
  // The suite's authorization servers approve at once (plain redirect): these are never asked for,
  // but the product requires them, as it does for a real Miniserver.
  LOXONE_SERIAL: "C0FFEE000001",
  LOXONE_USER: "conformance",
  LOXONE_PASSWORD: "conformance-password",
};
const config = loadConfig({ env });
// The process's one registry of secrets, as the daemon's main.ts makes it.
const secrets = new SecretRegistry();
const log = createLogger({
  registry: secrets,
  level: process.env.LOXMCP_DEBUG ? "debug" : "info",
  file: config.paths.logFile,
  logDir: config.paths.log,
  pretty: Boolean(process.env.LOXMCP_DEBUG),
});

let code = 1;
try {
  const opts = {
    config,
    createUpstream: createUpstreamSession,
    timeoutMs: 25_000,
    logger: log.logger,
    secrets,
    onServerRequest: answerServerRequest,
  };
  const call = toolFor(scenario);
  if (call) opts.call = call;
  if (context.client_id) {
    opts.clientInformation = { client_id: context.client_id };
    if (context.client_secret) opts.clientInformation.client_secret = context.client_secret;
  }
  const summary = await runProbe(opts);
  console.log(formatProbeSummary(summary).join("\n"));
  code = summary.ok ? 0 : 1;
} catch (err) {
  console.error(`client.mjs: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
} finally {
  log.close();
  // On failure, the daemon log (secrets scrubbed) goes to stderr: the suite saves it per scenario.
  if (code !== 0 && existsSync(config.paths.logFile)) {
    const lines = readFileSync(config.paths.logFile, "utf8").trim().split("\n").slice(-40);
    console.error(lines.join("\n"));
  }
  if (!process.env.LOXMCP_KEEP_HOME) rmSync(home, { recursive: true, force: true });
  else console.error(`kept ${home}`);
}
process.exit(code);
