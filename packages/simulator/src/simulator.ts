import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { SimulatorOptionsError } from "./errors.js";
import { readBody, sendJson, sendText } from "./http.js";
import { debug } from "./log.js";
import { McpEndpoint } from "./mcp.js";
import { handleOAuth } from "./oauth.js";
import { Miniserver, type ResolvedOptions } from "./state.js";
import { TOOL_KEYS } from "./tools.js";
import type { Faults, Simulator, SimulatorOptions, ToolCatalogChange, ToolKey } from "./types.js";

export { SimulatorOptionsError };

const HOST = "127.0.0.1";

/** An HTTP listener that can be killed (sockets destroyed) and revived on the same port. */
class Listener {
  server: Server | undefined;
  port = 0;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly handler: (req: IncomingMessage, res: ServerResponse) => void) {}

  get alive(): boolean {
    return this.server !== undefined;
  }

  async listen(port: number): Promise<void> {
    const server = createServer((req, res) => this.handler(req, res));
    server.keepAliveTimeout = 5_000;
    server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, HOST, () => {
        server.off("error", reject);
        resolve();
      });
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Stops accepting and destroys every open socket; resolves when closed. */
  kill(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return Promise.resolve();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    return closed;
  }
}

function resolveOptions(o: SimulatorOptions & { annotations?: boolean }): ResolvedOptions {
  const serial = (o.serial ?? "504F94A0C0DE").toUpperCase();
  if (!/^[0-9A-F]{12}$/.test(serial)) {
    throw new SimulatorOptionsError(`serial "${o.serial}" must be 12 hex digits, e.g. 504F94A0C0DE`);
  }
  const positive = (name: string, v: number | undefined, def: number) => {
    const n = v ?? def;
    if (!Number.isFinite(n) || n <= 0)
      throw new SimulatorOptionsError(`${name} must be a positive number, got ${v}`);
    return n;
  };
  const relays = positive("relays", o.relays, 3);
  if (!Number.isInteger(relays)) throw new SimulatorOptionsError(`relays must be an integer, got ${relays}`);
  const toolNames = Object.fromEntries(TOOL_KEYS.map((k) => [k, o.toolNames?.[k] ?? k])) as Record<
    ToolKey,
    string
  >;
  return {
    serial,
    user: o.user ?? "admin",
    password: o.password ?? "loxone-demo",
    accessTtl: positive("accessTtl", o.accessTtl, 3600),
    refreshTtl: positive("refreshTtl", o.refreshTtl, 30 * 24 * 3600),
    relays,
    connectRateLimit: positive("connectRateLimit", o.connectRateLimit, 10),
    toolNames,
    sessionTtl: o.sessionTtl === undefined ? undefined : positive("sessionTtl", o.sessionTtl, 0),
    annotations: o.annotations ?? true,
    resource: `https://192-168-1-77.${serial}.dyndns.loxonecloud.com:443/mcp`,
  };
}

/** Starts connect + relays + the shared Miniserver on 127.0.0.1. */
export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const opts = resolveOptions(options);
  const ms = new Miniserver(opts);
  const mcp = new McpEndpoint(ms);
  const hits = new Map<string, number[]>();
  let current = 0;

  const relays: Listener[] = [];
  const relayOrigin = (i: number) => `http://${HOST}:${relays[i]?.port}`;
  const relayUrl = (i: number) => `${relayOrigin(i)}/mcp`;

  const onRelay = (i: number) => (req: IncomingMessage, res: ServerResponse) => {
    const origin = relayOrigin(i);
    const url = new URL(req.url ?? "/", origin);
    const work = async () => {
      if (url.pathname === "/mcp") return mcp.handle(req, res, origin);
      if (await handleOAuth(ms, req, res, url, origin)) return;
      sendJson(res, 404, {
        error: "not_found",
        error_description: `No route for ${req.method} ${url.pathname}`,
      });
    };
    work().catch((err: unknown) => fail(res, err));
  };

  const liveIndexes = () => relays.map((r, i) => (r.alive ? i : -1)).filter((i) => i >= 0);

  const sim: Simulator = {
    connectUrl: "",
    serial: opts.serial,
    user: opts.user,
    password: opts.password,
    adminUrl: "",
    relayUrls: [],
    currentRelay: () => current,
    rotateRelay() {
      const live = liveIndexes();
      for (let step = 1; step <= relays.length; step++) {
        const next = (current + step) % relays.length;
        if (live.length === 0 || live.includes(next)) {
          current = next;
          break;
        }
      }
      debug(`connect now points at relay ${current}`);
      return relayUrl(current);
    },
    killRelay(index = current) {
      const r = relays[index];
      if (!r) throw new SimulatorOptionsError(`no relay ${index}; valid: 0..${relays.length - 1}`);
      void r.kill();
      debug(`killed relay ${index}`);
      if (index === current) {
        const live = liveIndexes();
        if (live.length > 0) sim.rotateRelay();
      }
    },
    async reviveRelay(index) {
      const r = relays[index];
      if (!r) throw new SimulatorOptionsError(`no relay ${index}; valid: 0..${relays.length - 1}`);
      if (r.alive) return;
      await r.listen(r.port);
      debug(`revived relay ${index}`);
    },
    expireSessions: () => mcp.expireSessions(),
    revokeTokens: () => ms.revokeTokens(),
    expireAccessTokens: () => ms.expireAccessTokens(),
    setFaults: (f: Faults) => ms.setFaults(f),
    stats: () => ms.stats(),
    resetStats: () => ms.resetStats(),
    house: () => ms.house.snapshot(),
    renameControl(uuid, name) {
      if (!ms.house.rename(uuid, name)) throw new SimulatorOptionsError(`no control ${uuid}`);
    },
    addControl: (c) => ms.house.add(c),
    changeTools: (change: ToolCatalogChange) => mcp.changeTools(change),
    resetTools: () => mcp.resetTools(),
    listedTools: () => mcp.listedTools(),
    async stop() {
      await mcp.close();
      await Promise.all([connect.kill(), ...relays.map((r) => r.kill())]);
    },
  };

  const admin = async (req: IncomingMessage, res: ServerResponse, path: string) => {
    const method = req.method ?? "GET";
    const raw = method === "POST" ? await readBody(req) : "";
    let body: Record<string, unknown> = {};
    if (raw.trim()) {
      try {
        body = JSON.parse(raw) as Record<string, unknown>;
      } catch {
        sendJson(res, 400, { error: "bad_json", error_description: "Admin bodies are JSON objects." });
        return;
      }
    }
    const index = typeof body.index === "number" ? body.index : undefined;
    const ok = (extra: Record<string, unknown> = {}) =>
      sendJson(res, 200, { ok: true, currentRelay: current, ...extra });
    const route = `${method} ${path}`;
    switch (route) {
      case "GET /stats":
        return sendJson(res, 200, sim.stats());
      case "GET /house":
        return sendJson(res, 200, sim.house());
      case "POST /rotate-relay":
        return ok({ relayUrl: sim.rotateRelay() });
      case "POST /kill-relay":
        sim.killRelay(index);
        return ok();
      case "POST /revive-relay":
        if (index === undefined) throw new SimulatorOptionsError('revive-relay needs {"index": N}');
        await sim.reviveRelay(index);
        return ok();
      case "POST /expire-session":
      case "POST /expire-sessions":
        sim.expireSessions();
        return ok();
      case "POST /revoke-tokens":
        sim.revokeTokens();
        return ok();
      case "POST /expire-access-tokens":
        sim.expireAccessTokens();
        return ok();
      case "POST /reset-stats":
        sim.resetStats();
        return ok();
      case "POST /faults":
        sim.setFaults(body as Faults);
        return ok({ faults: ms.faults });
      case "POST /rename-control":
        sim.renameControl(String(body.uuid), String(body.name));
        return ok();
      case "POST /add-control":
        return ok({
          uuid: sim.addControl({
            name: String(body.name),
            type: String(body.type),
            room: String(body.room),
            category: String(body.category),
          }),
        });
      case "POST /change-tools":
        sim.changeTools(body as ToolCatalogChange);
        return ok({ tools: sim.listedTools() });
      case "POST /reset-tools":
        sim.resetTools();
        return ok({ tools: sim.listedTools() });
      case "GET /tools":
        return sendJson(res, 200, { tools: sim.listedTools() });
      default:
        sendJson(res, 404, { error: "not_found", error_description: `No admin route ${route}` });
    }
  };

  const connect = new Listener((req, res) => {
    const url = new URL(req.url ?? "/", "http://connect");
    const work = async () => {
      if (url.pathname.startsWith("/__admin/")) return admin(req, res, url.pathname.slice("/__admin".length));
      ms.counters.connectRequests += 1;
      const ip = req.socket.remoteAddress ?? "?";
      const now = Date.now();
      const window = (hits.get(ip) ?? []).filter((t) => t > now - 60_000);
      if (window.length >= opts.connectRateLimit) {
        const retry = Math.max(1, Math.ceil(((window[0] ?? now) + 60_000 - now) / 1000));
        hits.set(ip, window);
        debug(`connect rate limit hit for ${ip}`);
        return sendText(res, 429, "Too Many Requests", { "retry-after": String(retry) });
      }
      window.push(now);
      hits.set(ip, window);
      const m = /^\/([^/]+)\/mcp\/?$/.exec(url.pathname);
      if (!m || (req.method !== "GET" && req.method !== "HEAD")) return sendText(res, 404, "Not Found");
      if (m[1]?.toUpperCase() !== opts.serial) return sendText(res, 404, "Miniserver not found");
      res.writeHead(307, { location: relayUrl(current), "content-length": "0" });
      res.end();
    };
    work().catch((err: unknown) => fail(res, err));
  });

  try {
    await connect.listen(options.port ?? 0);
    for (let i = 0; i < opts.relays; i++) {
      const r = new Listener(onRelay(i));
      relays.push(r);
      await r.listen(0);
    }
  } catch (err) {
    await Promise.all([connect.kill(), ...relays.map((r) => r.kill())]);
    throw err;
  }
  sim.connectUrl = `http://${HOST}:${connect.port}`;
  sim.adminUrl = `${sim.connectUrl}/__admin`;
  sim.relayUrls = relays.map((_, i) => relayUrl(i));
  debug(`connect ${sim.connectUrl}, relays ${sim.relayUrls.join(" ")}`);
  return sim;
}

function fail(res: ServerResponse, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  debug(`request failed: ${message}`);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const status = err instanceof SimulatorOptionsError ? 400 : 500;
  sendJson(res, status, {
    error: status === 400 ? "bad_request" : "server_error",
    error_description: message,
  });
}
