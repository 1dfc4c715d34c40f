import { afterEach, describe, expect, it } from "vitest";
import { type Simulator, startSimulator } from "../src/index.js";
import {
  login,
  openLogin,
  pkce,
  REDIRECT_URI,
  readForm,
  register,
  submitLogin,
  tokenRequest,
} from "./helpers.js";

let sim: Simulator | undefined;
afterEach(async () => {
  await sim?.stop();
  sim = undefined;
});

const originOf = (url: string) => new URL(url).origin;

async function mcpStatus(url: string, token: string): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
    },
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } },
    }),
  });
}

describe("OAuth authorization server", () => {
  it("advertises a protected resource that differs from the relay, and AS metadata", async () => {
    sim = await startSimulator();
    const relay = sim.relayUrls[1] ?? "";
    const origin = originOf(relay);
    const unauth = await fetch(relay, { method: "POST" });
    expect(unauth.status).toBe(401);
    const challenge = unauth.headers.get("www-authenticate") ?? "";
    expect(challenge).toContain(`resource_metadata="${origin}/.well-known/oauth-protected-resource/mcp"`);
    for (const path of [
      "/.well-known/oauth-protected-resource/mcp",
      "/.well-known/oauth-protected-resource",
    ]) {
      const prm = (await (await fetch(origin + path)).json()) as {
        resource: string;
        authorization_servers: string[];
      };
      expect(prm.resource).toBe(`https://192-168-1-77.${sim.serial}.dyndns.loxonecloud.com:443/mcp`);
      expect(prm.resource).not.toBe(relay);
      expect(prm.authorization_servers).toEqual([origin]);
    }
    const as = (await (await fetch(`${origin}/.well-known/oauth-authorization-server`)).json()) as Record<
      string,
      unknown
    >;
    expect(as.issuer).toBe(origin);
    expect(as.code_challenge_methods_supported).toEqual(["S256"]);
    expect(as.registration_endpoint).toBe(`${origin}/register`);
    expect(as.token_endpoint_auth_methods_supported).toEqual(["none", "client_secret_post"]);
  });

  it("registers clients dynamically (public and client_secret_post)", async () => {
    sim = await startSimulator();
    const origin = originOf(sim.relayUrls[0] ?? "");
    const pub = await register(origin);
    expect(pub.client_id).toMatch(/\S{8,}/);
    expect(pub.client_secret).toBeUndefined();
    const conf = await register(origin, "client_secret_post");
    expect(conf.client_secret).toMatch(/\S{16,}/);
    expect(sim.stats().registrations).toBe(2);
    const bad = await fetch(`${origin}/register`, { method: "POST", body: "{}" });
    expect(bad.status).toBe(400);
  });

  it("serves an HTML login form with hidden fields and an HttpOnly session cookie", async () => {
    sim = await startSimulator();
    const origin = originOf(sim.relayUrls[0] ?? "");
    const client = await register(origin);
    const q = new URLSearchParams({
      response_type: "code",
      client_id: client.client_id,
      redirect_uri: REDIRECT_URI,
      code_challenge: pkce().challenge,
      code_challenge_method: "S256",
      state: "abc",
    });
    const res = await fetch(`${origin}/authorize?${q}`, { redirect: "manual" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    expect(res.headers.get("set-cookie")).toMatch(/^LXSESSION=[^;]+;.*HttpOnly/);
    const form = readForm(await res.text());
    expect(form.action).toBe("/login");
    expect(Object.keys(form.hidden).length).toBeGreaterThanOrEqual(2);
    expect(form.hidden).toHaveProperty("csrf_token");
    expect(form.hidden).toHaveProperty("auth_request");
    expect(form.visible).toEqual(expect.arrayContaining(["username", "password"]));

    const noPkce = await fetch(
      `${origin}/authorize?${new URLSearchParams({ ...Object.fromEntries(q), code_challenge: "" })}`,
      {
        redirect: "manual",
      },
    );
    expect(noPkce.status).toBe(302);
    expect(noPkce.headers.get("location")).toContain("error=invalid_request");
  });

  it("re-renders the form with an error on wrong credentials; rejects a missing cookie; redirects with code+state", async () => {
    sim = await startSimulator();
    const origin = originOf(sim.relayUrls[0] ?? "");
    const client = await register(origin);
    const form = await openLogin(origin, client.client_id, pkce().challenge, "my-state");

    const wrong = await submitLogin(origin, form, sim.user, "nope");
    expect(wrong.status).toBe(200);
    const html = await wrong.text();
    expect(html).toContain("Invalid username or password");
    const again = readForm(html);
    expect(again.hidden.csrf_token).not.toBe(form.hidden.csrf_token);
    expect(sim.stats().failedLogins).toBe(1);

    const next = { ...form, hidden: again.hidden };
    const noCookie = await submitLogin(origin, next, sim.user, sim.password, { cookie: false });
    expect(noCookie.status).toBe(400);
    const staleCsrf = await submitLogin(origin, form, sim.user, sim.password);
    expect(staleCsrf.status).toBe(400);

    const ok = await submitLogin(origin, next, sim.user, sim.password);
    expect(ok.status).toBe(302);
    const loc = new URL(ok.headers.get("location") ?? "");
    expect(`${loc.origin}${loc.pathname}`).toBe(REDIRECT_URI);
    expect(loc.searchParams.get("state")).toBe("my-state");
    expect(loc.searchParams.get("code")).toBeTruthy();
    expect(sim.stats().logins).toBe(1);
  });

  it("checks PKCE and makes codes single-use", async () => {
    sim = await startSimulator();
    const origin = originOf(sim.relayUrls[0] ?? "");
    const client = await register(origin);
    const getCode = async (challenge: string) => {
      const form = await openLogin(origin, client.client_id, challenge);
      const res = await submitLogin(origin, form, sim!.user, sim!.password);
      return new URL(res.headers.get("location") ?? "").searchParams.get("code") ?? "";
    };
    const p = pkce();
    const base = {
      grant_type: "authorization_code",
      redirect_uri: REDIRECT_URI,
      client_id: client.client_id,
    };

    const wrong = await tokenRequest(origin, {
      ...base,
      code: await getCode(p.challenge),
      code_verifier: pkce().verifier,
    });
    expect(wrong.status).toBe(400);
    expect(((await wrong.json()) as { error: string }).error).toBe("invalid_grant");

    const code = await getCode(p.challenge);
    const ok = await tokenRequest(origin, { ...base, code, code_verifier: p.verifier });
    expect(ok.status).toBe(200);
    const tokens = (await ok.json()) as {
      access_token: string;
      refresh_token: string;
      expires_in: number;
      token_type: string;
    };
    expect(tokens.token_type).toBe("Bearer");
    expect(tokens.expires_in).toBe(3600);
    expect(tokens.refresh_token).toBeTruthy();

    const reuse = await tokenRequest(origin, { ...base, code, code_verifier: p.verifier });
    expect(reuse.status).toBe(400);
    expect(((await reuse.json()) as { error: string }).error).toBe("invalid_grant");
  });

  it("rotates refresh tokens and rejects reuse of an old one", async () => {
    sim = await startSimulator();
    const origin = originOf(sim.relayUrls[0] ?? "");
    const t = await login(sim, origin);
    const first = await tokenRequest(origin, {
      grant_type: "refresh_token",
      refresh_token: t.refresh_token,
      client_id: t.clientId,
    });
    expect(first.status).toBe(200);
    const rotated = (await first.json()) as { refresh_token: string; access_token: string };
    expect(rotated.refresh_token).not.toBe(t.refresh_token);
    expect((await mcpStatus(sim.relayUrls[0] ?? "", rotated.access_token)).status).toBe(200);

    const reuse = await tokenRequest(origin, {
      grant_type: "refresh_token",
      refresh_token: t.refresh_token,
      client_id: t.clientId,
    });
    expect(reuse.status).toBe(400);
    expect(((await reuse.json()) as { error: string }).error).toBe("invalid_grant");
    expect(sim.stats().refreshes).toBe(1);
  });

  it("expires access tokens (401 invalid_token) and refresh tokens by lifetime", async () => {
    sim = await startSimulator({ refreshTtl: 0.3 });
    const relay = sim.relayUrls[0] ?? "";
    const origin = originOf(relay);
    const t = await login(sim, origin);
    expect((await mcpStatus(relay, t.access_token)).status).toBe(200);
    sim.expireAccessTokens();
    const expired = await mcpStatus(relay, t.access_token);
    expect(expired.status).toBe(401);
    expect(expired.headers.get("www-authenticate")).toContain('error="invalid_token"');

    const t2 = await login(sim, origin);
    await new Promise((r) => setTimeout(r, 350)); // lifetime under test, not a sync wait
    const late = await tokenRequest(origin, {
      grant_type: "refresh_token",
      refresh_token: t2.refresh_token,
      client_id: t2.clientId,
    });
    expect(late.status).toBe(400);
  });

  it("accepts tokens from any relay's AS on every relay, and checks client_secret_post secrets", async () => {
    sim = await startSimulator({ relays: 2 });
    const [r0, r1] = sim.relayUrls as [string, string];
    const t = await login(sim, originOf(r0));
    expect((await mcpStatus(r1, t.access_token)).status).toBe(200);

    const origin = originOf(r1);
    const conf = await register(origin, "client_secret_post");
    const p = pkce();
    const form = await openLogin(origin, conf.client_id, p.challenge);
    const code =
      new URL(
        (await submitLogin(origin, form, sim.user, sim.password)).headers.get("location") ?? "",
      ).searchParams.get("code") ?? "";
    const base = {
      grant_type: "authorization_code",
      code,
      code_verifier: p.verifier,
      client_id: conf.client_id,
    };
    const noSecret = await tokenRequest(origin, base);
    expect(noSecret.status).toBe(401);
    expect(((await noSecret.json()) as { error: string }).error).toBe("invalid_client");
    const ok = await tokenRequest(origin, { ...base, client_secret: conf.client_secret ?? "" });
    expect(ok.status).toBe(200);
  });

  it("revokeTokens invalidates access and refresh tokens", async () => {
    sim = await startSimulator();
    const relay = sim.relayUrls[0] ?? "";
    const origin = originOf(relay);
    const t = await login(sim, origin);
    await fetch(`${sim.adminUrl}/revoke-tokens`, { method: "POST" });
    expect((await mcpStatus(relay, t.access_token)).status).toBe(401);
    const r = await tokenRequest(origin, {
      grant_type: "refresh_token",
      refresh_token: t.refresh_token,
      client_id: t.clientId,
    });
    expect(r.status).toBe(400);
  });
});
