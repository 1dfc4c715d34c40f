/**
 * The headless authorization driver against the page shapes an authorization server may use:
 * login form (hidden fields + cookie), consent form, two-step login, auto-approve redirect.
 * The server here is a small real HTTP server playing a third-party authorization server.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  AuthError,
  AuthorizationDeniedError,
  LoginFormError,
  LoginRejectedError,
} from "../src/relay/auth/errors.js";
import { headlessAuthorize } from "../src/relay/auth/login-form.js";

const REDIRECT = "http://127.0.0.1:8976/callback";
let server: Server | undefined;

afterEach(async () => {
  if (server) await new Promise((r) => server!.close(r));
  server = undefined;
});

async function body(req: IncomingMessage): Promise<URLSearchParams> {
  let s = "";
  for await (const c of req) s += c;
  return new URLSearchParams(s);
}

/** A toy authorization server; `mode` picks the page flow. Records what it received. */
async function startAs() {
  const seen: Array<{ path: string; form?: Record<string, string>; cookie?: string }> = [];
  server = createServer(async (req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const form = req.method === "POST" ? Object.fromEntries(await body(req)) : undefined;
    seen.push({
      path: url.pathname,
      ...(form ? { form } : {}),
      ...(req.headers.cookie ? { cookie: req.headers.cookie } : {}),
    });
    const html = (s: string, headers: Record<string, string> = {}) => {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", ...headers });
      res.end(`<!doctype html><html><body>${s}</body></html>`);
    };
    const back = (params: Record<string, string>) => {
      const u = new URL(REDIRECT);
      for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
      res.writeHead(302, { location: u.href });
      res.end();
    };
    const state = url.searchParams.get("state") ?? form?.state ?? "";
    const loginForm = (err = "") =>
      `${err}<form method="POST" action="login?x=1">
        <input type="hidden" name="state" value="${state}">
        <input type="hidden" name="txn" value="a&amp;b">
        <input type="email" name="login_id" id="email">
        <input type="password" name="secret">
        <input type="checkbox" name="remember" value="1">
        <input type="checkbox" name="terms" value="yes" checked>
        <select name="realm"><option value="r1">One</option><option value="r2" selected>Two</option></select>
        <button type="submit" name="action" value="signin">Sign in</button>
      </form>`;
    if (url.pathname === "/authorize") {
      const mode = url.searchParams.get("mode");
      if (mode === "auto") return back({ code: "auto-code", state });
      if (mode === "denied") return back({ error: "access_denied", state });
      if (mode === "badstate") return back({ code: "c", state: "other" });
      if (mode === "down") {
        res.writeHead(503, { "content-type": "text/html" });
        return res.end("<p>maintenance</p>");
      }
      if (mode === "json") {
        res.writeHead(200, { "content-type": "application/json" });
        return res.end("{}");
      }
      if (mode === "twostep") {
        return html(
          `<form method="post" action="/user"><input type="hidden" name="state" value="${state}"><input name="username"><button>Next</button></form>`,
        );
      }
      return html(loginForm(), { "set-cookie": "SID=s1; Path=/; HttpOnly" });
    }
    if (url.pathname === "/user") {
      return html(
        `<form method="post" action="/login"><input type="hidden" name="state" value="${state}"><input type="hidden" name="user" value="${form?.username}"><input type="password" name="password"><button type="submit">Log in</button></form>`,
      );
    }
    if (url.pathname === "/login") {
      const pw = form?.secret ?? form?.password;
      if (pw !== "pw") return html(loginForm("<p>wrong</p>"));
      res.writeHead(303, {
        location: `/consent?state=${encodeURIComponent(state)}`,
        "set-cookie": "CONSENT=c1; Path=/",
      });
      return res.end();
    }
    if (url.pathname === "/consent" && req.method === "GET") {
      return html(`<form method="post">
        <input type="hidden" name="state" value="${state}">
        <button type="submit" name="decision" value="deny">Deny</button>
        <button type="submit" name="decision" value="allow">Allow access</button>
      </form>`);
    }
    if (url.pathname === "/consent" && req.method === "POST") {
      if (form?.decision !== "allow") return back({ error: "access_denied", state });
      return back({ code: "consented-code", state });
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const authorize = (mode: string, state = "S1") =>
    new URL(`${base}/authorize?mode=${mode}&state=${state}&client_id=c`);
  return { seen, authorize };
}

const opts = (password = "pw") => ({
  redirectUri: REDIRECT,
  user: "me@example.com",
  password,
  expectedState: "S1",
});

describe("headlessAuthorize", () => {
  it("fills the login form (every hidden field, checked boxes, selects, button), keeps cookies, approves consent", async () => {
    const as = await startAs();
    const code = await headlessAuthorize(as.authorize("login"), opts());
    expect(code).toBe("consented-code");
    const login = as.seen.find((s) => s.path === "/login")!;
    expect(login.form).toEqual({
      state: "S1",
      txn: "a&b",
      login_id: "me@example.com",
      secret: "pw",
      terms: "yes",
      realm: "r2",
      action: "signin",
    });
    expect(login.cookie).toBe("SID=s1");
    const consent = as.seen.find((s) => s.path === "/consent" && s.form)!;
    expect(consent.form).toEqual({ state: "S1", decision: "allow" });
    expect(consent.cookie).toContain("CONSENT=c1");
  });

  it("re-rendered login form after posting the password ⇒ LoginRejectedError (one attempt only)", async () => {
    const as = await startAs();
    const err = await headlessAuthorize(as.authorize("login"), opts("nope")).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LoginRejectedError);
    expect((err as LoginRejectedError).code).toBe("LOGIN_REJECTED");
    expect((err as Error).message).toBe("login was rejected: check LOXONE_USER/LOXONE_PASSWORD");
    expect((err as Error).message).not.toContain("nope");
    expect(as.seen.filter((s) => s.path === "/login")).toHaveLength(1);
  });

  it("auto-approve: a redirect straight back to redirect_uri yields the code", async () => {
    const as = await startAs();
    expect(await headlessAuthorize(as.authorize("auto"), opts())).toBe("auto-code");
  });

  it("two-step login (user page, then password page)", async () => {
    const as = await startAs();
    expect(await headlessAuthorize(as.authorize("twostep"), opts())).toBe("consented-code");
    expect(as.seen.find((s) => s.path === "/user")?.form?.username).toBe("me@example.com");
  });

  it("refuses a different state, reports access_denied, and a page without a form", async () => {
    const as = await startAs();
    const bad = await headlessAuthorize(as.authorize("badstate"), opts()).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(AuthError);
    expect((bad as AuthError).code).toBe("STATE_MISMATCH");
    await expect(headlessAuthorize(as.authorize("denied"), opts())).rejects.toBeInstanceOf(
      AuthorizationDeniedError,
    );
    await expect(headlessAuthorize(as.authorize("json"), opts())).rejects.toBeInstanceOf(LoginFormError);
    // An overloaded authorization server is "try later", not a rejected login.
    await expect(headlessAuthorize(as.authorize("down"), opts())).rejects.toMatchObject({
      code: "AUTH_UNAVAILABLE",
    });
  });
});
