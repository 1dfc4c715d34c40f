/** `loxmcp status [--json] [--wait S]`: the daemon's state from `loxmcp/status`; exit 0 only when ready. */

import { dirWritableProblem, readStartError, systemStartHint } from "@loxmcp/common";
import {
  CliError,
  type CommandContext,
  type CommandSpec,
  optBool,
  optNumber,
  parseSeconds,
} from "../command.js";
import { callDaemon, DaemonNotRunningError, delay } from "../daemon-client.js";
import { formatDuration, formatLocalTime, isRecord, toDate } from "../format.js";
import { NO_PROGRESS } from "../progress.js";
import { VERSION } from "../version.js";

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

/** What to do next, per state (one line); `mode` "system": the system daemon (hardened mode). */
export function hintFor(state: string, mode?: unknown): string | undefined {
  switch (state) {
    case "ready":
      return undefined;
    case "down":
      return mode === "system"
        ? `start the system daemon: \`${systemStartHint()}\` (clients never start a per-user daemon in its place)`
        : "start it with `loxmcp start` (or `loxmcp service start`), or run any MCP client's shim";
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
  const s: DaemonStatus = {
    state: "down",
    pid: null,
    reason: "daemon not running",
    clients: [],
    pendingApprovals: [],
    socket: ctx.paths.socket,
    home: ctx.env.LOXMCP_HOME ?? null,
  };
  if (ctx.paths.system) {
    // Hardened mode: the system daemon's files are not ours to read or judge.
    s.mode = "system";
    s.reason = `system daemon not running: ${systemStartHint(ctx.paths.system.platform)}`;
    return s;
  }
  s.mode = "user";
  // Not running because its last start failed (a configuration error …): say why, in its words.
  const failed = readStartError(ctx.paths);
  if (failed) {
    s.reason = `loxmcpd cannot start: ${failed.message}`;
    s.startError = failed;
  } else {
    // A state dir it could not create (a read-only LOXMCP_HOME): no record, but the same reason.
    const blocked = dirWritableProblem(ctx.paths.state);
    if (blocked) {
      s.reason = `loxmcpd cannot start: ${blocked.message}`;
      s.startError = { message: blocked.message };
    }
  }
  return s;
}

/** What to do about a daemon that is down because its last start failed. */
export const START_ERROR_HINT =
  "fix what the reason names (`loxmcp doctor` lists every problem), then `loxmcp start` (MCP clients start it by themselves on their next request)";

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
  if (s.mode === "system")
    row(
      "mode",
      `hardened: the system daemon${typeof s.systemUser === "string" ? `, running as ${s.systemUser}` : ""} (your account cannot read its credentials, tokens or policy)`,
    );
  else if (s.mode === "user")
    row("mode", "per-user: the daemon runs as you (`sudo loxmcp service install --system` hardens it)");
  if (s.reason && s.state !== "ready") row("reason", s.reason);
  if (s.state === "down") {
    const failed = isRecord(s.startError) ? s.startError : undefined;
    if (failed) {
      const problems = Array.isArray(failed.problems) ? failed.problems.filter(isRecord) : [];
      problems.forEach((p, i) => {
        row(i === 0 ? `problems (${problems.length})` : "", String(p.message));
      });
      const at = toDate(failed.at);
      if (at)
        row(
          "last start",
          `${formatLocalTime(at)} (${formatDuration((now - at.getTime()) / 1000)} ago), exit ${String(failed.exitCode)}`,
        );
    }
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
  const pol = isRecord(s.policy) ? s.policy : {};
  const perClient = isRecord(pol.clients)
    ? Object.entries(pol.clients)
        .map(([k, v]) => `${k}=${String(v)}`)
        .join(", ")
    : "";
  row(
    "policy",
    `${typeof pol.mode === "string" ? pol.mode : "(unknown)"}${perClient ? `  (clients: ${perClient})` : ""}`,
  );
  if (isRecord(pol.emergencyStop)) {
    const e = pol.emergencyStop;
    const since = toDate(e.since);
    row(
      "EMERGENCY STOP",
      `active${since ? ` since ${formatLocalTime(since)}` : ""}${typeof e.by === "string" ? ` by ${e.by}` : ""}: writes are blocked; \`loxmcp resume\` lifts it`,
    );
  }
  if (isRecord(pol.structure) && typeof pol.structure.controls === "number") {
    const checked = toDate(pol.structure.checkedAt);
    row(
      "structure",
      `${pol.structure.controls} controls${checked ? ` (checked ${formatDuration((now - checked.getTime()) / 1000)} ago)` : ""}`,
    );
  } else if (typeof pol.structureError === "string") {
    row("structure", `unknown: ${pol.structureError}`);
  }
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
    for (let i = 0; i < c.length; i += 5) row(i === 0 ? "counters" : "", c.slice(i, i + 5).join(" · "));
  }
  const pending = Array.isArray(s.pendingApprovals) ? s.pendingApprovals : [];
  if (pending.length === 0) row("pending approvals", "none");
  pending.forEach((p, i) => {
    row(i === 0 ? `pending approvals` : "", describeApproval(p));
  });
  if (pending.length > 0)
    lines.push(
      "  `loxmcp approve --list` shows their codes; approve one with `loxmcp approve CODE` after checking what it does",
    );
  if (isRecord(pol.pin)) {
    const pin = pol.pin;
    const locked = num(pin.lockedForSec);
    row(
      "approval PIN",
      pin.set === true
        ? `set${locked !== undefined ? ` (attempts locked for ${formatDuration(locked)} after ${String(pin.failures)} wrong PINs)` : ""}`
        : `not set: approving needs a terminal; set one with \`${s.mode === "system" ? "sudo " : ""}loxmcp pin set\``,
    );
  }
  if (Array.isArray(pol.toolChanges) && pol.toolChanges.length > 0) {
    pol.toolChanges.forEach((c, i) => {
      row(i === 0 ? "tool changes" : "", `${String(c)} (held)`);
    });
    lines.push("  review them with `loxmcp tools diff`, then `loxmcp tools accept`");
  }
  for (const l of storageLines(s.storage, now)) row(l[0], l[1]);
  const page = isRecord((s as Record<string, unknown>).page)
    ? ((s as Record<string, unknown>).page as Record<string, unknown>)
    : undefined;
  if (page && typeof page.url === "string") row("page", `${page.url}  (sign in: \`loxmcp open\`)`);
  else if (page && typeof page.error === "string") row("page", `not available: ${page.error}`);
  if (s.socket) row("socket", s.socket);
  return lines;
}

/** The database's health (daemon ≥ audit-before-act): a line only when something is wrong or was repaired. */
function storageLines(storage: unknown, now: number): Array<[string, string]> {
  if (!isRecord(storage)) return [];
  const out: Array<[string, string]> = [];
  if (storage.ok === false) {
    const since = toDate(storage.since);
    out.push([
      "storage",
      `NOT WRITABLE: ${String(storage.error ?? storage.cause ?? "unknown error")}${since ? ` since ${formatLocalTime(since)} (${formatDuration((now - since.getTime()) / 1000)} ago)` : ""}: every command is refused, reads work`,
    ]);
    if (typeof storage.fix === "string") out.push(["", `fix: ${storage.fix}`]);
  }
  const r = storage.recovered;
  if (isRecord(r) && typeof r.from === "string") {
    const at = toDate(r.at);
    out.push([
      "storage",
      `the database was corrupt${at ? ` (found ${formatLocalTime(at)})` : ""}: a fresh one is in use; the old file is kept as ${r.from}`,
    ]);
  }
  return out;
}

function describeApproval(p: unknown): string {
  if (!isRecord(p)) return String(p);
  const parts: string[] = [];
  if (typeof p.code === "string") parts.push(p.code);
  if (typeof p.client === "string") parts.push(p.client);
  if (typeof p.summary === "string") parts.push(p.summary);
  const extra: string[] = [];
  if (typeof p.tool === "string") extra.push(p.tool);
  if (typeof p.expiresInSec === "number") extra.push(`expires in ${formatDuration(p.expiresInSec)}`);
  if (p.approved === true) extra.push("approved, waiting for the repeated call");
  if (extra.length) parts.push(`(${extra.join(", ")})`);
  return parts.join("  ");
}

/**
 * When the running daemon is another version than this CLI — typically a newer tarball was
 * installed while the old daemon kept running — what to do (one line); undefined when they agree.
 */
export function versionHint(s: DaemonStatus, cliVersion = VERSION): string | undefined {
  if (s.state === "down" || typeof s.version !== "string" || s.version === cliVersion) return undefined;
  return `the running daemon is v${s.version}, this loxmcp is v${cliVersion}: run \`loxmcp restart\` to switch the daemon to v${cliVersion}`;
}

/** The progress line of `status --wait`: the state the daemon is in now, and why. */
function waitingFor(s: DaemonStatus, waitSec: number): string {
  const why = s.reason && s.state !== "ready" ? ` (${s.reason})` : "";
  return `waiting ${waitSec}s for loxmcpd to be ready; now ${s.state}${why}`;
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
    const json = optBool(opts, "json");
    let s: DaemonStatus;
    try {
      s = await fetchStatus(ctx);
    } catch (err) {
      // --json promises one object even when the socket cannot be used (permission, timeout)
      if (!json || !(err instanceof CliError)) throw err;
      ctx.out(JSON.stringify({ ...downStatus(ctx), state: "unreachable", reason: err.message }));
      return 1;
    }
    if (wait !== undefined && s.state !== "ready") {
      const deadline = Date.now() + wait * 1000;
      const progress = json ? NO_PROGRESS : ctx.progress();
      try {
        while (s.state !== "ready" && Date.now() < deadline) {
          progress.step(waitingFor(s, wait));
          await delay(200);
          s = await fetchStatus(ctx);
        }
      } finally {
        progress.stop();
      }
    }
    if (json) {
      ctx.out(JSON.stringify(s));
    } else {
      for (const l of renderStatus(s)) ctx.out(l);
      const hint = s.state === "down" && s.startError ? START_ERROR_HINT : hintFor(s.state, s.mode);
      if (hint) ctx.out(`hint: ${hint}`);
      const other = versionHint(s);
      if (other) ctx.out(`hint: ${other}`);
    }
    return s.state === "ready" ? 0 : 1;
  },
};
