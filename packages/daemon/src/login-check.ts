/**
 * One-shot check of the upstream path (`loxmcpd --probe`, run by `loxmcp login-check`): builds
 * the daemon's own upstream session (resolver, headless OAuth, MCP client) from the
 * configuration, waits until it is ready, lists the tools, optionally calls one tool, stops,
 * and returns a summary with a troubleshooting hint when something failed. No second client
 * implementation: whatever the daemon would do, the probe does. Tokens land in the same store
 * (keyed by serial, or by the URL in direct mode), so a later daemon start reuses the login.
 */
import { PROGRESS_PREFIX, withTimeout } from "@loxmcp/common";
import type { OAuthClientInformationMixed } from "@modelcontextprotocol/sdk/shared/auth.js";
import type { Logger } from "pino";
import { ConfigError, type DaemonConfig, EX_CONFIG, loadConfig } from "./config.js";
import type { Upstream, UpstreamState, UpstreamStatus } from "./contracts.js";
import { UpstreamError } from "./contracts.js";
import type { UpstreamFactory } from "./daemon.js";
import { createLogger, type SecretRegistry } from "./log.js";
import { formatProbeSummary, hintFor, type ProbeSummary, truncate } from "./login-check-summary.js";
import { safeUrl } from "./relay/url.js";
import { openDatabase } from "./store/db.js";
import { TokenStore } from "./store/tokens.js";

export interface ProbeCall {
  name: string;
  arguments: Record<string, unknown>;
}

export interface ProbeOptions {
  config: DaemonConfig;
  createUpstream: UpstreamFactory;
  /** The secrets scrubbed from the summary (the relay registers its tokens there too). */
  secrets: SecretRegistry;
  /** Call this tool after tools/list. */
  call?: ProbeCall;
  /** Overall deadline for login + initialize + tools/list (+ call). */
  timeoutMs: number;
  logger: Logger;
  fetch?: typeof fetch;
  /** Pre-registered OAuth client (no dynamic registration): conformance, or a fixed client id. */
  clientInformation?: OAuthClientInformationMixed;
  /** Answers server→client requests (elicitation …) raised while the tool call runs. */
  onServerRequest?: (req: { method: string; params?: unknown }) => Promise<unknown>;
  /** Forget the stored tokens of this upstream first: a real login with the current credentials. */
  fresh?: boolean;
  /** Told each step as it starts ("logging in as ai"), for a progress line on a terminal. */
  onProgress?: (step: string) => void;
}

/** Prefix of the step lines `--progress` writes to stderr (read by `loxmcp login-check`). */
export { PROGRESS_PREFIX } from "@loxmcp/common";

function hostOf(url: string): string {
  try {
    return new URL(url).host;
  } catch {
    return url;
  }
}

/** What the session is doing in each state, as a person would say it. */
function stepFor(state: UpstreamState, config: DaemonConfig, direct: boolean): string | undefined {
  switch (state) {
    case "starting":
    case "resolving":
      return direct
        ? `connecting to ${safeUrl(config.upstreamUrl ?? "")}`
        : `asking ${hostOf(config.connectUrl)} for Miniserver ${config.serial}`;
    case "authenticating":
      return `logging in${config.user ? ` as ${config.user}` : ""}`;
    case "connecting":
      return "opening the MCP session";
    default:
      return undefined;
  }
}

/** Runs the probe. Never throws for an upstream failure: the summary says what happened. */
export async function runProbe(opts: ProbeOptions): Promise<ProbeSummary> {
  const started = Date.now();
  const { config } = opts;
  const direct = config.upstreamUrl !== undefined;
  const target = direct ? (config.upstreamUrl as string) : `${config.connectUrl}/${config.serial}/mcp`;
  const summary: ProbeSummary = {
    ok: false,
    mode: direct ? "direct" : "connect",
    target: safeUrl(target),
    login: "failed",
    freshLogin: false,
    state: "starting",
    tools: [],
    durationMs: 0,
  };
  const db = openDatabase(config.paths.db);
  let upstream: Upstream | undefined;
  const deadline = started + opts.timeoutMs;
  try {
    const ctx: Parameters<UpstreamFactory>[0] = {
      config,
      db,
      logger: opts.logger,
      password: config.password,
      secrets: opts.secrets,
    };
    if (opts.fetch) ctx.fetch = opts.fetch;
    if (opts.clientInformation) ctx.clientInformation = opts.clientInformation;
    // The token store is keyed like the session keys it: the URL in direct mode, else the serial.
    if (opts.fresh) new TokenStore(db).clearTokens(direct ? new URL(target).href : config.serial);
    upstream = opts.createUpstream(ctx);
    const session = upstream;
    const progress = opts.onProgress;
    const onStep = (st: UpstreamStatus) => {
      const step = stepFor(st.state, config, direct);
      if (step && progress) progress(step);
    };
    if (progress) {
      session.on("state", onStep);
      onStep(session.status());
    }
    // One shot: the first failed attempt ("degraded": the session would back off and retry) ends it.
    let onState: ((st: UpstreamStatus) => void) | undefined;
    const firstFailure = new Promise<never>((_, reject) => {
      onState = (st) => {
        if (st.state === "degraded")
          reject(new UpstreamError("UNAVAILABLE", st.reason ?? "the first attempt failed"));
      };
      session.on("state", onState);
    });
    firstFailure.catch(() => {});
    upstream.start();
    try {
      await Promise.race([upstream.whenReady(Math.max(1, deadline - Date.now())), firstFailure]);
    } catch (err) {
      const st = upstream.status();
      summary.state = st.state;
      if (st.entry) summary.entry = safeUrl(st.entry);
      summary.error = opts.secrets.scrub(st.reason ?? describe(err));
      const text = `${st.reason ?? ""} ${describe(err)} ${errorCode(err)}`;
      summary.login = /LOGIN_REJECTED|login was rejected/i.test(text) ? "rejected" : "failed";
      summary.hint = hintFor(text, summary);
      return summary;
    } finally {
      if (onState) upstream.off("state", onState);
      upstream.off("state", onStep);
    }
    const st = upstream.status();
    summary.state = st.state;
    if (st.entry) summary.entry = safeUrl(st.entry);
    summary.login = "ok";
    summary.freshLogin = st.counters.logins > 0;
    const info = upstream.initializeInfo();
    if (info) {
      summary.server = {
        name: String(info.serverInfo.name),
        version: String(info.serverInfo.version),
        protocolVersion: info.protocolVersion,
      };
    }
    progress?.("listing the tools");
    try {
      const list = await withTimeout(upstream.listTools(), deadline - Date.now(), () => {
        throw new UpstreamError("TIMEOUT", "tools/list did not answer in time");
      });
      summary.tools = list.tools.map((t) => String(t.name));
    } catch (err) {
      summary.error = opts.secrets.scrub(`tools/list failed: ${describe(err)}`);
      summary.hint = hintFor(`${describe(err)} ${errorCode(err)}`, summary);
      return summary;
    }
    if (opts.call) {
      const { name } = opts.call;
      progress?.(`calling ${name}`);
      try {
        const reqOpts: Parameters<Upstream["request"]>[2] = {
          retryable: false,
          timeoutMs: Math.max(1, deadline - Date.now()),
        };
        if (opts.onServerRequest) reqOpts.onServerRequest = opts.onServerRequest;
        const result = (await upstream.request(
          "tools/call",
          { name, arguments: opts.call.arguments },
          reqOpts,
        )) as { content?: Array<{ type?: string; text?: string }>; isError?: boolean };
        const text = (result.content ?? [])
          .filter((c) => c.type === "text" && typeof c.text === "string")
          .map((c) => c.text)
          .join("\n");
        summary.call = { tool: name, ok: result.isError !== true, text: truncate(text, 2000) };
        if (result.isError === true) summary.call.isError = true;
        if (result.isError === true) {
          summary.error = `the tool ${name} answered with an error`;
          summary.hint = "check the tool name and --args against the tools list above";
          return summary;
        }
      } catch (err) {
        summary.call = { tool: name, ok: false, error: opts.secrets.scrub(describe(err)) };
        summary.error = opts.secrets.scrub(`calling ${name} failed: ${describe(err)}`);
        summary.hint = hintFor(`${describe(err)} ${errorCode(err)}`, summary);
        return summary;
      }
    }
    summary.ok = true;
    return summary;
  } finally {
    if (upstream) await upstream.stop().catch(() => {});
    db.close();
    summary.durationMs = Date.now() - started;
  }
}

export interface ProbeArgs {
  url?: string;
  call?: ProbeCall;
  json: boolean;
  timeoutMs: number;
  fresh: boolean;
  /** Write each step to stderr as `loxmcpd-progress: <step>` (for a progress line). */
  progress: boolean;
}

export class ProbeUsageError extends Error {
  readonly code = "PROBE_USAGE";
  constructor(message: string) {
    super(message);
    this.name = "ProbeUsageError";
  }
}

/** Parses the arguments after `--probe`. */
export function parseProbeArgs(argv: readonly string[]): ProbeArgs {
  const out: ProbeArgs = { json: false, timeoutMs: 90_000, fresh: false, progress: false };
  let callName: string | undefined;
  let callArgs: Record<string, unknown> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new ProbeUsageError(`${a} needs a value`);
      return v;
    };
    if (a === "--probe") continue;
    if (a === "--url") out.url = value();
    else if (a === "--call") callName = value();
    else if (a === "--args") {
      const raw = value();
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        throw new ProbeUsageError(`--args is not valid JSON: ${raw.slice(0, 200)}`);
      }
      if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
        throw new ProbeUsageError("--args must be a JSON object");
      }
      callArgs = parsed as Record<string, unknown>;
    } else if (a === "--json") out.json = true;
    else if (a === "--fresh") out.fresh = true;
    else if (a === "--progress") out.progress = true;
    else if (a === "--timeout") {
      const n = Number(value());
      if (!Number.isFinite(n) || n <= 0)
        throw new ProbeUsageError("--timeout must be a positive number of seconds");
      out.timeoutMs = Math.round(n * 1000);
    } else throw new ProbeUsageError(`unknown argument ${a}`);
  }
  if (callName !== undefined) out.call = { name: callName, arguments: callArgs };
  return out;
}

/**
 * `loxmcpd --probe [--url U] [--fresh] [--call T [--args JSON]] [--json] [--timeout S]`: prints the summary
 * (text or one JSON object) to stdout; resolves with the exit code (0 ok, 1 failed, 78 config).
 */
export async function probeMain(
  argv: readonly string[],
  createUpstream: UpstreamFactory,
  secrets: SecretRegistry,
  io: { out(s: string): void; err(s: string): void } = {
    out: (s) => process.stdout.write(s),
    err: (s) => process.stderr.write(s),
  },
  env: Record<string, string | undefined> = process.env,
): Promise<number> {
  let args: ProbeArgs;
  try {
    args = parseProbeArgs(argv);
  } catch (err) {
    io.err(`loxmcpd --probe: ${(err as Error).message}\n`);
    return 64;
  }
  let config: DaemonConfig;
  try {
    const probeEnv = args.url === undefined ? env : { ...env, LOXMCP_UPSTREAM_URL: args.url };
    config = loadConfig({ env: probeEnv });
  } catch (err) {
    if (err instanceof ConfigError) {
      io.err(`loxmcpd --probe: config error: ${err.message}\n`);
      return EX_CONFIG;
    }
    throw err;
  }
  if (typeof config.password === "string") secrets.add(config.password);
  const log = createLogger({
    level: config.debug ? "debug" : "warn",
    file: config.paths.logFile,
    logDir: config.paths.log,
    pretty: config.debug,
    registry: secrets,
  });
  try {
    const probeOpts: ProbeOptions = {
      config,
      createUpstream,
      secrets,
      timeoutMs: args.timeoutMs,
      logger: log.logger.child({ component: "probe" }),
    };
    if (args.call) probeOpts.call = args.call;
    if (args.fresh) probeOpts.fresh = true;
    if (args.progress) probeOpts.onProgress = (step) => io.err(`${PROGRESS_PREFIX}${step}\n`);
    const summary = await runProbe(probeOpts);
    if (args.json) io.out(`${JSON.stringify(summary)}\n`);
    else io.out(`${formatProbeSummary(summary).join("\n")}\n`);
    return summary.ok ? 0 : 1;
  } finally {
    log.close();
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

function errorCode(err: unknown): string {
  const parts: string[] = [];
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" || typeof code === "number") parts.push(String(code));
    e = (e as { cause?: unknown }).cause;
  }
  if (err instanceof UpstreamError && err.rpcCode !== undefined) parts.push(String(err.rpcCode));
  return parts.join(" ");
}
