/**
 * A small REAL MCP upstream for unit-level policy tests: logs in to the simulator over HTTP
 * (dynamic registration, the HTML login form with its cookie, PKCE, token exchange) and drives
 * the simulator's MCP server with the SDK `Client`. It implements the daemon's `Upstream`
 * contract so the policy gate can be tested without the whole daemon; `setState()` lets a test
 * put it into "degraded" to prove that writes are refused then. (Not the product's upstream:
 * no refresh, no recovery.)
 */
import { createHash, randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import type { Simulator } from "@loxmcp/simulator";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { z } from "zod";
import type {
  ForwardCall,
  InitializeInfo,
  PolicyUpstreamPort,
  Upstream,
  UpstreamEvents,
  UpstreamRequestOptions,
  UpstreamState,
  UpstreamStatus,
} from "../src/contracts.js";
import { UpstreamError } from "../src/contracts.js";
import { forwardFor } from "../src/mux/forward.js";
import { policyUpstreamPort } from "../src/policy-port.js";

const REDIRECT = "http://127.0.0.1:9/callback";
const AnyResult = z.object({}).passthrough();

export interface SimUpstream extends Upstream {
  setState(state: UpstreamState, reason?: string): void;
  /** Forgets the cached tools/list and emits toolsChanged, as after a list_changed (sim.changeTools). */
  reloadTools(): void;
}

/** Headless login against the simulator; returns an access token. */
export async function simAccessToken(sim: Simulator): Promise<string> {
  const mcpUrl = new URL(sim.relayUrls[sim.currentRelay()] ?? "");
  const origin = mcpUrl.origin;
  const reg = await fetch(`${origin}/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      client_name: "policy-test",
      redirect_uris: [REDIRECT],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
    }),
  });
  const client = (await reg.json()) as { client_id: string };
  const verifier = randomBytes(32).toString("base64url");
  const challenge = createHash("sha256").update(verifier).digest("base64url");
  const auth = new URL(`${origin}/authorize`);
  auth.search = new URLSearchParams({
    response_type: "code",
    client_id: client.client_id,
    redirect_uri: REDIRECT,
    code_challenge: challenge,
    code_challenge_method: "S256",
    state: "s1",
  }).toString();
  const page = await fetch(auth, { redirect: "manual" });
  const cookie = (page.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
  const html = await page.text();
  const form = new URLSearchParams();
  for (const m of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g))
    form.set(m[1] ?? "", m[2] ?? "");
  form.set("username", sim.user);
  form.set("password", sim.password);
  const login = await fetch(`${origin}/login`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie },
    body: form.toString(),
  });
  const location = login.headers.get("location");
  const code = location ? new URL(location).searchParams.get("code") : null;
  if (!code) throw new Error(`simulator login failed (HTTP ${login.status})`);
  const tok = await fetch(`${origin}/token`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code,
      redirect_uri: REDIRECT,
      client_id: client.client_id,
      code_verifier: verifier,
    }).toString(),
  });
  const tokens = (await tok.json()) as { access_token?: string };
  if (!tokens.access_token) throw new Error("simulator token exchange failed");
  return tokens.access_token;
}

export async function connectSimUpstream(sim: Simulator): Promise<SimUpstream> {
  const token = await simAccessToken(sim);
  const url = new URL(sim.relayUrls[sim.currentRelay()] ?? "");
  const client = new Client({ name: "policy-test-upstream", version: "0.0.0" });
  await client.connect(
    new StreamableHTTPClientTransport(url, {
      requestInit: { headers: { authorization: `Bearer ${token}` } },
    }),
  );
  const emitter = new EventEmitter();
  let state: UpstreamState = "ready";
  let reason: string | undefined;
  const counters = { logins: 1, refreshes: 0, resolves: 0, reconnects: 0, requests: 0, errors: 0 };
  let tools: { tools: Array<Record<string, unknown>> } | undefined;

  const up: SimUpstream = {
    start() {},
    async stop() {
      state = "stopped";
      await client.close();
    },
    status(): UpstreamStatus {
      const s: UpstreamStatus = { state, counters: { ...counters }, entry: url.toString() };
      if (reason) s.reason = reason;
      return s;
    },
    async whenReady() {
      if (state !== "ready") throw new UpstreamError("UNAVAILABLE", `upstream is ${state}`);
    },
    initializeInfo(): InitializeInfo | undefined {
      const v = client.getServerVersion();
      if (!v) return undefined;
      return {
        protocolVersion: "2025-06-18",
        capabilities: {},
        serverInfo: { name: v.name, version: v.version },
      };
    },
    async listTools() {
      if (!tools) tools = (await client.listTools()) as unknown as { tools: Array<Record<string, unknown>> };
      return tools;
    },
    async request(method: string, params: unknown, opts: UpstreamRequestOptions) {
      if (state !== "ready") throw new UpstreamError("UNAVAILABLE", `upstream is ${state}; nothing was sent`);
      counters.requests++;
      // One signal per request, as the daemon's upstream does: a long-lived caller signal (the
      // policy's own) must not collect a listener per request.
      const ac = new AbortController();
      const onAbort = () => ac.abort(opts.signal?.reason);
      if (opts.signal?.aborted) onAbort();
      else opts.signal?.addEventListener("abort", onAbort, { once: true });
      try {
        return await client.request({ method, params: params as Record<string, unknown> }, AnyResult, {
          signal: ac.signal,
        });
      } catch (err) {
        counters.errors++;
        const e = err as { code?: unknown; message?: string };
        if (typeof e.code === "number")
          throw new UpstreamError("REMOTE_ERROR", e.message ?? "remote error", e.code);
        throw new UpstreamError(opts.retryable ? "UNAVAILABLE" : "OUTCOME_UNKNOWN", e.message ?? String(err));
      } finally {
        opts.signal?.removeEventListener("abort", onAbort);
      }
    },
    async notify(method: string, params?: unknown) {
      await client.notification({ method, params: params as Record<string, unknown> });
    },
    async relogin() {},
    on<E extends keyof UpstreamEvents>(event: E, listener: UpstreamEvents[E]) {
      emitter.on(event, listener as (...a: unknown[]) => void);
      return up;
    },
    off<E extends keyof UpstreamEvents>(event: E, listener: UpstreamEvents[E]) {
      emitter.off(event, listener as (...a: unknown[]) => void);
      return up;
    },
    reloadTools() {
      tools = undefined;
      emitter.emit("toolsChanged");
    },
    setState(s: UpstreamState, r?: string) {
      state = s;
      reason = r;
      emitter.emit("state", up.status());
    },
  };
  return up;
}

/**
 * The policy's port onto this upstream, wired as the daemon wires it: the policy's own writes take
 * the forward path of a client's call (mux/forward.ts; no slot limit here). `onForward` sees who
 * asked for one.
 */
export function simPolicyPort(
  up: Upstream,
  onForward?: (holder: string, signal: AbortSignal) => void,
): PolicyUpstreamPort {
  return policyUpstreamPort(up, (holder, signal): ForwardCall => {
    onForward?.(holder, signal);
    return forwardFor({ upstream: up, slots: undefined, holder, signal });
  });
}
