/**
 * Tool changes are the person's decision. The upstream catalogue is fingerprinted per tool (name,
 * input schema and annotations; titles, descriptions and examples are wording and do not count).
 * The first catalogue the daemon ever sees is recorded as trusted. Afterwards a tool that is new
 * or whose fingerprint changed is held: calls to it are refused until the person accepts the
 * change (`loxmcp tools accept`, with the PIN). The policy classifies tools by the trusted
 * definitions, so a firmware update that marks a write tool read-only cannot slip past the tiers,
 * and the daemon's own calls (emergency stop, structure reads, read-back) keep working.
 */
import { createHash } from "node:crypto";
import type { TrustedToolStore } from "../store/tools.js";
import { canonicalJson } from "./classify.js";

export interface ToolChange {
  name: string;
  change: "added" | "changed" | "removed";
  /** For "changed": which parts differ (inputSchema, annotations). */
  fields?: string[];
  /** The trusted definition (changed, removed). */
  before?: Record<string, unknown>;
  /** The upstream's definition now (added, changed). */
  after?: Record<string, unknown>;
}

export interface ToolReview {
  /** True when this catalogue was the first one seen and has just been recorded as trusted. */
  recordedFirst: boolean;
  changes: ToolChange[];
  /** The list to classify by: trusted definitions; new tools left out; removed tools gone. */
  effective: Array<Record<string, unknown>>;
}

const WORDING = new Set(["description", "title", "examples", "$comment"]);

/** The parts of a tool that matter for safety, without wording. */
export function toolEssence(tool: Record<string, unknown>): Record<string, unknown> {
  return {
    name: tool.name,
    inputSchema: stripWording(tool.inputSchema ?? {}),
    annotations: stripWording(tool.annotations ?? {}),
  };
}

export function toolFingerprint(tool: Record<string, unknown>): string {
  return createHash("sha256")
    .update(canonicalJson(toolEssence(tool)))
    .digest("hex");
}

function stripWording(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(stripWording);
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (!WORDING.has(k)) out[k] = stripWording(x);
    }
    return out;
  }
  return v;
}

export class ToolTrust {
  private pending: ToolChange[] = [];

  constructor(
    private readonly store: TrustedToolStore,
    private readonly now: () => number = Date.now,
  ) {}

  /** Compares the upstream's list with the trusted catalogue (recording the very first one). */
  review(tools: Array<Record<string, unknown>>): ToolReview {
    const named = tools.filter((t) => typeof t.name === "string" && t.name !== "");
    const trusted = this.store.all();
    if (trusted.size === 0) {
      this.store.replace(
        named.map((t) => ({ name: t.name as string, fingerprint: toolFingerprint(t), tool: t })),
        this.now(),
      );
      this.pending = [];
      return { recordedFirst: true, changes: [], effective: named };
    }
    const changes: ToolChange[] = [];
    const effective: Array<Record<string, unknown>> = [];
    const seen = new Set<string>();
    for (const t of named) {
      const name = t.name as string;
      seen.add(name);
      const before = trusted.get(name);
      if (!before) {
        changes.push({ name, change: "added", after: toolEssence(t) });
        continue;
      }
      if (before.fingerprint === toolFingerprint(t)) {
        effective.push(t);
        continue;
      }
      const a = toolEssence(before.tool);
      const b = toolEssence(t);
      const fields = ["inputSchema", "annotations"].filter(
        (k) => canonicalJson(a[k]) !== canonicalJson(b[k]),
      );
      changes.push({ name, change: "changed", fields, before: a, after: b });
      effective.push(before.tool);
    }
    for (const [name, t] of trusted) {
      if (!seen.has(name)) changes.push({ name, change: "removed", before: toolEssence(t.tool) });
    }
    this.pending = changes;
    return { recordedFirst: false, changes, effective };
  }

  /** The change that holds calls to `name` (new or changed tools), if any. */
  held(name: string): ToolChange | undefined {
    return this.pending.find((c) => c.name === name && c.change !== "removed");
  }

  /** Changes found by the last review. */
  changes(): ToolChange[] {
    return [...this.pending];
  }

  /** Digest of the pending changes: what the person saw in `tools diff` is what `accept` takes. */
  digest(): string {
    return createHash("sha256").update(canonicalJson(this.pending)).digest("hex").slice(0, 16);
  }

  /** The person accepts the upstream's current catalogue as trusted. Returns how many changes it took. */
  accept(tools: Array<Record<string, unknown>>): number {
    const n = this.pending.length;
    const named = tools.filter((t) => typeof t.name === "string" && t.name !== "");
    this.store.replace(
      named.map((t) => ({ name: t.name as string, fingerprint: toolFingerprint(t), tool: t })),
      this.now(),
    );
    this.pending = [];
    return n;
  }
}

/** One line per change, for messages and the CLI. */
export function describeChange(c: ToolChange): string {
  if (c.change === "added") return `new tool ${c.name}`;
  if (c.change === "removed") return `tool ${c.name} was removed`;
  return `tool ${c.name} changed its ${(c.fields ?? []).join(" and ") || "definition"}`;
}
