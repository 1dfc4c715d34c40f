import { createHash, randomBytes } from "node:crypto";
import type { Simulator } from "../src/index.js";

export const REDIRECT_URI = "http://127.0.0.1:9/callback";

export interface Pkce {
  verifier: string;
  challenge: string;
}

export function pkce(): Pkce {
  const verifier = randomBytes(32).toString("base64url");
  return { verifier, challenge: createHash("sha256").update(verifier).digest("base64url") };
}

/** Follows connect's 307 and returns the relay MCP URL. */
export async function resolveRelay(sim: Simulator): Promise<string> {
  const res = await fetch(`${sim.connectUrl}/${sim.serial}/mcp`, { redirect: "manual" });
  if (res.status !== 307) throw new Error(`connect answered ${res.status}`);
  return res.headers.get("location") ?? "";
}

export async function register(
  origin: string,
  authMethod = "none",
): Promise<{ client_id: string; client_secret?: string }> {
  const res = await fetch(`${origin}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_name: "sim-test",
      redirect_uris: [REDIRECT_URI],
      token_endpoint_auth_method: authMethod,
      grant_types: ["authorization_code", "refresh_token"],
    }),
  });
  if (res.status !== 201) throw new Error(`register answered ${res.status}`);
  return (await res.json()) as { client_id: string; client_secret?: string };
}

export interface LoginForm {
  cookie: string;
  action: string;
  hidden: Record<string, string>;
  html: string;
}

/** Minimal form reader for the simulator's own login page (tests only). */
export function readForm(html: string): {
  action: string;
  hidden: Record<string, string>;
  visible: string[];
} {
  const action = /<form[^>]*action="([^"]*)"/.exec(html)?.[1] ?? "";
  const hidden: Record<string, string> = {};
  const visible: string[] = [];
  for (const m of html.matchAll(/<input([^>]*)>/g)) {
    const attrs = m[1] ?? "";
    const name = /name="([^"]*)"/.exec(attrs)?.[1];
    if (!name) continue;
    if (/type="hidden"/.test(attrs)) hidden[name] = /value="([^"]*)"/.exec(attrs)?.[1] ?? "";
    else visible.push(name);
  }
  return { action, hidden, visible };
}

export async function openLogin(
  origin: string,
  clientId: string,
  challenge: string,
  state = "st-1",
): Promise<LoginForm> {
  const q = new URLSearchParams({
    response_type: "code",
    client_id: clientId,
    redirect_uri: REDIRECT_URI,
    code_challenge: challenge,
    code_challenge_method: "S256",
    state,
    scope: "mcp",
  });
  const res = await fetch(`${origin}/authorize?${q}`, { redirect: "manual" });
  if (res.status !== 200) throw new Error(`authorize answered ${res.status}`);
  const html = await res.text();
  const cookie = (res.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
  const { action, hidden } = readForm(html);
  return { cookie, action, hidden, html };
}

export async function submitLogin(
  origin: string,
  form: LoginForm,
  username: string,
  password: string,
  opts: { cookie?: boolean } = {},
): Promise<Response> {
  return fetch(new URL(form.action, origin), {
    method: "POST",
    redirect: "manual",
    headers: {
      "content-type": "application/x-www-form-urlencoded",
      ...(opts.cookie === false ? {} : { cookie: form.cookie }),
    },
    body: new URLSearchParams({ ...form.hidden, username, password }).toString(),
  });
}

export async function tokenRequest(origin: string, params: Record<string, string>): Promise<Response> {
  return fetch(`${origin}/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams(params).toString(),
  });
}

export interface Tokens {
  access_token: string;
  refresh_token: string;
  expires_in: number;
  clientId: string;
}

/** Full headless login against a relay origin: DCR, authorize, form, code exchange. */
export async function login(sim: Simulator, origin: string): Promise<Tokens> {
  const client = await register(origin);
  const p = pkce();
  const form = await openLogin(origin, client.client_id, p.challenge);
  const res = await submitLogin(origin, form, sim.user, sim.password);
  const code = new URL(res.headers.get("location") ?? "").searchParams.get("code") ?? "";
  const tok = await tokenRequest(origin, {
    grant_type: "authorization_code",
    code,
    code_verifier: p.verifier,
    redirect_uri: REDIRECT_URI,
    client_id: client.client_id,
  });
  if (tok.status !== 200) throw new Error(`token answered ${tok.status}`);
  return { ...((await tok.json()) as Omit<Tokens, "clientId">), clientId: client.client_id };
}

/** Polls until fn() is truthy or the deadline passes. */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 5000, what = "condition"): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
