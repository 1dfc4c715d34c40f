import { statSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { UpstreamError, type UpstreamStatus } from "../src/contracts.js";
import { makeRig, type Rig, toolNamed } from "./relay-helpers.js";

let rig: Rig | undefined;
afterEach(async () => {
  await rig?.cleanup();
  rig = undefined;
});

function lightUuid(r: Rig): string {
  const c = r.sim.house().controls.find((x) => x.type === "LightControllerV2");
  if (!c) throw new Error("no light in the simulated house");
  return c.uuid;
}

describe("UpstreamSession against the simulator", () => {
  it("logs in from nothing, initializes, lists tools, proxies calls verbatim; DB is 0600", async () => {
    rig = await makeRig();
    const up = rig.session();
    const states: string[] = [];
    up.on("state", (s: UpstreamStatus) => states.push(s.state));
    up.start();
    await up.whenReady(15_000);
    expect(states).toEqual(expect.arrayContaining(["resolving", "authenticating", "ready"]));
    const st = up.status();
    expect(st.state).toBe("ready");
    expect(st.entry).toBe(rig.sim.relayUrls[rig.sim.currentRelay()]);
    expect(st.counters.logins).toBe(1);
    expect(st.tokenExpiresAt).toBeGreaterThan(Date.now());
    expect(up.initializeInfo()?.serverInfo.name).toBe("loxone-miniserver-mcp");
    const { tools } = await up.listTools();
    toolNamed(tools, "control_command");

    const res = (await up.request(
      "tools/call",
      { name: "system_status", arguments: {} },
      { retryable: true },
    )) as {
      content: Array<{ type: string; text: string }>;
    };
    expect(res.content[0]?.type).toBe("text");

    const uuid = lightUuid(rig);
    await up.request(
      "tools/call",
      { name: "control_command", arguments: { uuid, command: "on" } },
      { retryable: false },
    );
    expect(rig.sim.house().controls.find((c) => c.uuid === uuid)?.states.on).toBe(true);

    // A JSON-RPC error from the server comes back as REMOTE_ERROR with its code.
    const err = await up.request("no/such/method", {}, { retryable: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).code).toBe("REMOTE_ERROR");
    expect((err as UpstreamError).rpcCode).toBe(-32601);

    const stats = rig.sim.stats();
    expect(stats.logins).toBe(1);
    expect(stats.registrations).toBe(1);
    expect(stats.sessions).toBe(1);
    expect(stats.connectRequests).toBe(1);
    expect(statSync(rig.dbFile).mode & 0o777).toBe(0o600);
  });

  it("reuses persisted tokens and relay entry in a new session on the same DB (no login, no connect)", async () => {
    rig = await makeRig();
    const first = rig.session();
    first.start();
    await first.whenReady(15_000);
    await first.stop();
    const before = rig.sim.stats();
    const second = rig.session({ store: rig.reopen() } as never);
    second.start();
    await second.whenReady(15_000);
    await second.request("tools/call", { name: "system_status", arguments: {} }, { retryable: true });
    const after = rig.sim.stats();
    expect(after.logins).toBe(before.logins);
    expect(after.registrations).toBe(before.registrations);
    expect(after.connectRequests).toBe(before.connectRequests);
    expect(after.sessions).toBe(before.sessions + 1);
    expect(second.status().counters.logins).toBe(0);
  });
});
