/**
 * A small typed schema for config.json, in place of zod (which cost the daemon ~4.5 MB of memory
 * for checking one file at start, docs/benchmarks.md). Enough for what config.json holds: strings,
 * numbers with bounds, booleans, enums, arrays, records and objects whose keys are optional unless
 * said otherwise. `check` lists every problem with its path in words a person can act on;
 * `Infer<typeof rule>` is the TypeScript type a rule accepts (so the types are never copied by hand).
 * Unknown keys are reported by the caller (config/file.ts walks `shape`, with "did you mean").
 */

/** One problem: where (key path) and what is wrong, or which keys a closed object does not know. */
export type Issue =
  | { code: "invalid"; path: string[]; message: string }
  | { code: "unrecognized_keys"; path: string[]; keys: string[] };

interface Base<T> {
  /** Type-level only: what the rule accepts. */
  readonly _type?: T;
  /** Appends the problems of `value` at `path` to `issues`. */
  check(value: unknown, path: string[], issues: Issue[]): void;
}
export type Scalar<T> = Base<T> & { readonly kind: "scalar" };
export type OptionalRule<T> = Base<T | undefined> & { readonly kind: "optional"; readonly inner: Rule<T> };
export type ArrayRule<T> = Base<T[]> & { readonly kind: "array"; readonly of: Rule<T> };
export type RecordRule<T> = Base<Record<string, T>> & { readonly kind: "record"; readonly of: Rule<T> };
export type ObjectRule<S extends Shape, T> = Base<T> & {
  readonly kind: "object";
  readonly shape: S;
  /** Unknown keys: refused (closed) or kept in the result (open). */
  readonly closed: boolean;
};
type Kind =
  | { readonly kind: "scalar" }
  | { readonly kind: "optional"; readonly inner: Rule }
  | { readonly kind: "array"; readonly of: Rule }
  | { readonly kind: "record"; readonly of: Rule }
  | { readonly kind: "object"; readonly shape: Shape; readonly closed: boolean };
/** A rule accepting `T` (its kind tells how to walk it). */
// biome-ignore lint/suspicious/noExplicitAny: a rule of any type (the shape's members)
export type Rule<T = any> = Base<T> & Kind;
export interface Shape {
  [key: string]: Rule;
}
export type Infer<R> = R extends Base<infer T> ? T : never;

type OptionalKeys<S extends Shape> = {
  [K in keyof S]: S[K] extends OptionalRule<unknown> ? K : never;
}[keyof S];
type RequiredKeys<S extends Shape> = Exclude<keyof S, OptionalKeys<S>>;
type Flat<T> = { [K in keyof T]: T[K] };
/** What an object rule over `S` accepts: optional members may be left out (never set to undefined). */
export type ObjectOf<S extends Shape> = Flat<
  { [K in RequiredKeys<S>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Exclude<Infer<S[K]>, undefined> }
>;

const issue = (issues: Issue[], path: string[], message: string) =>
  void issues.push({ code: "invalid", path, message });

function kindOf(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "an object";
  return typeof v === "string"
    ? `the text ${JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v)}`
    : `${typeof v} ${String(v)}`;
}

export function string(o: { min?: number; max?: number } = {}): Scalar<string> {
  return {
    kind: "scalar",
    check(v, path, issues) {
      if (typeof v !== "string")
        return issue(issues, path, `must be a string in double quotes, not ${kindOf(v)}`);
      if (o.min !== undefined && v.length < o.min)
        issue(issues, path, o.min === 1 ? "must not be empty" : `must be at least ${o.min} characters long`);
      if (o.max !== undefined && v.length > o.max)
        issue(issues, path, `must be at most ${o.max} characters long`);
    },
  };
}

export function number(
  o: { min?: number; max?: number; int?: boolean; positive?: boolean } = {},
): Scalar<number> {
  return {
    kind: "scalar",
    check(v, path, issues) {
      if (typeof v !== "number" || !Number.isFinite(v))
        return issue(issues, path, `must be a number (without quotes), not ${kindOf(v)}`);
      if (o.int && !Number.isInteger(v)) issue(issues, path, `must be a whole number, not ${v}`);
      if (o.positive && v <= 0) issue(issues, path, `must be greater than 0, not ${v}`);
      if (o.min !== undefined && v < o.min) issue(issues, path, `must be at least ${o.min}, not ${v}`);
      if (o.max !== undefined && v > o.max) issue(issues, path, `must be at most ${o.max}, not ${v}`);
    },
  };
}

export function boolean(): Scalar<boolean> {
  return {
    kind: "scalar",
    check(v, path, issues) {
      if (typeof v !== "boolean")
        issue(issues, path, `must be true or false (without quotes), not ${kindOf(v)}`);
    },
  };
}

export function oneOf<const V extends readonly string[]>(values: V): Scalar<V[number]> {
  return {
    kind: "scalar",
    check(v, path, issues) {
      if (typeof v !== "string" || !values.includes(v))
        issue(
          issues,
          path,
          `must be one of ${values.map((x) => JSON.stringify(x)).join(", ")}, not ${kindOf(v)}`,
        );
    },
  };
}

export function optional<T>(inner: Rule<T>): OptionalRule<T> {
  return {
    kind: "optional",
    inner,
    check(v, path, issues) {
      if (v !== undefined) inner.check(v, path, issues);
    },
  };
}

export function array<T>(of: Rule<T>, o: { max?: number } = {}): ArrayRule<T> {
  return {
    kind: "array",
    of,
    check(v, path, issues) {
      if (!Array.isArray(v)) return issue(issues, path, `must be a list [ … ], not ${kindOf(v)}`);
      // A list too long is one problem, not one per entry (a huge list would flood the report).
      if (o.max !== undefined && v.length > o.max)
        return issue(issues, path, `must have at most ${o.max} entries, not ${v.length}`);
      v.forEach((x, i) => {
        of.check(x, [...path, String(i)], issues);
      });
    },
  };
}

export function record<T>(of: Rule<T>): RecordRule<T> {
  return {
    kind: "record",
    of,
    check(v, path, issues) {
      if (!isPlainObject(v)) return issue(issues, path, `must be an object { … }, not ${kindOf(v)}`);
      for (const [k, x] of Object.entries(v)) of.check(x, [...path, k], issues);
    },
  };
}

/** An object with the keys of `shape`; unknown keys are refused (`closed`) or kept. */
export function object<S extends Shape>(shape: S, o: { closed?: boolean } = {}): ObjectRule<S, ObjectOf<S>> {
  const closed = o.closed ?? true;
  return {
    kind: "object",
    shape,
    closed,
    check(v, path, issues) {
      if (!isPlainObject(v)) return issue(issues, path, `must be an object { … }, not ${kindOf(v)}`);
      for (const [k, rule] of Object.entries(shape)) {
        const x = Object.hasOwn(v, k) ? v[k] : undefined;
        if (x === undefined && rule.kind !== "optional") issue(issues, [...path, k], "is missing");
        else rule.check(x, [...path, k], issues);
      }
      if (closed) {
        const unknown = Object.keys(v).filter((k) => !Object.hasOwn(shape, k));
        if (unknown.length > 0) issues.push({ code: "unrecognized_keys", path, keys: unknown });
      }
    },
  };
}

/** The same object with every key optional. */
export function partial<S extends Shape>(
  rule: ObjectRule<S, unknown>,
): ObjectRule<{ [K in keyof S]: OptionalRule<Exclude<Infer<S[K]>, undefined>> }, Partial<ObjectOf<S>>> {
  const shape = Object.fromEntries(
    Object.entries(rule.shape).map(([k, r]) => [k, r.kind === "optional" ? r : optional(r)]),
  ) as { [K in keyof S]: OptionalRule<Exclude<Infer<S[K]>, undefined>> };
  return object(shape, { closed: rule.closed }) as never;
}

/** Checks `value` against `rule`: the value (typed) when it passes, else every problem. */
export function check<T>(
  rule: Rule<T>,
  value: unknown,
): { ok: true; value: T } | { ok: false; issues: Issue[] } {
  const issues: Issue[] = [];
  rule.check(value, [], issues);
  return issues.length === 0 ? { ok: true, value: value as T } : { ok: false, issues };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
