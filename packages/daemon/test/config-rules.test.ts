/**
 * config/rules.ts, the small schema config.json is checked with (instead of zod): every kind of
 * rule, the problems it names (path and words a person can act on), closed and open objects.
 */
import { describe, expect, it } from "vitest";
import {
  array,
  boolean,
  check,
  type Infer,
  number,
  object,
  oneOf,
  optional,
  partial,
  record,
  string,
} from "../src/config/rules.js";

const Schema = object({
  name: string({ min: 1, max: 5 }),
  count: optional(number({ int: true, min: 1, max: 10 })),
  ratio: optional(number({ positive: true })),
  on: optional(boolean()),
  mode: optional(oneOf(["a", "b"] as const)),
  tags: optional(array(string(), { max: 2 })),
  per: optional(record(oneOf(["x"] as const))),
  inner: optional(partial(object({ a: number(), b: number() }, { closed: false }))),
});

describe("config rules", () => {
  it("a valid value passes as is, typed", () => {
    const v = { name: "ok", count: 3, on: true, mode: "b", tags: ["t"], per: { k: "x" }, inner: { a: 1 } };
    const r = check(Schema, v);
    expect(r.ok).toBe(true);
    if (r.ok) {
      const typed: Infer<typeof Schema> = r.value;
      expect(typed).toBe(v);
    }
  });

  it("every problem, with its path and what to do", () => {
    const r = check(Schema, {
      count: 2.5,
      ratio: 0,
      on: "yes",
      mode: "c",
      tags: ["a", 1, "c"],
      per: { k: "y" },
      inner: { a: "1" },
      extra: 1,
    });
    expect(r.ok).toBe(false);
    if (r.ok) return;
    const said = r.issues.map((i) =>
      i.code === "invalid" ? `${i.path.join(".")} ${i.message}` : `unknown ${i.keys.join(",")}`,
    );
    expect(said).toEqual([
      "name is missing",
      "count must be a whole number, not 2.5",
      "ratio must be greater than 0, not 0",
      'on must be true or false (without quotes), not the text "yes"',
      'mode must be one of "a", "b", not the text "c"',
      "tags must have at most 2 entries, not 3",
      'per.k must be one of "x", not the text "y"',
      'inner.a must be a number (without quotes), not the text "1"',
      "unknown extra",
    ]);
  });

  it("bounds, empty strings, wrong containers", () => {
    const said = (v: unknown) => {
      const r = check(Schema, v);
      return r.ok
        ? []
        : r.issues.map((i) => (i.code === "invalid" ? `${i.path.join(".")} ${i.message}` : ""));
    };
    expect(said({ name: "", count: 0 })).toEqual([
      "name must not be empty",
      "count must be at least 1, not 0",
    ]);
    expect(said({ name: "toolong", count: 11 })).toEqual([
      "name must be at most 5 characters long",
      "count must be at most 10, not 11",
    ]);
    expect(said({ name: "x", tags: "a", per: [], inner: null })).toEqual([
      'tags must be a list [ … ], not the text "a"',
      "per must be an object { … }, not a list",
      "inner must be an object { … }, not null",
    ]);
    expect(said([])).toEqual([" must be an object { … }, not a list"]);
    // each entry is checked when the list is not too long
    expect(said({ name: "x", tags: ["a", 1] })).toEqual([
      "tags.1 must be a string in double quotes, not number 1",
    ]);
  });
});
