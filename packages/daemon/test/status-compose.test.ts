/**
 * `loxmcp/status` has one owner per field: the core writes its fields, the gate (the policy) its
 * section where status has always shown it, each further section only fields nobody wrote before.
 */
import { describe, expect, it } from "vitest";
import { buildStatus, type StatusSources } from "../src/mux/control.js";

function sources(over: Partial<StatusSources> = {}): StatusSources {
  return {
    version: "9.9.9",
    startedAt: Date.now() - 5_000,
    socket: "/run/loxmcp.sock",
    home: "/home/x/.loxmcp",
    upstream: () => ({
      state: "ready",
      counters: { logins: 1, refreshes: 0, resolves: 0, reconnects: 0, requests: 2, errors: 0 },
    }),
    clients: () => [],
    counters: () => ({ toolCalls: 3 }),
    gate: () => ({ policy: { mode: "confirm", pin: { set: false } }, pendingApprovals: [{ tool: "t" }] }),
    sections: () => [],
    ...over,
  };
}

describe("loxmcp/status composition", () => {
  it("puts the gate's section in its place and each section after the core's fields", () => {
    const st = buildStatus(
      sources({ sections: () => [() => ({ storage: { ok: true } }), () => ({ page: {} })] }),
    );
    expect(Object.keys(st)).toEqual([
      "pid",
      "version",
      "state",
      "uptimeSec",
      "policy",
      "clients",
      "counters",
      "pendingApprovals",
      "socket",
      "home",
      "storage",
      "page",
    ]);
    expect(st.policy).toEqual({ mode: "confirm", pin: { set: false } });
    expect(st.pendingApprovals).toEqual([{ tool: "t" }]);
    expect(st.counters).toMatchObject({ requests: 2, toolCalls: 3 });
  });

  it("a section never overwrites a field another part owns; its own fields still show", () => {
    const st = buildStatus(
      sources({
        sections: () => [
          () => ({ policy: { mode: "full" }, state: "stopped", storage: { ok: true } }),
          () => ({ storage: { ok: false } }),
          () => {
            throw new Error("broken section");
          },
        ],
      }),
    );
    expect(st.policy).toEqual({ mode: "confirm", pin: { set: false } });
    expect(st.state).toBe("ready");
    expect(st.storage).toEqual({ ok: true });
  });
});
