#!/usr/bin/env node
// BASELINE FOR BENCHMARKS ONLY — not product code.
//
// A minimal per-client stdio MCP proxy built on the MCP SDK, doing what every per-client proxy
// for the Loxone relay does on start (mcp-remote, the seed's loxone-mcp-proxy):
//   1. resolve the entry: GET <connect>/<serial>/mcp, redirect: manual, 307 Location;
//   2. headless OAuth: protected-resource + AS metadata, dynamic client registration, PKCE,
//      authorize → HTML login form (parsed with node-html-parser, cookie kept with tough-cookie)
//      → POST user/password + hidden fields → ?code → token exchange;
//   3. initialize an upstream MCP session (StreamableHTTPClientTransport, Bearer token);
//   4. serve stdio: initialize, tools/list and tools/call forwarded upstream.
// It is deliberately simple (no refresh, no re-resolve): it is the start-up cost we compare the
// shim against. With BASELINE_TOKEN_CACHE=<file> it caches client registration + tokens in a
// 0600 JSON file like the seed proxy does, so a second start skips the login (still resolves and
// initializes its own session).
//
// Env: LOXONE_SERIAL, LOXONE_USER, LOXONE_PASSWORD, LOXONE_CONNECT_URL, BASELINE_TOKEN_CACHE.
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";

// node-html-parser and tough-cookie are dependencies of the daemon package, not of the repo root.
const requireFromDaemon = createRequire(new URL("../packages/daemon/package.json", import.meta.url));
const { parse: parseHtml } = await import(pathToFileURL(requireFromDaemon.resolve("node-html-parser")).href);
const { CookieJar } = await import(pathToFileURL(requireFromDaemon.resolve("tough-cookie")).href);

const REDIRECT_URI = "http://127.0.0.1:1/callback";

/** GET <connect>/<serial>/mcp without following: the 307 Location is the current relay entry. */
export async function resolveEntry(connectUrl, serial) {
  const res = await fetch(`${connectUrl.replace(/\/$/, "")}/${encodeURIComponent(serial)}/mcp`, {
    redirect: "manual",
  });
  const loc = res.headers.get("location");
  if (res.status < 300 || res.status >= 400 || !loc)
    throw new Error(`connect answered ${res.status}, no entry`);
  await res.body?.cancel();
  return new URL(loc, connectUrl).href;
}

/** Drives the HTML login form at `authorizationUrl` headlessly and returns the `code`. */
export async function submitLoginForm(authorizationUrl, user, password) {
  const jar = new CookieJar();
  const get = async (url, init = {}) => {
    const cookie = await jar.getCookieString(url);
    const headers = { ...(init.headers ?? {}), ...(cookie ? { cookie } : {}) };
    const res = await fetch(url, { ...init, headers, redirect: "manual" });
    for (const c of res.headers.getSetCookie?.() ?? []) await jar.setCookie(c, url);
    return res;
  };
  let url = authorizationUrl.href ?? String(authorizationUrl);
  let res = await get(url);
  for (let hops = 0; res.status >= 300 && res.status < 400 && hops < 5; hops++) {
    url = new URL(res.headers.get("location"), url).href;
    await res.body?.cancel();
    res = await get(url);
  }
  const doc = parseHtml(await res.text());
  const form = doc.querySelectorAll("form").find((f) => f.querySelector('input[type="password"]'));
  if (!form) throw new Error("authorize did not return a login form");
  const fields = new URLSearchParams();
  for (const input of form.querySelectorAll("input")) {
    const name = input.getAttribute("name");
    if (!name) continue;
    const type = (input.getAttribute("type") ?? "text").toLowerCase();
    if (type === "password") fields.set(name, password);
    else if (type === "text" || type === "email") fields.set(name, user);
    else fields.set(name, input.getAttribute("value") ?? "");
  }
  let action = new URL(form.getAttribute("action") ?? url, url).href;
  res = await get(action, {
    method: (form.getAttribute("method") ?? "post").toUpperCase(),
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: fields.toString(),
  });
  for (let hops = 0; hops < 5; hops++) {
    const loc = res.headers.get("location");
    if (res.status < 300 || res.status >= 400 || !loc) break;
    await res.body?.cancel();
    action = new URL(loc, action).href;
    if (action.startsWith(REDIRECT_URI)) {
      const code = new URL(action).searchParams.get("code");
      if (code) return code;
      break;
    }
    res = await get(action);
  }
  throw new Error("login was rejected: check LOXONE_USER/LOXONE_PASSWORD");
}

/** Minimal OAuthClientProvider: in memory, optionally cached in a JSON file. */
export class HeadlessProvider {
  constructor(user, password, cacheFile) {
    this.user = user;
    this.password = password;
    this.cacheFile = cacheFile;
    this.saved = {};
    if (cacheFile) {
      try {
        this.saved = JSON.parse(readFileSync(cacheFile, "utf8"));
      } catch {
        this.saved = {};
      }
    }
    this.code = undefined;
  }
  get redirectUrl() {
    return REDIRECT_URI;
  }
  get clientMetadata() {
    return {
      client_name: "baseline-proxy",
      redirect_uris: [REDIRECT_URI],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    };
  }
  persist() {
    if (this.cacheFile) writeFileSync(this.cacheFile, JSON.stringify(this.saved), { mode: 0o600 });
  }
  clientInformation() {
    return this.saved.client;
  }
  saveClientInformation(info) {
    this.saved.client = info;
    this.persist();
  }
  tokens() {
    return this.saved.tokens;
  }
  saveTokens(tokens) {
    this.saved.tokens = tokens;
    this.persist();
  }
  async redirectToAuthorization(url) {
    this.code = await submitLoginForm(url, this.user, this.password);
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
  /** The advertised resource is only the audience (it names another relay): accept it. */
  async validateResourceURL(_serverUrl, resource) {
    return resource ? new URL(resource) : undefined;
  }
  invalidateCredentials(scope) {
    if (scope === "all" || scope === "tokens") delete this.saved.tokens;
    if (scope === "all" || scope === "client") delete this.saved.client;
    this.persist();
  }
}

/** Resolve + login + initialize: returns a connected upstream SDK Client (and the access token). */
export async function connectUpstream({ connectUrl, serial, user, password, cacheFile }) {
  const entry = await resolveEntry(connectUrl, serial);
  const provider = new HeadlessProvider(user, password, cacheFile);
  const open = async () => {
    const client = new Client({ name: "baseline-proxy", version: "0.0.0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(entry), { authProvider: provider }));
    return client;
  };
  try {
    return { client: await open(), entry, provider };
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !provider.code) throw e;
    const t = new StreamableHTTPClientTransport(new URL(entry), { authProvider: provider });
    await t.finishAuth(provider.code);
    return { client: await open(), entry, provider };
  }
}

async function main() {
  const env = process.env;
  const { client: upstream } = await connectUpstream({
    connectUrl: env.LOXONE_CONNECT_URL ?? "https://connect.loxonecloud.com",
    serial: env.LOXONE_SERIAL,
    user: env.LOXONE_USER,
    password: env.LOXONE_PASSWORD,
    cacheFile: env.BASELINE_TOKEN_CACHE,
  });
  const info = upstream.getServerVersion() ?? { name: "loxone", version: "0" };
  const server = new Server(info, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, (req) => upstream.listTools(req.params));
  server.setRequestHandler(CallToolRequestSchema, (req) => upstream.callTool(req.params));
  server.onclose = () => {
    upstream.close().finally(() => process.exit(0));
  };
  await server.connect(new StdioServerTransport());
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  main().catch((e) => {
    process.stderr.write(`baseline-proxy: ${e.message}\n`);
    process.exit(1);
  });
}
