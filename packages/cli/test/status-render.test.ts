import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { type DaemonStatus, hintFor, renderStatus } from "../src/commands/status.js";
import { CliSandbox } from "./helpers.js";

describe("status rendering", () => {
  const now = Date.parse("2026-11-23T11:00:00Z");
  const base: DaemonStatus = {
    pid: 7,
    version: "0.1.0",
    state: "ready",
    entry: "https://1-2-3-4.504F94A00001.dyndns.loxonecloud.com:443/mcp",
    uptimeSec: 7380,
    tokenExpiresInSec: 3252,
    sessionAgeSec: 60,
    lastPingAgoSec: 12,
    policy: {
      mode: "confirm",
      clients: { cursor: "read-only" },
      emergencyStop: { active: true, since: now - 60_000, by: "cli" },
      structure: { controls: 34, checkedAt: now - 300_000 },
    },
    clients: [
      {
        connId: "c1",
        name: "claude-desktop",
        version: "0.9",
        pid: 4567,
        since: new Date(now - 120_000).toISOString(),
      },
    ],
    counters: { logins: 1, refreshes: 2, resolves: 1, reconnects: 0, requests: 9, errors: 0 },
    pendingApprovals: [
      {
        client: "cursor",
        tool: "control_command",
        summary: "open Garage gate",
        approved: false,
        expiresInSec: 90,
      },
    ],
    socket: "/run/user/1000/loxmcp/daemon.sock",
  };

  it("shows every part a person needs, with times relative", () => {
    const text = renderStatus(base, now).join("\n");
    expect(text).toContain("loxmcpd: ready  (pid 7, v0.1.0, up 2h 3m)");
    expect(text).toMatch(/token expires\s+in 54m 12s/);
    expect(text).toMatch(/last ping\s+12s ago/);
    expect(text).toMatch(/policy\s+confirm {2}\(clients: cursor=read-only\)/);
    expect(text).toContain("EMERGENCY STOP");
    expect(text).toContain("`loxmcp resume`");
    expect(text).toMatch(/structure\s+34 controls \(checked 5m ago\)/);
    expect(text).toMatch(/clients \(1\)\s+claude-desktop 0\.9 {2}pid 4567 {2}since .* \(2m ago\)/);
    expect(text).toMatch(
      /counters\s+logins 1 · refreshes 2 · resolves 1 · reconnects 0 · requests 9\n\s+errors 0/,
    );
    expect(text).toMatch(
      /pending approvals\s+cursor {2}open Garage gate {2}\(control_command, expires in 1m 30s\)/,
    );
    expect(text).toContain("loxmcp approve --list");
  });

  it("gives a next step for every unhealthy state and none when ready", () => {
    expect(hintFor("ready")).toBeUndefined();
    for (const st of ["down", "auth_failed", "degraded", "connecting", "stopped"])
      expect(hintFor(st)).toMatch(/loxmcp /);
  });
});

describe("status with a stale socket file", () => {
  let sb: CliSandbox | undefined;
  afterEach(() => sb?.cleanup());

  it("reports down (exit 1) when the socket path exists but nothing listens", async () => {
    sb = new CliSandbox();
    mkdirSync(join(sb.loxmcpHome, "run"), { recursive: true, mode: 0o700 });
    writeFileSync(join(sb.loxmcpHome, "run", "daemon.sock"), "");
    const r = await sb.run(["status", "--json"]);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ state: "down", pid: null });
  });
});
