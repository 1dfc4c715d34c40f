import { z } from "zod";
import { SimulatorOptionsError } from "./errors.js";
import type { AddedTool, ExtraInputProperty, ToolAnnotations, ToolCatalogChange, ToolKey } from "./types.js";

/** Built-in tools in tools/list order. */
export const TOOL_KEYS: ToolKey[] = [
  "control_find",
  "control_describe",
  "control_command",
  "system_status",
  "statistics",
  "weather_forecast",
];

export type Shape = Record<string, z.ZodType>;

interface Builtin {
  title: string;
  description: string;
  shape: Shape;
  write: boolean;
}

/** The original catalogue (what a Miniserver without any change lists). */
const BUILTIN: Record<ToolKey, Builtin> = {
  control_find: {
    title: "Find controls",
    description:
      "Lists controls of the house, optionally filtered by a name query, room, type or category. Returns uuid, name, type, room, category.",
    shape: {
      query: z.string().optional().describe("Case-insensitive substring of the control name"),
      room: z.string().optional(),
      type: z.string().optional(),
      category: z.string().optional(),
    },
    write: false,
  },
  control_describe: {
    title: "Describe a control",
    description: "Returns the current states of a control and the commands it accepts ({n} = number).",
    shape: { uuid: z.string().describe("Control UUID, e.g. 0b734138-037d-034e-ffff403fb0c34b9e") },
    write: false,
  },
  control_command: {
    title: "Send a command to a control",
    description:
      "Executes a command on a control (e.g. on, off, FullUp, manualPosition/50). Use control_describe for the allowed commands.",
    shape: { uuid: z.string(), command: z.string() },
    write: true,
  },
  system_status: {
    title: "System status",
    description: "Miniserver health: firmware, uptime, load, memory.",
    shape: {},
    write: false,
  },
  statistics: {
    title: "Statistics",
    description: "Energy and usage statistics of the house.",
    shape: {},
    write: false,
  },
  weather_forecast: {
    title: "Weather forecast",
    description: "Weather forecast for the next days at the house.",
    shape: {},
    write: false,
  },
};

/** Input of an added write tool: the same as control_command's. */
const WRITE_SHAPE: Shape = { uuid: z.string(), command: z.string() };

/** One tool as it is listed right now. */
export interface ToolSpec {
  name: string;
  title: string | undefined;
  description: string | undefined;
  shape: Shape;
  annotations: ToolAnnotations | undefined;
  /** false: registered but taken off the list (built-ins only). */
  enabled: boolean;
  write: boolean;
  /** Answer of an added read tool. */
  text: string;
}

/**
 * The MCP tool catalogue shared by every session: the built-ins with the accumulated changes,
 * then the added tools. `version` grows with every change so sessions can tell they are behind.
 */
export class ToolCatalog {
  version = 0;
  private readonly annotations = new Map<ToolKey, ToolAnnotations | null>();
  private readonly inputProperties = new Map<ToolKey, Record<string, ExtraInputProperty>>();
  private readonly descriptions = new Map<ToolKey, string>();
  private readonly removed = new Set<ToolKey>();
  private readonly added = new Map<string, AddedTool>();

  constructor(
    private readonly names: Record<ToolKey, string>,
    private readonly withAnnotations: boolean,
  ) {}

  /** Validates the whole change first (throws SimulatorOptionsError, nothing applied), then applies it. */
  change(input: unknown): void {
    const c = this.parse(input);
    for (const t of c.add ?? []) this.added.set(t.name, t);
    for (const [k, a] of entries(c.annotations)) this.annotations.set(k, a);
    for (const [k, props] of entries(c.inputProperties))
      this.inputProperties.set(k, { ...this.inputProperties.get(k), ...props });
    for (const [k, d] of entries(c.descriptions)) this.descriptions.set(k, d);
    for (const k of c.remove ?? []) this.removed.add(k);
    this.version += 1;
  }

  reset(): void {
    this.annotations.clear();
    this.inputProperties.clear();
    this.descriptions.clear();
    this.removed.clear();
    this.added.clear();
    this.version += 1;
  }

  builtin(key: ToolKey): ToolSpec {
    const base = BUILTIN[key];
    const extra = this.inputProperties.get(key);
    const ann = this.annotations.get(key);
    return {
      name: this.names[key],
      title: base.title,
      description: this.descriptions.get(key) ?? base.description,
      shape: extra ? { ...base.shape, ...extraShape(extra) } : base.shape,
      annotations: ann === undefined ? this.defaultAnnotations(base.write) : (ann ?? undefined),
      enabled: !this.removed.has(key),
      write: base.write,
      text: "",
    };
  }

  addedTools(): ToolSpec[] {
    return [...this.added.values()].map((t) => ({
      name: t.name,
      title: t.title,
      description: t.description,
      shape: t.write ? WRITE_SHAPE : {},
      annotations:
        t.annotations === undefined
          ? this.defaultAnnotations(t.write === true)
          : (t.annotations ?? undefined),
      enabled: true,
      write: t.write === true,
      text: t.text ?? JSON.stringify({ tool: t.name, ok: true }),
    }));
  }

  /** Names as tools/list shows them, in its order. */
  listed(): string[] {
    return [...TOOL_KEYS.filter((k) => !this.removed.has(k)).map((k) => this.names[k]), ...this.added.keys()];
  }

  private defaultAnnotations(write: boolean): ToolAnnotations | undefined {
    if (!this.withAnnotations) return undefined;
    return write ? { readOnlyHint: false, destructiveHint: true } : { readOnlyHint: true };
  }

  /** Checks a change as it may come from JSON; returns a copy the caller cannot mutate later. */
  private parse(input: unknown): ToolCatalogChange {
    const c = object(input, "the tool change", [
      "add",
      "annotations",
      "inputProperties",
      "descriptions",
      "remove",
    ]);
    const out: ToolCatalogChange = {};
    if (c.add !== undefined) {
      if (!Array.isArray(c.add)) bad("add must be an array of tools");
      const builtinNames = new Set(Object.values(this.names));
      const seen = new Set<string>();
      out.add = c.add.map((raw, i) => {
        const t = object(raw, `add[${i}]`, ["name", "title", "description", "annotations", "write", "text"]);
        const name = t.name;
        if (typeof name !== "string" || !/^[A-Za-z0-9_.-]{1,128}$/.test(name))
          bad(`add[${i}].name must be 1-128 letters, digits, "_", "-" or "."`);
        if (builtinNames.has(name))
          bad(`add[${i}].name "${name}" is a built-in tool; change it by its ToolKey`);
        if (seen.has(name)) bad(`add names "${name}" twice`);
        seen.add(name);
        const tool: AddedTool = { name };
        for (const f of ["title", "description", "text"] as const) {
          const v = t[f];
          if (v === undefined) continue;
          if (typeof v !== "string") bad(`add[${i}].${f} must be a string`);
          tool[f] = v;
        }
        if (t.write !== undefined) {
          if (typeof t.write !== "boolean") bad(`add[${i}].write must be a boolean`);
          tool.write = t.write;
        }
        if (t.annotations !== undefined)
          tool.annotations = annotations(t.annotations, `add[${i}].annotations`);
        return tool;
      });
    }
    if (c.annotations !== undefined) {
      const a = byKey(c.annotations, "annotations");
      out.annotations = Object.fromEntries(
        Object.entries(a).map(([k, v]) => [k, annotations(v, `annotations.${k}`)]),
      );
    }
    if (c.inputProperties !== undefined) {
      const byTool = byKey(c.inputProperties, "inputProperties");
      out.inputProperties = Object.fromEntries(
        Object.entries(byTool).map(([k, rawProps]) => {
          const props = object(rawProps, `inputProperties.${k}`);
          const known = BUILTIN[k as ToolKey].shape;
          const parsed: Record<string, ExtraInputProperty> = {};
          for (const [name, rawProp] of Object.entries(props)) {
            const where = `inputProperties.${k}.${name}`;
            if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(name)) bad(`${where}: not a valid property name`);
            if (name in known) bad(`${where}: ${k} already has a property "${name}"`);
            const p = object(rawProp, where, ["type", "description"]);
            const types = ["string", "number", "integer", "boolean"];
            if (typeof p.type !== "string" || !types.includes(p.type))
              bad(`${where}.type must be one of ${types.join(", ")}`);
            if (p.description !== undefined && typeof p.description !== "string")
              bad(`${where}.description must be a string`);
            parsed[name] = {
              type: p.type as ExtraInputProperty["type"],
              ...(p.description !== undefined ? { description: p.description } : {}),
            };
          }
          return [k, parsed];
        }),
      );
    }
    if (c.descriptions !== undefined) {
      const d = byKey(c.descriptions, "descriptions");
      out.descriptions = Object.fromEntries(
        Object.entries(d).map(([k, v]) => {
          if (typeof v !== "string") bad(`descriptions.${k} must be a string`);
          return [k, v];
        }),
      );
    }
    if (c.remove !== undefined) {
      if (!Array.isArray(c.remove)) bad("remove must be an array of ToolKeys");
      out.remove = c.remove.map((k) => {
        if (!isKey(k)) bad(`remove: ${JSON.stringify(k)} is not a ToolKey (${TOOL_KEYS.join(", ")})`);
        return k;
      });
    }
    return out;
  }
}

function bad(message: string): never {
  throw new SimulatorOptionsError(message);
}

function isKey(k: unknown): k is ToolKey {
  return typeof k === "string" && (TOOL_KEYS as string[]).includes(k);
}

function object(v: unknown, what: string, allowed?: string[]): Record<string, unknown> {
  if (!v || typeof v !== "object" || Array.isArray(v)) bad(`${what} must be a JSON object`);
  const o = v as Record<string, unknown>;
  const unknown = allowed ? Object.keys(o).filter((k) => !allowed.includes(k)) : [];
  if (unknown.length > 0)
    bad(`${what}: unknown field(s) ${unknown.join(", ")}; allowed: ${allowed?.join(", ")}`);
  return o;
}

function byKey(v: unknown, what: string): Record<string, unknown> {
  const o = object(v, what);
  for (const k of Object.keys(o))
    if (!isKey(k)) bad(`${what}: "${k}" is not a ToolKey (${TOOL_KEYS.join(", ")})`);
  return o;
}

function annotations(v: unknown, what: string): ToolAnnotations | null {
  if (v === null) return null;
  const hints = ["readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint"] as const;
  const a = object(v, what, ["title", ...hints]);
  const out: ToolAnnotations = {};
  if (a.title !== undefined) {
    if (typeof a.title !== "string") bad(`${what}.title must be a string`);
    out.title = a.title;
  }
  for (const h of hints) {
    const x = a[h];
    if (x === undefined) continue;
    if (typeof x !== "boolean") bad(`${what}.${h} must be a boolean`);
    out[h] = x;
  }
  return out;
}

function entries<V>(o: Partial<Record<ToolKey, V>> | undefined): [ToolKey, V][] {
  return Object.entries(o ?? {}) as [ToolKey, V][];
}

function extraShape(props: Record<string, ExtraInputProperty>): Shape {
  const zod = {
    string: () => z.string(),
    number: () => z.number(),
    integer: () => z.number().int(),
    boolean: () => z.boolean(),
  };
  return Object.fromEntries(
    Object.entries(props).map(([name, p]) => {
      const s = zod[p.type]().optional();
      return [name, p.description === undefined ? s : s.describe(p.description)];
    }),
  );
}
