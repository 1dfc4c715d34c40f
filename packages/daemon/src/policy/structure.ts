/**
 * House structure: fetched through the upstream's own tools (find-all, then describe per control
 * when the list lacks type or commands), normalised, hashed, diffed. Tool names and result shapes
 * vary with firmware, so the parsing is deliberately lenient: it looks for objects that carry a
 * control uuid, in structuredContent or in JSON text content.
 */
import { createHash } from "node:crypto";
import type { CallToolResult } from "../contracts.js";
import type { ToolCatalog } from "./classify.js";
import { canonicalJson } from "./classify.js";
import type { SnapshotControl } from "./types.js";
import { isUuid } from "./validate.js";

export type CallTool = (name: string, args: Record<string, unknown>) => Promise<CallToolResult>;

export class StructureError extends Error {
  readonly code = "STRUCTURE_UNAVAILABLE";
  constructor(message: string) {
    super(message);
    this.name = "StructureError";
  }
}

/** Parses every JSON payload in a tool result (structuredContent and JSON text items). */
export function resultPayloads(res: CallToolResult): unknown[] {
  const out: unknown[] = [];
  if (res.structuredContent) out.push(res.structuredContent);
  for (const item of res.content ?? []) {
    if (item.type === "text" && typeof item.text === "string") {
      const t = item.text.trim();
      if (t.startsWith("{") || t.startsWith("[")) {
        try {
          out.push(JSON.parse(t));
        } catch {
          // not JSON: ignore
        }
      }
    }
  }
  return out;
}

function str(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object") {
    const o = v as Record<string, unknown>;
    if (typeof o.name === "string") return o.name;
  }
  return undefined;
}

function uuidOf(o: Record<string, unknown>): string | undefined {
  for (const k of ["uuid", "uuidAction", "controlUuid", "control_uuid", "id", "uuid_action"]) {
    const v = o[k];
    if (typeof v === "string" && isUuid(v)) return v;
  }
  return undefined;
}

function commandsOf(o: Record<string, unknown>): string[] | undefined {
  for (const k of ["commands", "allowedCommands", "allowed_commands", "supportedCommands", "actions"]) {
    const v = o[k];
    if (Array.isArray(v)) {
      return v
        .map((c) =>
          typeof c === "string" ? c : (str((c as Record<string, unknown>)?.command) ?? str(c) ?? undefined),
        )
        .filter((c): c is string => typeof c === "string");
    }
  }
  return undefined;
}

export interface PartialControl {
  uuid: string;
  name?: string;
  type?: string;
  room?: string;
  category?: string;
  commands?: string[];
  states?: Record<string, unknown>;
}

/** Finds control-like objects (anything with a uuid) anywhere in a payload. */
export function extractControls(payload: unknown, depth = 0, out: PartialControl[] = []): PartialControl[] {
  if (depth > 6 || payload === null || typeof payload !== "object") return out;
  if (Array.isArray(payload)) {
    for (const x of payload) extractControls(x, depth + 1, out);
    return out;
  }
  const o = payload as Record<string, unknown>;
  const uuid = uuidOf(o);
  if (uuid) {
    const c: PartialControl = { uuid };
    const name = str(o.name) ?? str(o.title);
    const type = str(o.type) ?? str(o.controlType) ?? str(o.control_type);
    const room = str(o.room) ?? str(o.roomName) ?? str(o.room_name);
    const category = str(o.category) ?? str(o.cat) ?? str(o.categoryName) ?? str(o.category_name);
    const commands = commandsOf(o);
    if (name !== undefined) c.name = name;
    if (type !== undefined) c.type = type;
    if (room !== undefined) c.room = room;
    if (category !== undefined) c.category = category;
    if (commands !== undefined) c.commands = commands;
    const states = o.states ?? o.state ?? o.values;
    if (states && typeof states === "object" && !Array.isArray(states))
      c.states = states as Record<string, unknown>;
    out.push(c);
    // Sub-controls are listed inside their parent.
    for (const k of ["subControls", "subcontrols", "children"]) {
      const sub = o[k];
      if (sub && typeof sub === "object") {
        for (const s of Array.isArray(sub) ? sub : Object.values(sub)) extractControls(s, depth + 1, out);
      }
    }
    return out;
  }
  for (const v of Object.values(o)) extractControls(v, depth + 1, out);
  return out;
}

function textOf(res: CallToolResult): string {
  return (res.content ?? [])
    .map((c) => (typeof c.text === "string" ? c.text : ""))
    .join(" ")
    .slice(0, 300);
}

/** Arguments for a "find everything" call: empty, or "" / "*" for required string arguments. */
function findAllArgs(catalog: ToolCatalog, wildcard: string): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  const find = catalog.find;
  if (!find) return args;
  for (const r of find.requiredArgs) {
    const p = find.properties[r] ?? {};
    if (p.type === "number" || p.type === "integer") args[r] = 1000;
    else if (p.type === "boolean") args[r] = true;
    else args[r] = wildcard;
  }
  return args;
}

async function mapLimit<T, R>(items: T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T);
    }
  });
  await Promise.all(workers);
  return out;
}

export interface FetchedStructure {
  controls: SnapshotControl[];
  /** Last known state per uuid (not part of the hash). */
  states: Map<string, Record<string, unknown>>;
}

/** Fetches the house structure through the discovered tools. */
export async function fetchStructure(
  catalog: ToolCatalog,
  call: CallTool,
  concurrency = 4,
  /** Controls already described: same uuid and type ⇒ reuse their commands instead of describing again. */
  known?: ReadonlyMap<string, SnapshotControl>,
): Promise<FetchedStructure> {
  if (!catalog.find) {
    throw new StructureError("the relay offers no tool to list controls (find/search); writes stay refused");
  }
  let found: PartialControl[] = [];
  let lastError = "";
  for (const wildcard of ["", "*"]) {
    const res = await call(catalog.find.name, findAllArgs(catalog, wildcard));
    if (res.isError) {
      lastError = textOf(res);
      continue;
    }
    found = resultPayloads(res).flatMap((p) => extractControls(p));
    if (found.length > 0 || catalog.find.requiredArgs.length === 0) break;
  }
  if (found.length === 0) {
    throw new StructureError(
      `listing controls with ${catalog.find.name} returned nothing usable${lastError ? `: ${lastError}` : ""}`,
    );
  }
  const byUuid = new Map<string, PartialControl>();
  for (const c of found) {
    const key = c.uuid.toLowerCase();
    byUuid.set(key, { ...byUuid.get(key), ...c });
  }
  const reused = new Set<string>();
  if (known) {
    for (const c of byUuid.values()) {
      const k = known.get(c.uuid.toLowerCase());
      if (c.type && (!c.commands || c.commands.length === 0) && k && k.type === c.type) {
        c.commands = [...k.commands];
        reused.add(c.uuid.toLowerCase());
      }
    }
  }
  const describe = catalog.describe;
  const incomplete = [...byUuid.values()].filter(
    (c) => !reused.has(c.uuid.toLowerCase()) && (!c.type || !c.commands || c.commands.length === 0),
  );
  if (describe?.uuidArg && incomplete.length > 0) {
    const uuidArg = describe.uuidArg;
    await mapLimit(incomplete, concurrency, async (c) => {
      try {
        const res = await call(describe.name, { [uuidArg]: c.uuid });
        if (res.isError) return;
        const detail = resultPayloads(res)
          .flatMap((p) => extractControls(p))
          .find((d) => d.uuid.toLowerCase() === c.uuid.toLowerCase());
        if (detail) byUuid.set(c.uuid.toLowerCase(), mergeDefined(c, detail));
      } catch {
        // one control that cannot be described stays with what the list said
      }
    });
  }
  const controls: SnapshotControl[] = [];
  const states = new Map<string, Record<string, unknown>>();
  for (const c of byUuid.values()) {
    controls.push({
      uuid: c.uuid,
      name: c.name ?? "",
      type: c.type ?? "Unknown",
      room: c.room ?? "",
      category: c.category ?? "",
      commands: c.commands ?? [],
    });
    if (c.states) states.set(c.uuid.toLowerCase(), c.states);
  }
  controls.sort((a, b) => a.uuid.localeCompare(b.uuid));
  return { controls, states };
}

function mergeDefined(a: PartialControl, b: PartialControl): PartialControl {
  const out: PartialControl = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (v !== undefined && !(Array.isArray(v) && v.length === 0))
      (out as unknown as Record<string, unknown>)[k] = v;
  }
  return out;
}

export function structureHash(controls: SnapshotControl[]): string {
  return createHash("sha256").update(canonicalJson(controls)).digest("hex");
}

export interface StructureDiff {
  from?: { id: number; createdAt: number; hash: string };
  to?: { id: number; createdAt: number; hash: string };
  added: SnapshotControl[];
  removed: SnapshotControl[];
  renamed: Array<{ uuid: string; from: string; to: string; room: string; type: string }>;
  typeChanged: Array<{ uuid: string; name: string; from: string; to: string }>;
  moved: Array<{ uuid: string; name: string; from: string; to: string }>;
  commandsChanged: Array<{ uuid: string; name: string; added: string[]; removed: string[] }>;
}

export function diffControls(
  before: SnapshotControl[],
  after: SnapshotControl[],
): Omit<StructureDiff, "from" | "to"> {
  const a = new Map(before.map((c) => [c.uuid.toLowerCase(), c]));
  const b = new Map(after.map((c) => [c.uuid.toLowerCase(), c]));
  const diff: Omit<StructureDiff, "from" | "to"> = {
    added: [],
    removed: [],
    renamed: [],
    typeChanged: [],
    moved: [],
    commandsChanged: [],
  };
  for (const [k, c] of b) {
    const old = a.get(k);
    if (!old) {
      diff.added.push(c);
      continue;
    }
    if (old.name !== c.name)
      diff.renamed.push({ uuid: c.uuid, from: old.name, to: c.name, room: c.room, type: c.type });
    if (old.type !== c.type)
      diff.typeChanged.push({ uuid: c.uuid, name: c.name, from: old.type, to: c.type });
    if (old.room !== c.room) diff.moved.push({ uuid: c.uuid, name: c.name, from: old.room, to: c.room });
    const addedCmds = c.commands.filter((x) => !old.commands.includes(x));
    const removedCmds = old.commands.filter((x) => !c.commands.includes(x));
    if (addedCmds.length || removedCmds.length) {
      diff.commandsChanged.push({ uuid: c.uuid, name: c.name, added: addedCmds, removed: removedCmds });
    }
  }
  for (const [k, c] of a) if (!b.has(k)) diff.removed.push(c);
  return diff;
}
