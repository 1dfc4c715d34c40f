/**
 * Resource / audience policy, through the real probe process (`loxmcpd --probe`) against the
 * simulator. The simulator advertises as OAuth `resource` another, unreachable relay of the same
 * Miniserver (`https://192-168-1-77.<SERIAL>.dyndns.loxonecloud.com:443/mcp`), as Loxone does.
 *  - same serial ⇒ accepted (the Loxone case keeps working), in connect and in direct mode;
 *  - a Miniserver that is not the configured one ⇒ refused before any authorization request;
 *  - unless that resource is allow-listed (`allowedResources` / LOXMCP_ALLOWED_RESOURCES).
 */
import { spawn } from "node:child_process";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DAEMON_BIN, type DaemonProcess, REPO_ROOT, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";

interface Summary {
  ok: boolean;
  mode: string;
  login: string;
  entry?: string;
  tools: string[];
  error?: string;
  hint?: string;
}

function probe(
  env: Record<string, string>,
  args: string[],
): Promise<{ code: number | null; summary: Summary; raw: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [DAEMON_BIN, "--probe", "--json", "--timeout", "40", ...args], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      err += d;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`probe did not finish\n${out}\n${err}`));
    }, 55_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      try {
        resolve({ code, summary: JSON.parse(out.trim()) as Summary, raw: `${out}\n${err}` });
      } catch {
        reject(new Error(`probe printed no JSON summary (exit ${code})\n${out}\n${err}`));
      }
    });
  });
}

describe("OAuth resource (audience) policy through the probe", () => {
  let h: TempHome;
  let s: SimHandle;
  let daemon: DaemonProcess | undefined;

  beforeEach(async () => {
    h = makeHome();
    s = await withSimulator({ serial: "504F94A0CAFE" });
  });

  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    await s.stop();
    h.cleanup();
  });

  it("accepts a differing resource of the same Miniserver (connect mode: the Loxone case)", async () => {
    const r = await probe(s.env(h.home), []);
    expect(r.code, r.raw).toBe(0);
    expect(r.summary.ok).toBe(true);
    expect(r.summary.mode).toBe("connect");
    expect(r.summary.tools).toContain("control_find");
    expect(s.sim.stats().logins).toBe(1);
  });

  it("accepts it in direct mode too (--url), and a daemon in direct mode reuses that login", async () => {
    const relay = s.sim.relayUrls[0] as string;
    const r = await probe(s.env(h.home), ["--url", relay]);
    expect(r.code, r.raw).toBe(0);
    expect(r.summary.mode).toBe("direct");
    expect(r.summary.entry).toBe(relay);
    expect(s.sim.stats().logins).toBe(1);
    // Tokens are stored under that URL: the daemon with LOXMCP_UPSTREAM_URL finds them.
    daemon = spawnDaemon(s.env(h.home, { LOXMCP_UPSTREAM_URL: relay }));
    const st = await daemon.waitReady(30_000);
    expect(st.entry).toBe(relay);
    expect(s.sim.stats().logins).toBe(1);
    expect(s.sim.stats().connectRequests).toBe(0);
  });

  it("refuses a resource of another Miniserver before any authorization request", async () => {
    const relay = s.sim.relayUrls[0] as string;
    // We are configured for another Miniserver: this server's audience is not ours.
    const r = await probe(s.env(h.home, { LOXONE_SERIAL: "504F94A0BEEF" }), ["--url", relay]);
    expect(r.code, r.raw).toBe(1);
    expect(r.summary.ok).toBe(false);
    expect(r.summary.login).not.toBe("ok");
    expect(r.summary.error).toMatch(/resource/i);
    expect(r.summary.error).toContain("504F94A0CAFE".toLowerCase());
    expect(r.summary.hint).toMatch(/allowedResources/);
    const st = s.sim.stats();
    expect(st.logins).toBe(0);
    expect(st.failedLogins).toBe(0);
  });

  it("accepts that resource once it is allow-listed", async () => {
    const relay = s.sim.relayUrls[0] as string;
    const resource = `https://192-168-1-77.${s.sim.serial}.dyndns.loxonecloud.com:443/mcp`;
    const r = await probe(
      s.env(h.home, { LOXONE_SERIAL: "504F94A0BEEF", LOXMCP_ALLOWED_RESOURCES: resource }),
      ["--url", relay],
    );
    expect(r.code, r.raw).toBe(0);
    expect(r.summary.ok).toBe(true);
    expect(s.sim.stats().logins).toBe(1);
  });
});
