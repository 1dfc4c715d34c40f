/**
 * `loxmcp tools diff|accept`: changes to the Miniserver's tool list are the person's decision.
 * The daemon trusts the first tool list it saw; a new tool, or one whose input schema or
 * annotations changed (e.g. after a firmware update), is held until the person accepts it here.
 */
import { type CommandContext, type CommandSpec, optBool } from "../command.js";
import { callDaemon } from "../daemon-client.js";
import { isRecord } from "../format.js";
import { PIN_STDIN_OPTION, personProof } from "../person.js";

interface Change {
  name: string;
  change: "added" | "changed" | "removed";
  fields?: string[];
  before?: Record<string, unknown>;
  after?: Record<string, unknown>;
}

function changesOf(r: unknown): Change[] {
  return (isRecord(r) && Array.isArray(r.changes) ? r.changes : []) as Change[];
}

function printChanges(ctx: CommandContext, changes: Change[]): void {
  for (const c of changes) {
    if (c.change === "added") {
      ctx.out(`+ new tool  ${c.name}`);
      ctx.out(`    ${JSON.stringify(c.after ?? {})}`);
    } else if (c.change === "removed") {
      ctx.out(`- removed   ${c.name}`);
    } else {
      ctx.out(`~ changed   ${c.name}: ${(c.fields ?? []).join(", ")}`);
      for (const f of c.fields ?? []) {
        ctx.out(`    ${f} before: ${JSON.stringify(c.before?.[f] ?? {})}`);
        ctx.out(`    ${f} now:    ${JSON.stringify(c.after?.[f] ?? {})}`);
      }
    }
  }
}

const json = { flags: "--json", description: "print the daemon's answer as JSON" } as const;

const diff: CommandSpec = {
  name: "diff",
  description: "show how the Miniserver's tool list differs from the one you accepted",
  options: [json],
  async run(ctx, { opts }) {
    const r = await callDaemon(ctx.paths.socket, "loxmcp/tools", { action: "diff" }, { timeoutMs: 30_000 });
    if (optBool(opts, "json")) {
      ctx.out(JSON.stringify(r ?? {}));
      return 0;
    }
    const changes = changesOf(r);
    if (changes.length === 0) {
      ctx.out("the tool list is the one you accepted: nothing is held");
      return 0;
    }
    printChanges(ctx, changes);
    ctx.out("calls to new or changed tools are held; accept them with: loxmcp tools accept");
    return 0;
  },
};

const accept: CommandSpec = {
  name: "accept",
  description: "accept the Miniserver's current tool list (shows the changes first; needs the PIN when set)",
  options: [PIN_STDIN_OPTION, json],
  async run(ctx, { opts }) {
    const d = await callDaemon(ctx.paths.socket, "loxmcp/tools", { action: "diff" }, { timeoutMs: 30_000 });
    const changes = changesOf(d);
    if (changes.length === 0) {
      ctx.out("nothing to accept: the tool list is the one you accepted");
      return 0;
    }
    printChanges(ctx, changes);
    const proof = await personProof(ctx, opts, "tools accept", `Accept these ${changes.length} change(s)?`);
    const digest = isRecord(d) && typeof d.digest === "string" ? d.digest : undefined;
    const r = await callDaemon(
      ctx.paths.socket,
      "loxmcp/tools",
      { action: "accept", ...(digest ? { digest } : {}), ...proof },
      { timeoutMs: 30_000 },
    );
    if (optBool(opts, "json")) ctx.out(JSON.stringify(r ?? {}));
    else
      ctx.out(`accepted ${changesOf(r).length} change(s): AI clients may use these tools within the policy`);
    return 0;
  },
};

export const toolsCommand: CommandSpec = {
  name: "tools",
  description: "changes to the Miniserver's tool list, held until you accept them: diff, accept",
  subcommands: [diff, accept],
};
