/** `loxmcp audit`: the audit trail of every tool call (who, what, decision, outcome). */
import { type CommandSpec, optBool, optNumber, optString, parseCount } from "../command.js";
import { callDaemon } from "../daemon-client.js";
import { formatLocalTime, isRecord, printable } from "../format.js";

interface Row {
  ts: number;
  client: string;
  clientPid?: number;
  tool: string;
  args: unknown;
  kind: string;
  target?: string;
  controlName?: string;
  command?: string;
  tier?: string;
  decision: string;
  reason?: string;
  outcome: string;
  latencyMs: number;
}

/** A reason as one short line (`--json` keeps it whole; rows from older daemons can be long). */
function short(reason: string, max = 160): string {
  const line = reason.replace(/\s+/g, " ").trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

export const auditCommand: CommandSpec = {
  name: "audit",
  description: "show the audit trail: every tool call with client, decision, outcome and latency",
  options: [
    {
      flags: "--since <when>",
      description: "from this time: ISO date, epoch ms, or a duration like 30m, 2h, 7d",
    },
    { flags: "--client <name>", description: "only this client (name prefix, case-insensitive)" },
    {
      flags: "--denied",
      description: "only refused calls (denied, rate-limited, emergency stop); not held ones (see --held)",
    },
    {
      flags: "--held",
      description: "only calls held for your approval (with --denied: refused and held calls)",
    },
    {
      flags: "-n, --limit <n>",
      description: "at most this many (newest)",
      parse: parseCount,
      defaultValue: 100,
    },
    { flags: "--json", description: "one JSON object per line" },
  ],
  async run(ctx, { opts }) {
    const params: Record<string, unknown> = {};
    const since = optString(opts, "since");
    const client = optString(opts, "client");
    if (since) params.since = since;
    if (client) params.client = client;
    if (optBool(opts, "denied")) params.denied = true;
    if (optBool(opts, "held")) params.held = true;
    params.limit = optNumber(opts, "limit") ?? 100;
    const r = await callDaemon(ctx.paths.socket, "loxmcp/audit", params);
    const events = (isRecord(r) && Array.isArray(r.events) ? r.events : []) as Row[];
    if (optBool(opts, "json")) {
      for (const e of events) ctx.out(JSON.stringify(e));
      return 0;
    }
    if (events.length === 0) {
      ctx.out("no audit events match");
      return 0;
    }
    for (const raw of events) {
      // Everything a client chose (name, tool, arguments in the reason) is shown escaped.
      const e: Row = { ...raw, client: printable(String(raw.client)), tool: printable(String(raw.tool)) };
      if (typeof raw.controlName === "string") e.controlName = printable(raw.controlName);
      if (typeof raw.command === "string") e.command = printable(raw.command);
      if (typeof raw.reason === "string") e.reason = printable(raw.reason);
      const who = e.clientPid !== undefined ? `${e.client}[${e.clientPid}]` : e.client;
      const what = e.controlName
        ? `${e.tool} "${e.controlName}" ${e.command ?? ""}`.trim()
        : `${e.tool}${e.command ? ` ${e.command}` : ""}`;
      const tier = e.tier ? ` ${e.tier}` : "";
      const reason = e.reason ? `  — ${short(e.reason)}` : "";
      const decision = e.decision === "held" ? "held (waiting for you)" : e.decision;
      ctx.out(
        `${formatLocalTime(new Date(e.ts))}  ${who}  ${decision}${tier}  ${what}  → ${e.outcome} ${e.latencyMs}ms${reason}`,
      );
    }
    return 0;
  },
};
