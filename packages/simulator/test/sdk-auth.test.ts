import { type OAuthClientProvider, UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type {
  OAuthClientInformationMixed,
  OAuthClientMetadata,
  OAuthTokens,
} from "@modelcontextprotocol/sdk/shared/auth.js";
import { afterEach, describe, expect, it } from "vitest";
import { type Simulator, startSimulator } from "../src/index.js";
import { REDIRECT_URI, readForm, resolveRelay } from "./helpers.js";

let sim: Simulator | undefined;
const clients: Client[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await sim?.stop();
  sim = undefined;
});

/** In-memory provider that drives the login form headlessly, as the daemon does. */
class HeadlessProvider implements OAuthClientProvider {
  info: OAuthClientInformationMixed | undefined;
  saved: OAuthTokens | undefined;
  verifier = "";
  code: string | undefined;
  resourceSeen: string | undefined;

  constructor(private readonly sim: Simulator) {}

  get redirectUrl(): string {
    return REDIRECT_URI;
  }
  get clientMetadata(): OAuthClientMetadata {
    return {
      client_name: "sdk-auth-test",
      redirect_uris: [REDIRECT_URI],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info: OAuthClientInformationMixed) {
    this.info = info;
  }
  tokens() {
    return this.saved;
  }
  saveTokens(t: OAuthTokens) {
    this.saved = t;
  }
  saveCodeVerifier(v: string) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
  async validateResourceURL(_serverUrl: string | URL, resource?: string): Promise<URL | undefined> {
    this.resourceSeen = resource;
    return resource ? new URL(resource) : undefined;
  }
  async redirectToAuthorization(url: URL): Promise<void> {
    const page = await fetch(url, { redirect: "manual" });
    const cookie = (page.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    const form = readForm(await page.text());
    const res = await fetch(new URL(form.action, url), {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", cookie },
      body: new URLSearchParams({
        ...form.hidden,
        username: this.sim.user,
        password: this.sim.password,
      }).toString(),
    });
    this.code = new URL(res.headers.get("location") ?? "").searchParams.get("code") ?? undefined;
  }
}

describe("SDK OAuth flow against the simulator", () => {
  it("logs in headlessly via auth(), then refreshes after an expired access token", async () => {
    sim = await startSimulator();
    const relay = await resolveRelay(sim);
    const provider = new HeadlessProvider(sim);

    const first = new StreamableHTTPClientTransport(new URL(relay), { authProvider: provider });
    const c1 = new Client({ name: "t", version: "1" });
    await expect(c1.connect(first)).rejects.toBeInstanceOf(UnauthorizedError);
    expect(provider.code).toBeTruthy();
    expect(provider.resourceSeen).toBe(`https://192-168-1-77.${sim.serial}.dyndns.loxonecloud.com:443/mcp`);
    await first.finishAuth(provider.code ?? "");
    expect(provider.saved?.refresh_token).toBeTruthy();

    const client = new Client({ name: "t", version: "1" });
    clients.push(client);
    await client.connect(new StreamableHTTPClientTransport(new URL(relay), { authProvider: provider }));
    expect((await client.listTools()).tools.length).toBe(6);

    const oldRefresh = provider.saved?.refresh_token;
    sim.expireAccessTokens();
    expect((await client.callTool({ name: "system_status", arguments: {} })).isError).toBeFalsy();
    expect(sim.stats()).toMatchObject({ refreshes: 1, logins: 1, registrations: 1 });
    expect(provider.saved?.refresh_token).not.toBe(oldRefresh);
  });
});
