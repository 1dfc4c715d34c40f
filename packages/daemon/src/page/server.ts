/**
 * The person's local page (docs/page.md), served by the daemon itself on 127.0.0.1 only.
 *
 * - Its URL comes only from the daemon (`loxmcp/page` on the socket, used by `loxmcp open` and the
 *   person's shim): nothing guesses a port, so a process squatting one cannot pose as the page.
 * - Sign-in: the URL carries a one-time secret in its fragment (never sent in a request line, a
 *   log or a Referer). login.js removes it from the address bar and history at once and POSTs it;
 *   the answer sets an HttpOnly, SameSite=Strict cookie. A used or expired secret is refused.
 * - Every request: the Host header must be exactly 127.0.0.1:<port> (DNS rebinding), a request
 *   that carries an Origin must carry the page's own (no CORS, ever); every POST must carry the
 *   page's Origin, the session cookie, JSON, and the session's CSRF token. Nothing changes state on
 *   a GET. A strict Content-Security-Policy allows only the page's own files (http.ts).
 * - Its HTTP connections, live updates included, count against the daemon's connection limits
 *   (mux/server.ts `admitPageConnection`): a flood of the port cannot take the CLI's slots.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createNetServer, type Server, type Socket } from "node:net";
import { ErrorCodes } from "@loxmcp/common";
import type { Logger } from "pino";
import type { PageConfig } from "../config.js";
import { ControlError, type ControlRegistry } from "../contracts.js";
import type { ControlDispatcher } from "../mux/session.js";
import { ACTIONS, type Action, PageApi, PageApiError } from "./api.js";
import { PageAssets, STATIC_FILES } from "./assets.js";
import { LOGIN_SECRET_TTL_MS, PageAuth, type PageSession, sameSecret } from "./auth.js";
import {
  cookieValue,
  notAllowed,
  pathOf,
  readJsonBody,
  sendAsset,
  sendJson,
  sendText,
  setSecurityHeaders,
} from "./http.js";
import { LiveUpdates } from "./live.js";

export interface PageServerOptions {
  config: PageConfig;
  logger: Logger;
  controls: ControlDispatcher;
  /** The daemon's `loxmcp/status`. */
  status: () => Record<string, unknown>;
  /** Admits one HTTP connection against the daemon's limits (undefined: refused). */
  admit: () => (() => void) | undefined;
  /** Open page connections (for status). */
  connections?: () => number;
}

export interface PageStatus {
  enabled: boolean;
  /** The page's address (no secret in it); open it signed in with `loxmcp open`. */
  url?: string;
  /** Why there is no page (port in use …). */
  error?: string;
  sessions: number;
  connections: number;
  liveUpdates: number;
  /** Requests refused since the start (wrong Host or Origin, no session, no CSRF token, a GET that would change something …). */
  refused: number;
}

export class PageServer {
  readonly auth = new PageAuth();
  private readonly api: PageApi;
  private readonly live: LiveUpdates;
  private readonly log: Logger;
  private net: Server | undefined;
  private readonly http = createHttpServer({
    requestTimeout: 15_000,
    headersTimeout: 10_000,
    keepAliveTimeout: 5_000,
  });
  private readonly sockets = new Set<Socket>();
  private port: number | undefined;
  private error: string | undefined;
  private assets: PageAssets | undefined;
  /** Refusals since the last log line about them (a flood must not flood the log). */
  private refusals = 0;
  private refusedTotal = 0;
  private lastRefusalLog = 0;

  constructor(private readonly opts: PageServerOptions) {
    this.log = opts.logger;
    this.api = new PageApi(opts.controls, opts.status);
    this.live = new LiveUpdates(
      () => this.api.state(),
      (s) => this.auth.alive(s),
      this.log,
    );
    this.http.timeout = 30_000;
    this.http.on("request", (req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        this.log.warn({ err: (err as Error).message, path: pathOf(req) }, "page: request failed");
        if (!res.headersSent) sendJson(res, 500, { error: "the daemon failed to answer" });
        else res.end();
      });
    });
    this.http.on("clientError", (_err, socket) => {
      if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    });
  }

  /** `http://127.0.0.1:<port>` once listening. */
  origin(): string | undefined {
    return this.port === undefined ? undefined : `http://127.0.0.1:${this.port}`;
  }

  /** Listens on 127.0.0.1. Never throws: without a page the daemon still runs (status says why). */
  async start(): Promise<void> {
    if (!this.opts.config.enabled) {
      this.log.info("the page is off (page.enabled is false in config.json)");
      return;
    }
    try {
      this.assets = new PageAssets();
    } catch (err) {
      this.error = (err as Error).message;
      this.log.error({ err: this.error }, "page: not started");
      return;
    }
    const net = createNetServer((socket) => this.accept(socket));
    const wanted = this.opts.config.port;
    try {
      await new Promise<void>((resolve, reject) => {
        net.once("error", reject);
        net.listen({ host: "127.0.0.1", port: wanted, exclusive: true }, () => {
          net.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      this.error =
        code === "EADDRINUSE"
          ? `port ${wanted} on 127.0.0.1 is in use by another program: set another page.port in config.json (0 picks a free one), then \`loxmcp restart\``
          : `could not listen on 127.0.0.1:${wanted} (${code ?? (err as Error).message})`;
      this.log.error({ port: wanted }, `page: not started: ${this.error}`);
      return;
    }
    net.on("error", (err) => this.log.warn({ err: err.message }, "page: server error"));
    this.net = net;
    this.port = (net.address() as { port: number }).port;
    this.log.info({ url: `${this.origin()}/` }, "page listening (open it with `loxmcp open`)");
  }

  async stop(): Promise<void> {
    this.live.close();
    const net = this.net;
    this.net = undefined;
    if (net) await new Promise<void>((resolve) => net.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    this.http.close();
  }

  status(): PageStatus {
    const origin = this.origin();
    const out: PageStatus = {
      enabled: this.opts.config.enabled,
      sessions: this.auth.counts().sessions,
      connections: this.opts.connections?.() ?? this.sockets.size,
      liveUpdates: this.live.size,
      refused: this.refusedTotal,
    };
    if (origin) out.url = `${origin}/`;
    if (this.error) out.error = this.error;
    return out;
  }

  /** A one-time sign-in link (for `loxmcp open` and the person's desktop notification). */
  link(by: string, purpose: string): { url: string; page: string; expiresInSec: number } {
    const origin = this.origin();
    if (!origin) {
      throw new ControlError(
        ErrorCodes.InvalidRequest,
        this.opts.config.enabled
          ? `the page is not available: ${this.error ?? "it did not start"}`
          : "the page is off: page.enabled is false in config.json (set it to true and run `loxmcp restart`)",
        { reason: this.opts.config.enabled ? "page-failed" : "page-off" },
      );
    }
    const { secret } = this.auth.issueSecret();
    this.log.info({ by, for: purpose }, "page: one-time sign-in link issued");
    return {
      url: `${origin}/login#${secret}`,
      page: `${origin}/`,
      expiresInSec: Math.round(LOGIN_SECRET_TTL_MS / 1000),
    };
  }

  /** `loxmcp/page {action: "link" | "status", for?}` on control connections. */
  register(controls: ControlRegistry): void {
    controls.register("loxmcp/page", (params, ctx) => {
      const action = params.action ?? "link";
      if (action === "status") return this.status();
      if (action !== "link")
        throw new ControlError(
          ErrorCodes.InvalidParams,
          `unknown page action "${String(action)}": use link or status`,
        );
      const purpose = typeof params.for === "string" ? params.for.slice(0, 40) : "loxmcp open";
      return this.link(ctx.client.name, purpose);
    });
  }

  // ------------------------------------------------------------------ connections

  private accept(socket: Socket): void {
    socket.on("error", () => {});
    const release = this.opts.admit();
    if (!release) {
      this.refused("connection", "too many connections (limits.pageConnections / limits.maxConnections)");
      const body = "too many connections to loxmcpd's page; close other tabs of it and reload\n";
      socket.end(
        `HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\nRetry-After: 5\r\n\r\n${body}`,
      );
      setTimeout(() => socket.destroy(), 1_000).unref();
      return;
    }
    this.sockets.add(socket);
    socket.once("close", () => {
      this.sockets.delete(socket);
      release();
    });
    this.http.emit("connection", socket);
  }

  // ------------------------------------------------------------------ requests

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    setSecurityHeaders(res);
    const origin = this.origin() as string;
    // DNS rebinding: a page of another site whose name now points to 127.0.0.1 sends its own Host.
    if (req.headers.host !== origin.slice("http://".length)) {
      this.refused("host", `Host ${JSON.stringify(req.headers.host ?? "")}`);
      return sendText(res, 421, `this page answers only at ${origin}/ (wrong Host header)`);
    }
    // No CORS: a request that says where it comes from must come from the page itself.
    const from = req.headers.origin;
    if (from !== undefined && from !== origin) {
      this.refused("origin", `Origin ${JSON.stringify(from)}`);
      return sendText(res, 403, "requests from other sites are refused");
    }
    const site = req.headers["sec-fetch-site"];
    const method = req.method ?? "GET";
    const path = pathOf(req);
    const get = method === "GET" || method === "HEAD";

    if (method === "POST") {
      if (from !== origin || (site !== undefined && site !== "same-origin")) {
        this.refused("origin", `POST ${path} without the page's Origin`);
        return sendJson(res, 403, { error: "a POST must come from the page itself (Origin)" });
      }
    } else if (!get) {
      res.setHeader("Allow", "GET, HEAD, POST");
      return sendJson(res, 405, { error: `${method} is not used here` });
    }

    const assets = this.assets as PageAssets;
    if (path === "/login") {
      if (get) return sendAsset(res, 200, assets.get("login.html"));
      return this.login(req, res);
    }
    const name = path.slice(1);
    if ((STATIC_FILES as readonly string[]).includes(name)) {
      if (!get) return notAllowed(res, "GET");
      res.setHeader("Cache-Control", "no-cache");
      return sendAsset(res, 200, assets.get(name));
    }

    const cookie = cookieValue(req, this.cookieName(), (v) => this.auth.session(v) !== undefined);
    const session = this.auth.session(cookie);
    if (path === "/") {
      if (!get) return notAllowed(res, "GET");
      // Without a session: the sign-in page, which says to run `loxmcp open`.
      if (!session) return sendAsset(res, 401, assets.get("login.html"));
      return sendAsset(res, 200, assets.app(session.csrf));
    }
    const action = /^\/api\/(.+)$/.exec(path)?.[1];
    const known = path === "/events" || path === "/logout" || action !== undefined;
    if (!known) return sendJson(res, 404, { error: `no such page: ${path}` });
    if (!session) {
      this.refused("session", `${method} ${path} without a valid session`);
      return sendJson(res, 401, {
        error: "not signed in (or the session ended): run `loxmcp open` in a terminal for a new link",
        reason: "signed-out",
      });
    }

    if (get) {
      if (path === "/logout" || (ACTIONS as readonly string[]).includes(action ?? "")) {
        this.refused("get", `GET ${path}`);
        return notAllowed(res, "POST");
      }
      if (path === "/events") {
        if (method === "HEAD") return notAllowed(res, "GET");
        return this.live.add(res, session);
      }
      return this.read(res, action ?? "", new URL(req.url ?? "/", origin).searchParams, session);
    }

    // POST: the session's CSRF token and a JSON body.
    const csrf = req.headers["x-csrf-token"];
    if (typeof csrf !== "string" || !sameSecret(csrf, session.csrf)) {
      this.refused("csrf", `POST ${path} without the CSRF token`);
      return sendJson(res, 403, { error: "missing or wrong CSRF token: reload the page", reason: "csrf" });
    }
    const body = await readJsonBody(req, res, (kind, what) => this.refused(kind, what));
    if (body === undefined) return;
    if (path === "/logout") {
      this.auth.end(cookie);
      res.setHeader("Set-Cookie", `${this.cookieName()}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0`);
      void this.live.tick();
      return sendJson(res, 200, { ok: true });
    }
    if (!(ACTIONS as readonly string[]).includes(action ?? "")) {
      return notAllowed(res, "GET");
    }
    return this.act(res, action as Action, body, session);
  }

  private async read(
    res: ServerResponse,
    what: string,
    query: URLSearchParams,
    session: PageSession,
  ): Promise<void> {
    try {
      return sendJson(res, 200, await this.api.read(what, query, session));
    } catch (err) {
      return this.apiError(res, err);
    }
  }

  private async act(
    res: ServerResponse,
    action: Action,
    body: Record<string, unknown>,
    session: PageSession,
  ): Promise<void> {
    try {
      const out = await this.api.act(action, body, session);
      this.log.info({ session: session.name, action }, `page: ${action}`);
      return sendJson(res, 200, out);
    } catch (err) {
      return this.apiError(res, err);
    } finally {
      void this.live.tick();
    }
  }

  private async login(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJsonBody(req, res, (kind, what) => this.refused(kind, what));
    if (body === undefined) return;
    const got = this.auth.redeem(body.secret);
    if (!got) {
      this.refused("login", "a used, expired or unknown sign-in secret");
      return sendJson(res, 403, {
        error:
          "this sign-in link was already used or has expired: run `loxmcp open` in a terminal for a new one",
        reason: "secret-refused",
      });
    }
    this.log.info({ session: got.session.name }, "page: signed in with a one-time link");
    res.setHeader(
      "Set-Cookie",
      `${this.cookieName()}=${got.cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${Math.round((got.session.expiresAt - got.session.createdAt) / 1000)}`,
    );
    return sendJson(res, 200, { ok: true });
  }

  // ------------------------------------------------------------------ helpers

  /** Cookies are not kept apart by port: the name carries it, so two daemons do not sign each other out. */
  private cookieName(): string {
    return `loxmcp_page_${this.port}`;
  }

  private apiError(res: ServerResponse, err: unknown): void {
    const e = err instanceof PageApiError ? err : new PageApiError(500, (err as Error).message);
    sendJson(res, e.status, { error: e.message, ...(e.reason ? { reason: e.reason } : {}) });
  }

  /** Logs refused requests: the first at once, then at most one summary line per 10 s. */
  private refused(kind: string, what: string): void {
    this.refusals++;
    this.refusedTotal++;
    const now = Date.now();
    if (now - this.lastRefusalLog < 10_000) return;
    this.log.warn({ kind, refused: this.refusals }, `page: refused ${what}`);
    this.refusals = 0;
    this.lastRefusalLog = now;
  }
}
