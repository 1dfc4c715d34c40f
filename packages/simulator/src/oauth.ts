import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import { escapeHtml, parseCookies, parseParams, readBody, sendHtml, sendJson } from "./http.js";
import { debug } from "./log.js";
import { type AuthRequest, type Miniserver, randomId } from "./state.js";

export const LOGIN_COOKIE = "LXSESSION";
const CODE_TTL_MS = 5 * 60 * 1000;
export const SCOPES = ["mcp"];

/** Path of the protected-resource metadata for the MCP endpoint (what 401s point at). */
export const PRM_PATH = "/.well-known/oauth-protected-resource/mcp";

/**
 * OAuth 2.1 authorization server as the Miniserver does it, served by every relay
 * (issuer = that relay's origin). Returns false when the path is not an OAuth path.
 */
export async function handleOAuth(
  ms: Miniserver,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  origin: string,
): Promise<boolean> {
  const path = url.pathname;
  const method = req.method ?? "GET";
  if (method === "GET" && (path === PRM_PATH || path === "/.well-known/oauth-protected-resource")) {
    sendJson(res, 200, {
      resource: ms.opts.resource,
      authorization_servers: [origin],
      scopes_supported: SCOPES,
      bearer_methods_supported: ["header"],
      resource_name: `Loxone Miniserver ${ms.opts.serial}`,
    });
    return true;
  }
  if (
    method === "GET" &&
    (path === "/.well-known/oauth-authorization-server" || path === "/.well-known/openid-configuration")
  ) {
    sendJson(res, 200, {
      issuer: origin,
      authorization_endpoint: `${origin}/authorize`,
      token_endpoint: `${origin}/token`,
      registration_endpoint: `${origin}/register`,
      response_types_supported: ["code"],
      grant_types_supported: ["authorization_code", "refresh_token"],
      code_challenge_methods_supported: ["S256"],
      token_endpoint_auth_methods_supported: ["none", "client_secret_post"],
      scopes_supported: SCOPES,
    });
    return true;
  }
  if (path === "/register" && method === "POST") {
    await register(ms, req, res);
    return true;
  }
  if (path === "/authorize" && method === "GET") {
    authorize(ms, res, url);
    return true;
  }
  if (path === "/login" && method === "POST") {
    await login(ms, req, res);
    return true;
  }
  if (path === "/token" && method === "POST") {
    await token(ms, req, res);
    return true;
  }
  return false;
}

function oauthError(res: ServerResponse, status: number, error: string, description: string): void {
  sendJson(res, status, { error, error_description: description });
}

async function register(ms: Miniserver, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let meta: Record<string, unknown>;
  try {
    meta = JSON.parse(await readBody(req)) as Record<string, unknown>;
    if (!meta || typeof meta !== "object") throw new Error("not an object");
  } catch {
    oauthError(
      res,
      400,
      "invalid_client_metadata",
      "Body must be a JSON object of client metadata (RFC 7591).",
    );
    return;
  }
  const redirectUris = meta.redirect_uris;
  if (
    !Array.isArray(redirectUris) ||
    redirectUris.length === 0 ||
    !redirectUris.every((u) => typeof u === "string" && URL.canParse(u))
  ) {
    oauthError(res, 400, "invalid_redirect_uri", "redirect_uris must be a non-empty array of absolute URLs.");
    return;
  }
  const authMethod =
    typeof meta.token_endpoint_auth_method === "string" ? meta.token_endpoint_auth_method : "none";
  if (authMethod !== "none" && authMethod !== "client_secret_post") {
    oauthError(
      res,
      400,
      "invalid_client_metadata",
      `token_endpoint_auth_method ${authMethod} is not supported.`,
    );
    return;
  }
  const clientId = `lxc_${randomId(12)}`;
  const clientSecret = authMethod === "client_secret_post" ? randomId() : undefined;
  const clientName = typeof meta.client_name === "string" ? meta.client_name : undefined;
  ms.clients.set(clientId, { clientId, clientSecret, redirectUris: redirectUris as string[], clientName });
  ms.counters.registrations += 1;
  debug(`registered client ${clientId} (${clientName ?? "unnamed"})`);
  sendJson(res, 201, {
    ...meta,
    client_id: clientId,
    client_id_issued_at: Math.floor(Date.now() / 1000),
    redirect_uris: redirectUris,
    token_endpoint_auth_method: authMethod,
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    ...(clientSecret ? { client_secret: clientSecret, client_secret_expires_at: 0 } : {}),
  });
}

function errorPage(res: ServerResponse, status: number, title: string, text: string): void {
  sendHtml(
    res,
    status,
    `<!doctype html><html><head><title>${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1><p class="error">${escapeHtml(text)}</p></body></html>`,
  );
}

function authorize(ms: Miniserver, res: ServerResponse, url: URL): void {
  const q = url.searchParams;
  const clientId = q.get("client_id") ?? "";
  const client = ms.clients.get(clientId);
  if (!client) {
    errorPage(
      res,
      400,
      "Unknown client",
      "client_id is not registered. Register the client again (POST /register).",
    );
    return;
  }
  const redirectUri = q.get("redirect_uri") ?? client.redirectUris[0] ?? "";
  if (!client.redirectUris.includes(redirectUri)) {
    errorPage(res, 400, "Invalid redirect_uri", "redirect_uri is not registered for this client.");
    return;
  }
  const back = new URL(redirectUri);
  const state = q.get("state") ?? undefined;
  const fail = (error: string, description: string) => {
    back.searchParams.set("error", error);
    back.searchParams.set("error_description", description);
    if (state !== undefined) back.searchParams.set("state", state);
    res.writeHead(302, { location: back.toString() });
    res.end();
  };
  if (q.get("response_type") !== "code") {
    fail("unsupported_response_type", "response_type must be code");
    return;
  }
  const challenge = q.get("code_challenge");
  if (!challenge || q.get("code_challenge_method") !== "S256") {
    fail("invalid_request", "PKCE with code_challenge_method=S256 is required");
    return;
  }
  const authReq: AuthRequest = {
    id: randomId(16),
    clientId,
    redirectUri,
    state,
    codeChallenge: challenge,
    scope: q.get("scope") ?? undefined,
    resource: q.get("resource") ?? undefined,
  };
  ms.authRequests.set(authReq.id, authReq);
  const sessionId = randomId();
  const csrf = randomId(16);
  ms.loginSessions.set(sessionId, { csrf, authRequestId: authReq.id });
  sendHtml(res, 200, loginPage(ms, authReq.id, csrf, undefined), {
    "set-cookie": `${LOGIN_COOKIE}=${sessionId}; Path=/; HttpOnly; SameSite=Lax`,
  });
}

function loginPage(ms: Miniserver, authRequestId: string, csrf: string, error: string | undefined): string {
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Loxone – Sign in</title></head>
<body>
<main class="login">
<h1>Sign in to Miniserver ${escapeHtml(ms.opts.serial)}</h1>
${error ? `<div class="error" role="alert">${escapeHtml(error)}</div>` : ""}
<form method="post" action="/login" id="login-form">
  <input type="hidden" name="auth_request" value="${escapeHtml(authRequestId)}">
  <input type="hidden" name="csrf_token" value="${escapeHtml(csrf)}">
  <input type="hidden" name="lang" value="en">
  <label>User <input type="text" name="username" autocomplete="username"></label>
  <label>Password <input type="password" name="password" autocomplete="current-password"></label>
  <button type="submit">Sign in</button>
</form>
</main>
</body>
</html>`;
}

async function login(ms: Miniserver, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const form = parseParams(req, await readBody(req));
  const sessionId = parseCookies(req.headers.cookie)[LOGIN_COOKIE];
  const session = sessionId ? ms.loginSessions.get(sessionId) : undefined;
  if (!sessionId || !session) {
    errorPage(
      res,
      400,
      "Session expired",
      "The login session cookie is missing or expired. Start the sign-in again.",
    );
    return;
  }
  if (!form.csrf_token || form.csrf_token !== session.csrf || form.auth_request !== session.authRequestId) {
    errorPage(res, 400, "Invalid form", "The form is outdated (CSRF check failed). Start the sign-in again.");
    return;
  }
  const authReq = ms.authRequests.get(session.authRequestId);
  if (!authReq) {
    errorPage(
      res,
      400,
      "Request expired",
      "The authorization request is no longer valid. Start the sign-in again.",
    );
    return;
  }
  if (!safeEqual(form.username ?? "", ms.opts.user) || !safeEqual(form.password ?? "", ms.opts.password)) {
    ms.counters.failedLogins += 1;
    session.csrf = randomId(16);
    debug("login failed: wrong credentials");
    sendHtml(res, 200, loginPage(ms, authReq.id, session.csrf, "Invalid username or password"));
    return;
  }
  ms.loginSessions.delete(sessionId);
  ms.authRequests.delete(authReq.id);
  const code = randomId();
  ms.codes.set(code, {
    clientId: authReq.clientId,
    redirectUri: authReq.redirectUri,
    codeChallenge: authReq.codeChallenge,
    scope: authReq.scope,
    resource: authReq.resource,
    expiresAt: Date.now() + CODE_TTL_MS,
  });
  ms.counters.logins += 1;
  debug(`login ok for client ${authReq.clientId}`);
  const back = new URL(authReq.redirectUri);
  back.searchParams.set("code", code);
  if (authReq.state !== undefined) back.searchParams.set("state", authReq.state);
  res.writeHead(302, {
    location: back.toString(),
    "set-cookie": `${LOGIN_COOKIE}=; Path=/; HttpOnly; Max-Age=0`,
  });
  res.end();
}

function safeEqual(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

async function token(ms: Miniserver, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const p = parseParams(req, await readBody(req));
  const client = ms.clients.get(p.client_id ?? "");
  if (!client) {
    oauthError(res, 401, "invalid_client", "Unknown client_id. Register the client again.");
    return;
  }
  if (client.clientSecret !== undefined && p.client_secret !== client.clientSecret) {
    oauthError(res, 401, "invalid_client", "client_secret is missing or wrong.");
    return;
  }
  if (p.grant_type === "authorization_code") {
    const code = ms.codes.get(p.code ?? "");
    // Codes are single-use: any redemption attempt consumes it.
    if (p.code) ms.codes.delete(p.code);
    if (!code || code.expiresAt < Date.now() || code.clientId !== client.clientId) {
      oauthError(res, 400, "invalid_grant", "Authorization code is invalid, expired or already used.");
      return;
    }
    if (p.redirect_uri !== undefined && p.redirect_uri !== code.redirectUri) {
      oauthError(res, 400, "invalid_grant", "redirect_uri does not match the authorization request.");
      return;
    }
    const verifier = p.code_verifier ?? "";
    const computed = createHash("sha256").update(verifier).digest("base64url");
    if (!verifier || computed !== code.codeChallenge) {
      oauthError(res, 400, "invalid_grant", "PKCE verification failed (code_verifier does not match).");
      return;
    }
    sendJson(res, 200, ms.issueTokens(client.clientId, code.scope, p.resource ?? code.resource));
    return;
  }
  if (p.grant_type === "refresh_token") {
    const old = ms.refreshTokens.get(p.refresh_token ?? "");
    if (!old || old.clientId !== client.clientId || old.expiresAt < Date.now()) {
      if (p.refresh_token) ms.refreshTokens.delete(p.refresh_token);
      oauthError(
        res,
        400,
        "invalid_grant",
        "Refresh token is invalid, expired or already used. Log in again.",
      );
      return;
    }
    ms.refreshTokens.delete(p.refresh_token ?? "");
    ms.counters.refreshes += 1;
    sendJson(res, 200, ms.issueTokens(client.clientId, old.scope, old.resource));
    return;
  }
  oauthError(res, 400, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token.");
}
