import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { UpstreamError } from "../src/contracts.js";
import { AuthError, ResourceMismatchError } from "../src/relay/auth/errors.js";
import { AuthManager } from "../src/relay/auth/manager.js";
import { isLoxoneHostOf, validateResource } from "../src/relay/auth/resource.js";
import { captureLog, makeRig, type Rig } from "./relay-helpers.js";

let rig: Rig | undefined;
afterEach(async () => {
  await rig?.cleanup();
  rig = undefined;
});

const READ = { name: "system_status", arguments: {} };

describe("headless login", () => {
  it("wrong password ⇒ auth_failed with a clear reason, one failed login, no hammering; relogin recovers", async () => {
    rig = await makeRig();
    const up = rig.session({ password: "definitely-wrong" });
    up.start();
    const err = await up.whenReady(15_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UpstreamError);
    expect((err as UpstreamError).code).toBe("AUTH_FAILED");
    expect((err as UpstreamError).message).toContain("login was rejected: check LOXONE_USER/LOXONE_PASSWORD");
    const st = up.status();
    expect(st.state).toBe("auth_failed");
    expect(st.reason).toBe("login was rejected: check LOXONE_USER/LOXONE_PASSWORD");
    // Requests fail at once and never trigger another login attempt.
    for (let i = 0; i < 5; i++) {
      const e = await up.request("tools/call", READ, { retryable: true }).catch((x: unknown) => x);
      expect((e as UpstreamError).code).toBe("AUTH_FAILED");
    }
    await expect(up.listTools()).rejects.toMatchObject({ code: "AUTH_FAILED" });
    expect(rig.sim.stats().failedLogins).toBe(1);
    expect(rig.sim.stats().logins).toBe(0);
    // relogin() tries again (still wrong: exactly one more failed attempt).
    await expect(up.relogin()).rejects.toMatchObject({ code: "AUTH_FAILED" });
    expect(rig.sim.stats().failedLogins).toBe(2);
    expect(up.status().state).toBe("auth_failed");
  });

  it("relogin() drops tokens and logs in again", async () => {
    rig = await makeRig();
    const up = rig.session();
    up.start();
    await up.whenReady(15_000);
    const tokenBefore = rig.store.getTokens(rig.sim.serial)?.tokens.access_token;
    await up.relogin();
    expect(up.status().state).toBe("ready");
    expect(rig.sim.stats().logins).toBe(2);
    expect(rig.store.getTokens(rig.sim.serial)?.tokens.access_token).not.toBe(tokenBefore);
    await up.request("tools/call", READ, { retryable: true });
  });

  it("direct mode: tokens are stored under the URL; a resource of another Miniserver is refused", async () => {
    rig = await makeRig();
    const entry = rig.sim.relayUrls[0]!;
    // Same serial as the advertised resource: accepted, no connect request at all.
    const ok = rig.session({ upstreamUrl: entry });
    ok.start();
    await ok.whenReady(15_000);
    await ok.request("tools/call", READ, { retryable: true });
    expect(rig.sim.stats().connectRequests).toBe(0);
    expect(rig.store.getTokens(entry)?.tokens.access_token).toBeTruthy();
    await ok.stop();

    // Configured for another serial: the advertised resource (serial of the simulator) is foreign.
    const foreign = rig.session({ upstreamUrl: rig.sim.relayUrls[1]!, serial: "504F94A0FFFF" });
    foreign.start();
    const err = await foreign.whenReady(15_000).catch((e: unknown) => e);
    expect((err as UpstreamError).code).toBe("AUTH_FAILED");
    expect(foreign.status().state).toBe("auth_failed");
    expect(foreign.status().reason).toMatch(/refusing to request a token/);
    expect(rig.sim.stats().logins).toBe(1);
  });

  it("never logs the password, tokens, cookies or codes", async () => {
    const sentinel = "Sentinel-Pw-7f3a9c";
    rig = await makeRig({ password: sentinel, accessTtl: 2 });
    const up = rig.session();
    up.start();
    await up.whenReady(15_000);
    await up.request("tools/call", READ, { retryable: true });
    rig.sim.expireAccessTokens();
    await up.request("tools/call", READ, { retryable: true });
    rig.sim.revokeTokens();
    await up.request("tools/call", READ, { retryable: true });
    await up.relogin();
    const t = rig.store.getTokens(rig.sim.serial)!.tokens;
    const text = rig.log.text();
    expect(text.length).toBeGreaterThan(500);
    expect(text).toContain("logged in");
    for (const secret of [sentinel, t.access_token, t.refresh_token!, "LXSESSION", "code="]) {
      expect(text).not.toContain(secret);
    }
    expect(JSON.stringify(up.status())).not.toContain(t.access_token);
  });
});

describe("resource (audience) policy", () => {
  const server = "http://127.0.0.1:4000/mcp";
  const serial = "504F94A0C0DE";

  it("accepts the server itself, a same-serial Loxone relay, and allow-listed resources", () => {
    expect(validateResource(server, undefined, { serial })).toBeUndefined();
    expect(validateResource(server, server, { serial })?.href).toBe(server);
    expect(validateResource(server, "http://127.0.0.1:4000/", {})?.href).toBe("http://127.0.0.1:4000/");
    const relay = `https://192-168-1-77.${serial}.dyndns.loxonecloud.com:443/mcp`;
    expect(validateResource(server, relay, { serial })?.hostname).toBe(
      `192-168-1-77.${serial.toLowerCase()}.dyndns.loxonecloud.com`,
    );
    expect(
      validateResource(server, "https://x.example/mcp", { allowedResources: ["https://x.example/mcp/"] })
        ?.href,
    ).toBe("https://x.example/mcp");
  });

  it("rejects other serials, look-alike hosts, plain http, other origins", () => {
    const bad = [
      "https://192-168-1-77.504F94A0FFFF.dyndns.loxonecloud.com/mcp",
      `https://192-168-1-77.${serial}.dyndns.loxonecloud.com.evil.net/mcp`,
      `https://${serial}-loxonecloud.com/mcp`,
      `http://192-168-1-77.${serial}.dyndns.loxonecloud.com/mcp`,
      "http://127.0.0.1:4001/mcp",
      "https://evil.example/mcp",
      "not a url",
    ];
    for (const r of bad) {
      expect(() => validateResource(server, r, { serial }), r).toThrow(ResourceMismatchError);
    }
    expect(isLoxoneHostOf(`dns.${serial.toLowerCase()}.loxonecloud.com`, serial)).toBe(true);
    expect(isLoxoneHostOf("connect.loxonecloud.com", serial)).toBe(false);
  });
});

describe("AuthManager", () => {
  let hang: Server | undefined;
  afterEach(async () => {
    hang?.closeAllConnections();
    if (hang) await new Promise((r) => hang!.close(r));
    hang = undefined;
  });

  it("a server that never answers cannot wedge the login flight: it fails as 'retry later', not auth_failed", async () => {
    rig = await makeRig();
    hang = createServer(() => {
      /* accept, never answer */
    });
    await new Promise<void>((r) => hang!.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(hang.address() as AddressInfo).port}/mcp`;
    const auth = new AuthManager({
      key: url,
      store: rig.store,
      user: "u",
      password: "p",
      logger: captureLog().logger,
      resourcePolicy: {},
      httpTimeoutMs: 200,
    });
    const err = await auth.login(url).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuthError);
    expect((err as AuthError).code).toBe("AUTH_UNAVAILABLE");
    expect(auth.failedReason).toBeUndefined();
  });
});
