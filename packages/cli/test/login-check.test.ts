/**
 * `loxmcp login-check` end to end: the real CLI process runs the daemon's probe
 * (`loxmcpd --probe`) against the simulator over HTTP — connect resolution, the HTML login form,
 * PKCE, token exchange, initialize, tools/list, a tool call — with no daemon running.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { CliSandbox } from "./helpers.js";

describe("loxmcp login-check", () => {
  let box: CliSandbox;
  let s: SimHandle;

  beforeEach(async () => {
    s = await withSimulator();
    box = new CliSandbox();
    box.env = { ...box.env, ...s.env(box.loxmcpHome) };
  });

  afterEach(async () => {
    await s.stop();
    box.cleanup();
  });

  it("logs in through connect, lists the tools and exits 0", async () => {
    const r = await box.run(["login-check"], { timeoutMs: 60_000 });
    expect(r.stderr).not.toContain(s.sim.password);
    expect(r.stdout).not.toContain(s.sim.password);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/login:\s+ok/);
    expect(r.stdout).toContain("control_find");
    expect(r.stdout).toContain(s.sim.relayUrls[s.sim.currentRelay()]);
    expect(r.stdout).toMatch(/result:\s+OK/);
    expect(s.sim.stats().logins).toBe(1);
  });

  it("calls a tool when asked and prints its answer as JSON with --json", async () => {
    const r = await box.run(["login-check", "--call", "system_status", "--json"], { timeoutMs: 60_000 });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const summary = JSON.parse(r.stdout.trim()) as {
      ok: boolean;
      mode: string;
      login: string;
      tools: string[];
      call: { tool: string; ok: boolean; text?: string };
    };
    expect(summary.ok).toBe(true);
    expect(summary.mode).toBe("connect");
    expect(summary.tools).toContain("system_status");
    expect(summary.call.tool).toBe("system_status");
    expect(summary.call.ok).toBe(true);
    expect(summary.call.text?.length ?? 0).toBeGreaterThan(0);
    expect(s.sim.stats().executions.some((e) => e.tool === "system_status")).toBe(true);
  });

  it("wrong password: exits 1, says the login was rejected and what to check", async () => {
    const r = await box.run(["login-check"], { timeoutMs: 60_000 }, { LOXONE_PASSWORD: "not-the-password" });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(1);
    expect(r.stdout).toMatch(/login:\s+REJECTED/);
    expect(r.stdout).toMatch(/hint:.*LOXONE_PASSWORD/);
    expect(r.stdout).not.toContain("not-the-password");
    expect(r.stderr).not.toContain("not-the-password");
    expect(s.sim.stats().failedLogins).toBeGreaterThanOrEqual(1);
    // Rejected once: no hammering the Miniserver with the wrong password.
    expect(s.sim.stats().failedLogins).toBeLessThanOrEqual(1);
  });

  it("reuses valid stored tokens, and --fresh really checks the password again", async () => {
    const first = await box.run(["login-check"], { timeoutMs: 60_000 });
    expect(first.code, `${first.stdout}\n${first.stderr}`).toBe(0);
    expect(first.stdout).toMatch(/login:\s+ok \(logged in\)/);
    const reused = await box.run(
      ["login-check"],
      { timeoutMs: 60_000 },
      { LOXONE_PASSWORD: "changed-password" },
    );
    expect(reused.code, `${reused.stdout}\n${reused.stderr}`).toBe(0);
    expect(reused.stdout).toMatch(/login:\s+ok \(stored tokens/);
    expect(s.sim.stats().logins).toBe(1);
    const fresh = await box.run(
      ["login-check", "--fresh"],
      { timeoutMs: 60_000 },
      { LOXONE_PASSWORD: "changed-password" },
    );
    expect(fresh.code, `${fresh.stdout}\n${fresh.stderr}`).toBe(1);
    expect(fresh.stdout).toMatch(/login:\s+REJECTED/);
  });

  it("an unreachable URL fails after the first attempt with a network hint, not at the probe's deadline", async () => {
    // --timeout 600: only failing on the first attempt finishes within the run's 60 s deadline.
    const r = await box.run(["login-check", "--url", "http://127.0.0.1:9/mcp", "--timeout", "600"], {
      timeoutMs: 60_000,
    });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(1);
    expect(r.stdout).toMatch(/login:\s+failed/);
    expect(r.stdout).toMatch(/hint:.*cannot reach the URL/);
  });

  it("--url talks to a relay directly (no connect request) and stores the login under that URL", async () => {
    const relay = s.sim.relayUrls[1] as string;
    s.sim.resetStats();
    const r = await box.run(["login-check", "--url", relay, "--json"], { timeoutMs: 60_000 });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const summary = JSON.parse(r.stdout.trim()) as {
      ok: boolean;
      mode: string;
      entry: string;
      tools: string[];
    };
    expect(summary.mode).toBe("direct");
    expect(summary.entry).toBe(relay);
    expect(summary.tools).toContain("control_find");
    expect(s.sim.stats().connectRequests).toBe(0);
    // A second check reuses the stored tokens of that URL: no new login.
    const again = await box.run(["login-check", "--url", relay, "--json"], { timeoutMs: 60_000 });
    expect(again.code, `${again.stdout}\n${again.stderr}`).toBe(0);
    expect(s.sim.stats().logins).toBe(1);
  });

  it("connect rate limit (429): exits 1 with the rate-limit hint", async () => {
    await s.stop();
    s = await withSimulator({ connectRateLimit: 1 });
    box.env = { ...box.env, ...s.env(box.loxmcpHome) };
    const first = await box.run(["login-check"], { timeoutMs: 60_000 });
    expect(first.code, `${first.stdout}\n${first.stderr}`).toBe(0);
    // Another machine state (no cached relay entry) asks connect again within the minute.
    const other = new CliSandbox();
    try {
      const r = await other.run(["login-check"], { timeoutMs: 60_000 }, s.env(other.loxmcpHome));
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(1);
      expect(r.stdout).toMatch(/error:.*429/);
      expect(r.stdout).toMatch(/hint:.*rate-limits/);
    } finally {
      other.cleanup();
    }
  });

  it("MCP service answering 503 on the relay: exits 1 with the MCP-service hint", async () => {
    s.sim.setFaults({ httpErrors: 1000, httpErrorStatus: 503 });
    const r = await box.run(["login-check", "--url", s.sim.relayUrls[0] as string], { timeoutMs: 60_000 });
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(1);
    expect(r.stdout).toMatch(/error:.*503/);
    expect(r.stdout).toMatch(/hint:.*MCP (plugin|service)/);
  });

  it("incomplete configuration: exits 78 naming the missing key", async () => {
    const r = await box.run(["login-check"], { timeoutMs: 30_000 }, { LOXONE_SERIAL: "" });
    expect(r.code).toBe(78);
    expect(r.stderr).toContain("LOXONE_SERIAL is missing");
  });

  it("refuses a non-object --args before starting anything", async () => {
    const r = await box.run(["login-check", "--call", "system_status", "--args", "[1,2]"]);
    expect(r.code).toBe(2); // bad usage
    expect(r.stderr).toContain("--args must be a JSON object");
  });
});
