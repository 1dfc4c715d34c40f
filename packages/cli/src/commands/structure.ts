/**
 * `loxmcp structure show|diff|refresh`: the house structure snapshot the policy checks
 * every command against, and what changed between the last two snapshots.
 */
import { type CommandSpec, optBool, optString } from "../command.js";
import { callDaemon } from "../daemon-client.js";
import { formatLocalTime, isRecord } from "../format.js";

interface Control {
  uuid: string;
  name: string;
  type: string;
  room: string;
  category: string;
  commands: string[];
  /** Daemons since the tiers were added: the highest tier of its commands, and each command's. */
  tier?: string;
  tierReason?: string;
  commandTiers?: Record<string, string>;
}

/** What each tier means for a command from an AI (docs/policy.md). */
export const TIER_NAMES: Record<string, string> = {
  T1: "T1 comfort",
  T2: "T2 motion",
  T3: "T3 security",
  T4: "T4 never",
};

const TIER_LEGEND =
  "tiers: T1 comfort runs · T2 motion runs, rate-limited, read back · T3 security needs you (in confirm mode) · T4 never via AI";

/** One control's lines: name, type, highest tier, uuid; then its commands grouped by tier. */
function controlLines(c: Control): string[] {
  const head = `  ${c.name}  [${c.type}, ${c.category}]`;
  if (!c.tier) return [`${head}  ${c.uuid}  ${c.commands.join(" ")}`];
  const lines = [`${head}  ${TIER_NAMES[c.tier] ?? c.tier}  ${c.uuid}`];
  const byTier = new Map<string, string[]>();
  for (const [command, tier] of Object.entries(c.commandTiers ?? {})) {
    byTier.set(tier, [...(byTier.get(tier) ?? []), command]);
  }
  if (byTier.size === 0) lines.push(`      no commands known (${c.tierReason ?? "nothing can be sent"})`);
  else
    lines.push(
      `      ${[...byTier]
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([tier, cmds]) => `${tier}: ${cmds.join(" ")}`)
        .join("  ·  ")}`,
    );
  return lines;
}

interface Diff {
  added: Control[];
  removed: Control[];
  renamed: Array<{ uuid: string; from: string; to: string; room: string }>;
  typeChanged: Array<{ uuid: string; name: string; from: string; to: string }>;
  moved: Array<{ uuid: string; name: string; from: string; to: string }>;
  commandsChanged: Array<{ uuid: string; name: string; added: string[]; removed: string[] }>;
}

function printDiff(out: (l: string) => void, d: Diff): void {
  const n =
    d.added.length +
    d.removed.length +
    d.renamed.length +
    d.typeChanged.length +
    d.moved.length +
    d.commandsChanged.length;
  if (n === 0) {
    out("no changes");
    return;
  }
  for (const c of d.added) out(`+ added    ${c.name} (${c.type}, ${c.room})  ${c.uuid}`);
  for (const c of d.removed) out(`- removed  ${c.name} (${c.type}, ${c.room})  ${c.uuid}`);
  for (const c of d.renamed) out(`~ renamed  "${c.from}" → "${c.to}" (${c.room})  ${c.uuid}`);
  for (const c of d.typeChanged) out(`~ type     ${c.name}: ${c.from} → ${c.to}  ${c.uuid}`);
  for (const c of d.moved) out(`~ moved    ${c.name}: ${c.from} → ${c.to}  ${c.uuid}`);
  for (const c of d.commandsChanged) {
    out(`~ commands ${c.name}: +[${c.added.join(", ")}] -[${c.removed.join(", ")}]  ${c.uuid}`);
  }
}

const json = { flags: "--json", description: "print the daemon's answer as JSON" } as const;

const show: CommandSpec = {
  name: "show",
  description: "list the controls of the latest snapshot by room, with the tier of each command",
  options: [
    { flags: "--room <room>", description: "only this room" },
    { flags: "--type <type>", description: "only this control type (e.g. Jalousie)" },
    json,
  ],
  async run(ctx, { opts }) {
    const params: Record<string, unknown> = { action: "show" };
    const room = optString(opts, "room");
    const type = optString(opts, "type");
    if (room) params.room = room;
    if (type) params.type = type;
    const r = await callDaemon(ctx.paths.socket, "loxmcp/structure", params);
    if (optBool(opts, "json")) {
      ctx.out(JSON.stringify(r ?? {}));
      return 0;
    }
    const controls = (isRecord(r) && Array.isArray(r.controls) ? r.controls : []) as Control[];
    const snap = isRecord(r) && isRecord(r.snapshot) ? r.snapshot : {};
    ctx.out(
      `snapshot #${String(snap.id)} (${typeof snap.checkedAt === "number" ? `checked ${formatLocalTime(new Date(snap.checkedAt))}` : "?"}), ${controls.length} control(s)`,
    );
    const byRoom = new Map<string, Control[]>();
    for (const c of controls) byRoom.set(c.room, [...(byRoom.get(c.room) ?? []), c]);
    for (const [roomName, list] of [...byRoom].sort(([a], [b]) => a.localeCompare(b))) {
      ctx.out(`${roomName || "(no room)"}`);
      for (const c of list) for (const l of controlLines(c)) ctx.out(l);
    }
    if (controls.some((c) => c.tier)) ctx.out(TIER_LEGEND);
    return 0;
  },
};

const diff: CommandSpec = {
  name: "diff",
  description: "what changed between the last two snapshots (added / removed / renamed controls)",
  options: [json],
  async run(ctx, { opts }) {
    const r = await callDaemon(ctx.paths.socket, "loxmcp/structure", { action: "diff" });
    if (optBool(opts, "json")) ctx.out(JSON.stringify(r ?? {}));
    else printDiff(ctx.out, r as Diff);
    return 0;
  },
};

const refresh: CommandSpec = {
  name: "refresh",
  description: "read the house structure from the Miniserver now",
  options: [json],
  async run(ctx, { opts }) {
    const r = await callDaemon(
      ctx.paths.socket,
      "loxmcp/structure",
      { action: "refresh" },
      { timeoutMs: 120_000 },
    );
    if (optBool(opts, "json")) {
      ctx.out(JSON.stringify(r ?? {}));
      return 0;
    }
    const snap = isRecord(r) && isRecord(r.snapshot) ? r.snapshot : {};
    const changed = isRecord(r) && r.changed === true;
    ctx.out(
      `snapshot #${String(snap.id)}: ${String(snap.controls)} control(s), ${changed ? "changed" : "unchanged"}`,
    );
    if (isRecord(r) && isRecord(r.diff)) printDiff(ctx.out, r.diff as unknown as Diff);
    return 0;
  },
};

export const structureCommand: CommandSpec = {
  name: "structure",
  description: "the house structure snapshot commands are checked against: show, diff, refresh",
  subcommands: [show, diff, refresh],
};
