/** `loxmcp status [--json] [--wait S]`: the daemon's state from `loxmcp/status`; exit 0 only when ready. */
import { type CommandContext, type CommandSpec, optBool, optNumber, parseSeconds } from "../command.js";
import { callDaemon, DaemonNotRunningError, delay } from "../daemon-client.js";
import { formatDuration, formatLocalTime, isRecord, toDate } from "../format.js";

/** The `loxmcp/status` result (TEAM-BRIEF); parsed loosely: a newer daemon may add fields. */
export interface DaemonStatus {
  pid: number | null;
  version?: string;
  state: string;
  reason?: string;
  entry?: string;
  uptimeSec?: number;
  tokenExpiresInSec?: number;
  sessionAgeSec?: number;
  lastPingAgoSec?: number;
  policy?: { mode?: string; [k: string]: unknown };
  clients: Array<Record<string, unknown>>;
  counters?: Record<string, unknown>;
  pendingApprovals?: unknown[];
  socket?: string;
  home?: string | null;
  [k: string]: unknown;
}

/** What to do next, per state (one line). */
export function hintFor(state: string): string | undefined {
  switch (state) {
    case "ready":
      return undefined;
    case "down":
      return "start it with `loxmcp start` (or `loxmcp service start`), or run any MCP client's shim";
    case "auth_failed":
      return "check LOXONE_USER/LOXONE_PASSWORD (`loxmcp init`) then run `loxmcp relogin`";
    case "degraded":
      return "the relay is not reachable right now; the daemon keeps retrying — see `loxmcp logs -n 50` and `loxmcp doctor`";
    case "stopped":
      return "the daemon is shutting down; start it again with `loxmcp start`";
    default:
      return "the daemon is still connecting; run `loxmcp status --wait 30` to wait for it";
  }
}

/** Fetches status; a daemon that is not running yields `{ state: "down", pid: null, … }`. */
export async function fetchStatus(ctx: CommandContext, timeoutMs = 5_000): Promise<DaemonStatus> {
  try {
    const r = await callDaemon(ctx.paths.socket, "loxmcp/status", {}, { timeoutMs });
    if (!isRecord(r) || typeof r.state !== "string") {
      return {
        state: "unknown",
        pid: null,
        clients: [],
        reason: "the daemon answered status with an unexpected shape",
      };
    }
    return { ...r, clients: Array.isArray(r.clients) ? r.clients : [] } as DaemonStatus;
  } catch (err) {
    if (err instanceof DaemonNotRunningError) return downStatus(ctx);
    throw err;
  }
}

export function downStatus(ctx: CommandContext): DaemonStatus {
  return {
    state: "down",
    pid: null,
    reason: "daemon not running",
    clients: [],
    pendingApprovals: [],
    socket: ctx.paths.socket,
    home: ctx.env.LOXMCP_HOME ?? null,
  };
}

function num(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) ? v : undefined;
}

export function renderStatus(s: DaemonStatus, now = Date.now()): string[] {
  const lines: string[] = [];
  const head: string[] = [];
  if (s.pid) head.push(`pid ${s.pid}`);
  if (s.version) head.push(`v${s.version}`);
  const up = num(s.uptimeSec);
  if (up !== undefined) head.push(`up ${formatDuration(up)}`);
  lines.push(`loxmcpd: ${s.state}${head.length ? `  (${head.join(", ")})` : ""}`);
  const row = (k: string, v: string) => lines.push(`  ${k.padEnd(18)}${v}`);
  if (s.reason && s.state !== "ready") row("reason", s.reason);
  if (s.state === "down") {
    if (s.socket) row("socket", s.socket);
    return lines;
  }
  row("relay entry", s.entry ?? "(not resolved yet)");
  const tok = num(s.tokenExpiresInSec);
  row(
    "token expires",
    tok === undefined
      ? "(no token yet)"
      : tok > 0
        ? `in ${formatDuration(tok)}`
        : `expired ${formatDuration(-tok)} ago`,
  );
  const age = num(s.sessionAgeSec);
  row("session age", age === undefined ? "(no session)" : formatDuration(age));
  const ping = num(s.lastPingAgoSec);
  row("last ping", ping === undefined ? "(none yet)" : `${formatDuration(ping)} ago`);
  row("policy", typeof s.policy?.mode === "string" ? s.policy.mode : "(unknown)");
  if (s.clients.length === 0) row("clients", "none");
  s.clients.forEach((c, i) => {
    const name = typeof c.name === "string" && c.name ? c.name : "(unnamed)";
    const parts = [name + (typeof c.version === "string" ? ` ${c.version}` : "")];
    if (typeof c.pid === "number") parts.push(`pid ${c.pid}`);
    const since = toDate(c.since ?? c.connectedAt);
    if (since)
      parts.push(`since ${formatLocalTime(since)} (${formatDuration((now - since.getTime()) / 1000)} ago)`);
    row(i === 0 ? `clients (${s.clients.length})` : "", parts.join("  "));
  });
  if (isRecord(s.counters)) {
    const c = Object.entries(s.counters)
      .filter(([, v]) => typeof v === "number" || typeof v === "string")
      .map(([k, v]) => `${k} ${v}`);
    if (c.length) row("counters", c.join(" · "));
  }
  const pending = Array.isArray(s.pendingApprovals) ? s.pendingApprovals : [];
  if (pending.length === 0) row("pending approvals", "none");
  pending.forEach((p, i) => {
    row(i === 0 ? `pending approvals` : "", describeApproval(p));
  });
  if (pending.length > 0) lines.push("  approve one with `loxmcp approve CODE` after checking what it does");
  if (s.socket) row("socket", s.socket);
  return lines;
}

function describeApproval(p: unknown): string {
  if (!isRecord(p)) return String(p);
  const code = typeof p.code === "string" ? p.code : "?";
  const rest = Object.entries(p)
    .filter(([k, v]) => k !== "code" && (typeof v === "string" || typeof v === "number"))
    .map(([k, v]) => `${k}=${v}`);
  return [code, ...rest].join("  ");
}

export const statusCommand: CommandSpec = {
  name: "status",
  description: "show the daemon's state, relay, token expiry, clients; exit 0 only when ready",
  options: [
    { flags: "--json", description: "print one JSON object" },
    {
      flags: "--wait <seconds>",
      description: "wait up to this long for the state to become ready",
      parse: parseSeconds,
    },
  ],
  async run(ctx, { opts }) {
    const wait = optNumber(opts, "wait");
    let s = await fetchStatus(ctx);
    if (wait !== undefined) {
      const deadline = Date.now() + wait * 1000;
      while (s.state !== "ready" && Date.now() < deadline) {
        await delay(200);
        s = await fetchStatus(ctx);
      }
    }
    if (optBool(opts, "json")) {
      ctx.out(JSON.stringify(s));
    } else {
      for (const l of renderStatus(s)) ctx.out(l);
      const hint = hintFor(s.state);
      if (hint) ctx.out(`hint: ${hint}`);
    }
    return s.state === "ready" ? 0 : 1;
  },
};
