/**
 * What `loxmcp login-check` reports (login-check.ts runs the check): the summary, the
 * troubleshooting hint for a failure, and the summary as lines for a person.
 */
import type { UpstreamState } from "./contracts.js";

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

export function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
