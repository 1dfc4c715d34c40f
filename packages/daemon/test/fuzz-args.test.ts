/**
 * Fuzz (fast-check) of tool arguments reaching the policy: random arguments to the write tool
 * (unknown/malformed uuids, commands not valid for the control's type, wrong types, injection
 * strings, extra keys, non-object arguments). Each call gets a clear answer; an invalid target or
 * command is refused by the daemon's policy BEFORE the write is sent upstream, and nothing invalid
 * is ever executed (simulator execution log).
 */

import type { HouseControl } from "@loxmcp/simulator";
import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ChaosRig, startChaosRig } from "../../../test-support/chaos.js";

/** Does `command` match one of the control's patterns (`{n}` = a number)? */
function commandValid(c: HouseControl, command: unknown): boolean {
  if (typeof command !== "string") return false;
  return c.commands.some((p) => {
    const i = p.indexOf("{n}");
    if (i === -1) return p === command;
    return command.startsWith(p.slice(0, i)) && /^-?\d+(\.\d+)?$/.test(command.slice(i));
  });
}

describe("fuzz: write tool arguments reaching the policy", () => {
  let rig: ChaosRig;
  let client: Client;
  let controls: HouseControl[];

  beforeAll(async () => {
    rig = await startChaosRig(1);
    client = rig.clients[0]!;
    controls = rig.sim.sim.house().controls;
  });
  afterAll(async () => {
    await rig?.close();
  });

  it("invalid targets/commands are refused before the relay, every answer is a clear one", async () => {
    const sim = rig.sim.sim;
    // Warm-up: one valid write, so the structure is known before the property runs.
    const light = controls.find((c) => c.type === "LightControllerV2")!;
    const warm = await client.callTool({
      name: rig.writeTool,
      arguments: { uuid: light.uuid, command: "on" },
    });
    expect(warm.isError ?? false, JSON.stringify(warm.content)).toBe(false);
    const control = fc.constantFrom(...controls);
    const uuid = fc.oneof(
      control.map((c) => c.uuid),
      fc.stringMatching(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{16}$/),
      fc.string({ maxLength: 50 }),
      fc.constantFrom("", "*", "all", "../../etc/passwd", "0b734138-037d-034e-ffff403fb0c34b9e/sub"),
      fc.jsonValue({ maxDepth: 1 }),
    );
    const command = fc.oneof(
      control.chain((c) =>
        fc
          .constantFrom(...(c.commands.length > 0 ? c.commands : ["on"]))
          .chain((p) => fc.integer({ min: -10, max: 1000 }).map((n) => p.replace("{n}", String(n)))),
      ),
      fc.constantFrom(
        "on",
        "off",
        "open",
        "FullDown",
        "changeTo/5",
        "on; off",
        "on\nFullUp",
        "on/../off",
        "",
        " ",
      ),
      fc.string({ maxLength: 40 }),
      fc.jsonValue({ maxDepth: 1 }),
    );
    const args = fc.oneof(
      { weight: 6, arbitrary: fc.record({ uuid, command }, { requiredKeys: [] }) },
      {
        weight: 2,
        arbitrary: fc
          .tuple(
            fc.record({ uuid, command }),
            fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
          )
          .map(([a, b]) => ({ ...b, ...a })),
      },
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
    );

    await fc.assert(
      fc.asyncProperty(args, async (a) => {
        let text: string;
        let ok: boolean;
        try {
          const r = await client.request(
            {
              method: "tools/call",
              params: { name: rig.writeTool, arguments: a as Record<string, unknown> },
            },
            CallToolResultSchema,
          );
          ok = r.isError !== true;
          text = JSON.stringify(r.content);
        } catch (e) {
          ok = false;
          text = (e as Error).message;
        }
        const after = sim.stats();
        const rec = (typeof a === "object" && a !== null && !Array.isArray(a) ? a : {}) as Record<
          string,
          unknown
        >;
        const target = typeof rec.uuid === "string" ? controls.find((c) => c.uuid === rec.uuid) : undefined;
        const valid = target !== undefined && commandValid(target, rec.command);
        const ctx = `args ${JSON.stringify(a)} → ${ok ? "ok" : "error"} ${text.slice(0, 300)}`;
        // Every invalid call is refused by the daemon itself, before the relay: targets the policy
        // can read but that name no control / a command the control does not take, and also
        // unreadable targets (missing or non-string uuid/command), which fail closed. Non-object
        // arguments are refused by the mux as invalid params. The simulator's own errors never
        // say "loxmcp policy".
        if (!valid) expect(ok, ctx).toBe(false);
        if (!valid)
          expect(text, `refused by the policy, before the relay: ${ctx}`).toMatch(
            /loxmcp policy|params\.arguments must be an object/i,
          );
        if (!ok) expect(text, ctx).toMatch(/[a-z]{3,}.*[a-z]{3,}/i);
        // The execution log only ever grows by valid commands.
        for (const e of after.executions) {
          if (e.tool !== rig.writeTool) continue;
          const ea = e.arguments as Record<string, unknown>;
          const c = controls.find((x) => x.uuid === ea.uuid);
          expect(c !== undefined && commandValid(c, ea.command), `executed ${JSON.stringify(ea)}`).toBe(true);
        }
      }),
      { numRuns: 150 },
    );
    expect((await rig.daemon.status()).state).toBe("ready");
  });
});
