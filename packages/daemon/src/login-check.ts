/**
 * One-shot check of the upstream path (`loxmcpd --probe`, run by `loxmcp login-check`): builds
 * the daemon's own upstream session (resolver, headless OAuth, MCP client) from the
 * configuration, waits until it is ready, lists the tools, optionally calls one tool, stops,
 * and returns a summary with a troubleshooting hint when something failed. No second client
 * implementation: whatever the daemon would do, the probe does. Tokens land in the same store
 * (keyed by serial, or by the URL in direct mode), so a later daemon start reuses the login.
 */
import type { OAuthClientInformationMixed } from "@modelcontextprotocol/sdk/shared/auth.js";
import type { Logger } from "pino";
import { ConfigError, type DaemonConfig, EX_CONFIG, loadConfig } from "./config.js";
import type { Upstream, UpstreamState, UpstreamStatus } from "./contracts.js";
import { UpstreamError } from "./contracts.js";
import type { UpstreamFactory } from "./daemon.js";
import { createLogger, type SecretRegistry } from "./log.js";
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
export const PROGRESS_PREFIX = "loxmcpd-progress: ";

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

export interface ProbeSummary {
  ok: boolean;
  mode: "connect" | "direct";
  /** What we were asked to reach: `<connect>/<serial>/mcp` or the direct URL. */
  target: string;
  /** The MCP URL traffic went to (resolved relay entry, or the direct URL). */
  entry?: string;
  login: "ok" | "rejected" | "failed";
  /** True when this run logged in (false: stored tokens were still valid and were used). */
  freshLogin: boolean;
  state: UpstreamState;
  server?: { name: string; version: string; protocolVersion: string };
  tools: string[];
  call?: { tool: string; ok: boolean; isError?: boolean; text?: string; error?: string };
  /** What went wrong, in one sentence (never a secret). */
  error?: string;
  /** What to do about it. */
  hint?: string;
  durationMs: number;
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
      const list = await withDeadline(upstream.listTools(), deadline, "tools/list");
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

/** Troubleshooting hint for a failure text (reason, error message and code). */
export function hintFor(text: string, s: Pick<ProbeSummary, "mode">): string {
  const t = text.toLowerCase();
  if (/login_rejected|login was rejected/.test(t)) {
    return "wrong user name or password: check LOXONE_USER / LOXONE_PASSWORD (the Miniserver user, not the Loxone account); the Miniserver may lock the user after repeated failures";
  }
  if (/resource_mismatch|oauth resource/.test(t)) {
    return "the server advertised a token audience that is not this Miniserver: if it is legitimate, add it to allowedResources in config.json; otherwise do not log in there";
  }
  if (/\b429\b|rate.?limit|too many requests/.test(t)) {
    return "connect.loxonecloud.com rate-limits lookups (about 10 per minute per IP address): wait a minute and try again; a running daemon caches the relay entry";
  }
  if (
    /cert_|_cert\b|certificate|self.signed|unable_to_verify|unable_to_get_issuer|err_tls|\btls\b|\bssl\b/.test(
      t,
    )
  ) {
    return "TLS failed: the certificate of the relay/Miniserver was not accepted; check the system clock and that you use the https:// URL of the Loxone relay (no proxy rewriting certificates)";
  }
  if (/authorization_denied|access_denied/.test(t)) {
    return "the Miniserver refused the login for this user: give the user the rights for remote/MCP access in Loxone Config";
  }
  if (/login_form|no login or consent form|cannot log in headlessly/.test(t)) {
    return "the login page could not be filled in without a browser; run with LOXMCP_DEBUG=1 and report the log (it holds no secret)";
  }
  if (/connect does not know|unknown serial/.test(t)) {
    return "connect does not know this serial: check LOXONE_SERIAL (12 hex characters on the Miniserver's label / in Loxone Config)";
  }
  if (/remote connect|without a relay redirect/.test(t)) {
    return "the Miniserver is not reachable through Remote Connect: enable Remote Connect in Loxone Config and check the Miniserver is online";
  }
  if (/answered http (404|405|502|503|504)|plugin|service unavailable|bad gateway/.test(t)) {
    return "the Miniserver's MCP service does not answer on the relay: make sure the MCP plugin/service is enabled and running on the Miniserver (Loxone Config), then try again";
  }
  if (
    /econnrefused|enotfound|eai_again|ehostunreach|etimedout|timed out|timeout|fetch failed|unreachable|unavailable|network/.test(
      t,
    )
  ) {
    return s.mode === "connect"
      ? "cannot reach connect or the relay: check the network, that the Miniserver is online and Remote Connect is enabled"
      : "cannot reach the URL: check it (LOXMCP_UPSTREAM_URL / --url), the network, and that the MCP service is running there";
  }
  return "run with LOXMCP_DEBUG=1 for the details (secrets are never printed)";
}

/** Human-readable summary lines. */
export function formatProbeSummary(s: ProbeSummary): string[] {
  const lines: string[] = [];
  lines.push(`mode:      ${s.mode === "direct" ? "direct URL" : "connect resolution"} (${s.target})`);
  if (s.entry) lines.push(`entry:     ${s.entry}`);
  const ok = s.freshLogin ? "ok (logged in)" : "ok (stored tokens still valid; --fresh logs in again)";
  lines.push(`login:     ${s.login === "ok" ? ok : s.login === "rejected" ? "REJECTED" : "failed"}`);
  if (s.server)
    lines.push(`server:    ${s.server.name} ${s.server.version} (protocol ${s.server.protocolVersion})`);
  if (s.login === "ok") {
    lines.push(`tools:     ${s.tools.length > 0 ? `${s.tools.length}: ${s.tools.join(", ")}` : "none"}`);
  }
  if (s.call) {
    lines.push(`call:      ${s.call.tool} → ${s.call.ok ? "ok" : s.call.isError ? "tool error" : "failed"}`);
    const body = s.call.text ?? s.call.error;
    if (body) for (const l of truncate(body, 600).split("\n")) lines.push(`           ${l}`);
  }
  if (s.error) lines.push(`error:     ${s.error}`);
  if (s.hint) lines.push(`hint:      ${s.hint}`);
  lines.push(`result:    ${s.ok ? "OK" : "FAILED"} (${(s.durationMs / 1000).toFixed(1)} s)`);
  return lines;
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

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

async function withDeadline<T>(p: Promise<T>, deadline: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new UpstreamError("TIMEOUT", `${what} did not answer in time`)),
      Math.max(1, deadline - Date.now()),
    );
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}
