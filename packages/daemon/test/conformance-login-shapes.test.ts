/**
 * The headless authorization driver against every shape an authorization server may answer
 * with, served over real HTTP by a small authorization-page server written here:
 *  - an HTML login form (hidden fields, a session cookie) followed by a consent form;
 *  - a plain redirect straight back to redirect_uri (auto-approve, as the conformance servers do);
 *  - a wrong password (the login form comes back) and a refusal (error=access_denied).
 * The simulator covers the Loxone login form itself; the conformance suite the plain redirect.
 */
import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuthError, LoginRejectedError } from "../src/relay/auth/errors.js";
import { headlessAuthorize } from "../src/relay/auth/login-form.js";

const USER = "admin";
const PASSWORD = "s3cret-pw";
const REDIRECT = "http://127.0.0.1:8976/callback";

interface Tx {
  redirect: string;
  state: string;
  csrf: string;
  session: string;
  loggedIn: boolean;
}

let server: Server;
let base: string;
const txs = new Map<string, Tx>();
const seen: string[] = [];

function html(res: ServerResponse, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(200, { "content-type": "text/html; charset=utf-8", ...headers });
  res.end(`<!doctype html><html><body>${body}</body></html>`);
}

function back(res: ServerResponse, tx: Pick<Tx, "redirect" | "state">, params: Record<string, string>): void {
  const u = new URL(tx.redirect);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  u.searchParams.set("state", tx.state);
  res.writeHead(302, { location: u.href });
  res.end();
}

function loginPage(res: ServerResponse, txId: string, tx: Tx, error = ""): void {
  html(
    res,
    `${error ? `<p class="error">${error}</p>` : ""}
     <form method="post" action="/login">
       <input type="hidden" name="tx" value="${txId}">
       <input type="hidden" name="csrf" value="${tx.csrf}">
       <label>User <input type="text" name="username" autocomplete="username"></label>
       <label>Password <input type="password" name="password"></label>
       <button type="submit">Sign in</button>
     </form>`,
    { "set-cookie": `SID=${tx.session}; Path=/; HttpOnly` },
  );
}

async function body(req: IncomingMessage): Promise<URLSearchParams> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? "/", base);
  seen.push(`${req.method} ${url.pathname}`);
  const cookie = /SID=([^;]+)/.exec(req.headers.cookie ?? "")?.[1];
  if (url.pathname === "/authorize") {
    const tx: Tx = {
      redirect: url.searchParams.get("redirect_uri") ?? "",
      state: url.searchParams.get("state") ?? "",
      csrf: randomBytes(8).toString("hex"),
      session: randomBytes(8).toString("hex"),
      loggedIn: false,
    };
    const mode = url.searchParams.get("mode");
    if (mode === "plain") return back(res, tx, { code: "plain-code" });
    if (mode === "deny")
      return back(res, tx, { error: "access_denied", error_description: "user not allowed" });
    const id = randomBytes(6).toString("hex");
    txs.set(id, tx);
    return loginPage(res, id, tx);
  }
  if (url.pathname === "/login" && req.method === "POST") {
    const f = await body(req);
    const id = f.get("tx") ?? "";
    const tx = txs.get(id);
    if (!tx || f.get("csrf") !== tx.csrf || cookie !== tx.session) {
      res.writeHead(400, { "content-type": "text/plain" });
      res.end("bad transaction");
      return;
    }
    if (f.get("username") !== USER || f.get("password") !== PASSWORD) {
      return loginPage(res, id, tx, "Invalid user name or password");
    }
    tx.loggedIn = true;
    return html(
      res,
      `<h1>Allow loxmcp to control your home?</h1>
       <form method="post" action="/consent">
         <input type="hidden" name="tx" value="${id}">
         <button type="submit" name="decision" value="deny">Deny</button>
         <button type="submit" name="decision" value="approve">Allow</button>
       </form>`,
    );
  }
  if (url.pathname === "/consent" && req.method === "POST") {
    const f = await body(req);
    const tx = txs.get(f.get("tx") ?? "");
    if (!tx?.loggedIn || cookie !== tx.session) {
      res.writeHead(400);
      res.end("not logged in");
      return;
    }
    if (f.get("decision") !== "approve") return back(res, tx, { error: "access_denied" });
    return back(res, tx, { code: "consented-code" });
  }
  res.writeHead(404);
  res.end();
}

beforeAll(async () => {
  server = createServer((req, res) => {
    handle(req, res).catch(() => {
      res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

function authorizeUrl(mode: string, state: string): URL {
  const u = new URL("/authorize", base);
  u.searchParams.set("response_type", "code");
  u.searchParams.set("client_id", "c1");
  u.searchParams.set("redirect_uri", REDIRECT);
  u.searchParams.set("state", state);
  u.searchParams.set("mode", mode);
  return u;
}

describe("headless authorization driver: the shapes an authorization server answers with", () => {
  it("HTML login form (hidden fields + cookie), then a consent form: approves and returns the code", async () => {
    seen.length = 0;
    const code = await headlessAuthorize(authorizeUrl("form", "st-1"), {
      redirectUri: REDIRECT,
      user: USER,
      password: PASSWORD,
      expectedState: "st-1",
    });
    expect(code).toBe("consented-code");
    expect(seen).toEqual(["GET /authorize", "POST /login", "POST /consent"]);
  });

  it("plain redirect straight to redirect_uri (auto-approve): returns the code without any form", async () => {
    seen.length = 0;
    const code = await headlessAuthorize(authorizeUrl("plain", "st-2"), {
      redirectUri: REDIRECT,
      user: USER,
      password: PASSWORD,
      expectedState: "st-2",
    });
    expect(code).toBe("plain-code");
    expect(seen).toEqual(["GET /authorize"]);
  });

  it("wrong password: the form comes back once and the driver says the login was rejected", async () => {
    seen.length = 0;
    const err = await headlessAuthorize(authorizeUrl("form", "st-3"), {
      redirectUri: REDIRECT,
      user: USER,
      password: "wrong-password",
      expectedState: "st-3",
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LoginRejectedError);
    expect(String((err as Error).message)).not.toContain("wrong-password");
    // One POST of the credentials, never a retry loop.
    expect(seen.filter((s) => s === "POST /login")).toHaveLength(1);
  });

  it("refusal (error=access_denied) and a foreign state are errors, never a code", async () => {
    const denied = await headlessAuthorize(authorizeUrl("deny", "st-4"), {
      redirectUri: REDIRECT,
      user: USER,
      password: PASSWORD,
      expectedState: "st-4",
    }).catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(AuthError);
    expect((denied as AuthError).code).toBe("AUTHORIZATION_DENIED");

    const csrf = await headlessAuthorize(authorizeUrl("plain", "st-5"), {
      redirectUri: REDIRECT,
      user: USER,
      password: PASSWORD,
      expectedState: "another-state",
    }).catch((e: unknown) => e);
    expect(csrf).toBeInstanceOf(AuthError);
    expect((csrf as AuthError).code).toBe("STATE_MISMATCH");
  });
});
