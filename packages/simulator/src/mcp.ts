import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { readBody, sendJson } from "./http.js";
import { debug } from "./log.js";
import { PRM_PATH } from "./oauth.js";
import type { Miniserver } from "./state.js";
import type { HouseControl, ToolKey } from "./types.js";

interface Session {
  id: string;
  transport: StreamableHTTPServerTransport;
  server: McpServer;
  lastUsed: number;
}

interface ToolExtra {
  sessionId?: string | undefined;
  requestId: string | number;
}

const SERVER_INFO = { name: "loxone-miniserver-mcp", version: "15.3.0-sim" };

/** MCP endpoint shared by every relay: one session table because one Miniserver sits behind them. */
export class McpEndpoint {
  private readonly sessions = new Map<string, Session>();
  /** `${sessionId}:${jsonRpcId}` of tools/call requests whose socket is destroyed after executing. */
  private readonly pendingDrops = new Map<string, Socket>();

  constructor(private readonly ms: Miniserver) {}

  sessionCount(): number {
    return this.sessions.size;
  }

  expireSessions(): void {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) void s.transport.close().catch(() => {});
    debug(`expired ${all.length} MCP session(s)`);
  }

  async close(): Promise<void> {
    this.expireSessions();
  }

  async handle(req: IncomingMessage, res: ServerResponse, origin: string): Promise<void> {
    const ms = this.ms;
    ms.counters.mcpRequests += 1;
    if (!this.authorize(req, res, origin)) return;

    const method = req.method ?? "GET";
    let body: unknown;
    if (method === "POST") {
      const f = ms.faults;
      if (f.latencyMs > 0) await new Promise((r) => setTimeout(r, f.latencyMs));
      if (f.httpErrors > 0) {
        f.httpErrors -= 1;
        debug(`fault: answering MCP POST with HTTP ${f.httpErrorStatus}`);
        sendJson(res, f.httpErrorStatus, {
          jsonrpc: "2.0",
          error: { code: -32000, message: `Simulated upstream failure (HTTP ${f.httpErrorStatus})` },
          id: null,
        });
        return;
      }
      try {
        body = JSON.parse(await readBody(req));
      } catch {
        sendJson(res, 400, { jsonrpc: "2.0", error: { code: -32700, message: "Parse error" }, id: null });
        return;
      }
    }

    const header = req.headers["mcp-session-id"];
    const sessionId = Array.isArray(header) ? header[0] : header;
    let session: Session | undefined;
    if (sessionId) {
      session = this.sessions.get(sessionId);
      const ttl = ms.opts.sessionTtl;
      if (session && ttl !== undefined && Date.now() - session.lastUsed > ttl * 1000) {
        this.sessions.delete(sessionId);
        void session.transport.close().catch(() => {});
        session = undefined;
      }
      if (!session) {
        sendJson(res, 404, {
          jsonrpc: "2.0",
          error: { code: -32001, message: "Session not found" },
          id: null,
        });
        return;
      }
      session.lastUsed = Date.now();
    } else if (method === "POST" && isInitialize(body)) {
      session = this.createSession();
    } else {
      sendJson(res, 400, {
        jsonrpc: "2.0",
        error: { code: -32000, message: "Bad Request: Mcp-Session-Id header is required" },
        id: null,
      });
      return;
    }

    if (method === "POST" && sessionId && ms.faults.dropAfterExecute > 0) {
      for (const msg of Array.isArray(body) ? body : [body]) {
        if (isRequest(msg, "tools/call") && ms.faults.dropAfterExecute > 0) {
          ms.faults.dropAfterExecute -= 1;
          this.pendingDrops.set(`${sessionId}:${String(msg.id)}`, req.socket);
        }
      }
    }
    await session.transport.handleRequest(req, res, body);
  }

  private authorize(req: IncomingMessage, res: ServerResponse, origin: string): boolean {
    const auth = req.headers.authorization ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    const result = m?.[1] ? this.ms.checkAccessToken(m[1]) : "missing";
    if (result === "ok") return true;
    let challenge = `Bearer resource_metadata="${origin}${PRM_PATH}"`;
    let description = "Missing bearer token. Authorize first.";
    if (result === "expired") description = "The access token expired. Refresh it.";
    if (result === "unknown") description = "The access token is invalid or revoked. Authorize again.";
    if (result !== "missing") challenge += `, error="invalid_token", error_description="${description}"`;
    sendJson(
      res,
      401,
      { error: result === "missing" ? "unauthorized" : "invalid_token", error_description: description },
      { "www-authenticate": challenge },
    );
    return false;
  }

  private createSession(): Session {
    const server = buildServer(this.ms, (extra) => this.afterExecute(extra));
    const session: Session = {
      id: "",
      server,
      lastUsed: Date.now(),
      transport: new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          session.id = id;
          this.sessions.set(id, session);
          this.ms.counters.sessions += 1;
          debug(`MCP session ${id.slice(0, 8)}… initialized`);
        },
      }),
    };
    session.transport.onclose = () => {
      if (session.id && this.sessions.get(session.id) === session) this.sessions.delete(session.id);
    };
    session.transport.onerror = (err) => debug(`transport error: ${err.message}`);
    void server.connect(session.transport);
    return session;
  }

  private afterExecute(extra: ToolExtra): void {
    const key = `${extra.sessionId ?? ""}:${String(extra.requestId)}`;
    const socket = this.pendingDrops.get(key);
    if (!socket) return;
    this.pendingDrops.delete(key);
    debug("fault: dropping connection after executing tools/call");
    socket.destroy();
  }
}

function isInitialize(body: unknown): boolean {
  const msgs = Array.isArray(body) ? body : [body];
  return msgs.some((m) => isRequest(m, "initialize"));
}

function isRequest(m: unknown, method: string): m is { id: string | number; method: string } {
  return (
    !!m && typeof m === "object" && (m as { method?: unknown }).method === method && "id" in (m as object)
  );
}

function text(value: unknown): CallToolResult {
  return {
    content: [{ type: "text", text: typeof value === "string" ? value : JSON.stringify(value, null, 2) }],
  };
}

function toolError(message: string): CallToolResult {
  return { content: [{ type: "text", text: message }], isError: true };
}

function summary(c: HouseControl) {
  return { uuid: c.uuid, name: c.name, type: c.type, room: c.room, category: c.category };
}

/** Builds one McpServer (one per session) exposing the Miniserver's tools. */
function buildServer(ms: Miniserver, afterExecute: (extra: ToolExtra) => void): McpServer {
  const server = new McpServer(SERVER_INFO, {
    capabilities: { tools: { listChanged: true } },
    instructions:
      "Loxone Miniserver (simulated). Use control_find to locate controls before commanding them.",
  });
  const names = ms.opts.toolNames;
  const read = ms.opts.annotations ? { annotations: { readOnlyHint: true } } : {};
  const write = ms.opts.annotations ? { annotations: { readOnlyHint: false, destructiveHint: true } } : {};

  /** Runs a tool; records successful executions; applies the drop-after-execute fault. */
  const run =
    <A>(key: ToolKey, fn: (args: A) => CallToolResult) =>
    (args: A, extra: ToolExtra): CallToolResult => {
      const result = fn(args);
      if (!result.isError) ms.recordExecution(names[key], args);
      afterExecute(extra);
      return result;
    };

  server.registerTool(
    names.control_find,
    {
      title: "Find controls",
      description:
        "Lists controls of the house, optionally filtered by a name query, room, type or category. Returns uuid, name, type, room, category.",
      inputSchema: {
        query: z.string().optional().describe("Case-insensitive substring of the control name"),
        room: z.string().optional(),
        type: z.string().optional(),
        category: z.string().optional(),
      },
      ...read,
    },
    run(
      "control_find",
      (a: {
        query?: string | undefined;
        room?: string | undefined;
        type?: string | undefined;
        category?: string | undefined;
      }) => {
        const eq = (x: string, y: string | undefined) =>
          y === undefined || x.toLowerCase() === y.toLowerCase();
        const q = a.query?.toLowerCase();
        const found = ms.house
          .list()
          .filter(
            (c) =>
              (q === undefined || c.name.toLowerCase().includes(q)) &&
              eq(c.room, a.room) &&
              eq(c.type, a.type) &&
              eq(c.category, a.category),
          )
          .map(summary);
        return text({ count: found.length, controls: found });
      },
    ),
  );

  server.registerTool(
    names.control_describe,
    {
      title: "Describe a control",
      description: "Returns the current states of a control and the commands it accepts ({n} = number).",
      inputSchema: { uuid: z.string().describe("Control UUID, e.g. 0b734138-037d-034e-ffff403fb0c34b9e") },
      ...read,
    },
    run("control_describe", (a: { uuid: string }) => {
      const c = ms.house.get(a.uuid);
      if (!c) return toolError(`Control ${a.uuid} not found. Use ${names.control_find} to list controls.`);
      return text(c);
    }),
  );

  server.registerTool(
    names.control_command,
    {
      title: "Send a command to a control",
      description:
        "Executes a command on a control (e.g. on, off, FullUp, manualPosition/50). Use control_describe for the allowed commands.",
      inputSchema: { uuid: z.string(), command: z.string() },
      ...write,
    },
    run("control_command", (a: { uuid: string; command: string }) => {
      const check = ms.house.check(a.uuid, a.command);
      if (!check.ok) return toolError(check.message);
      const c = ms.house.execute(a.uuid, check.verb, check.n);
      debug(`executed ${a.command} on ${c.name}`);
      return text({
        LL: { control: `jdev/sps/io/${c.uuid}/${a.command}`, value: "1", Code: "200" },
        control: { uuid: c.uuid, name: c.name, type: c.type },
        states: c.states,
      });
    }),
  );

  server.registerTool(
    names.system_status,
    {
      title: "System status",
      description: "Miniserver health: firmware, uptime, load, memory.",
      inputSchema: {},
      ...read,
    },
    run("system_status", () =>
      text({
        serial: ms.opts.serial,
        firmware: "15.3.3.1",
        online: true,
        uptimeSec: Math.floor((Date.now() - ms.startedAt) / 1000),
        cpuLoadPercent: 7,
        memoryFreeKb: 41_236,
        controls: ms.house.list().length,
      }),
    ),
  );

  server.registerTool(
    names.statistics,
    {
      title: "Statistics",
      description: "Energy and usage statistics of the house.",
      inputSchema: {},
      ...read,
    },
    run("statistics", () =>
      text({
        energyTodayKwh: 12.4,
        energyMonthKwh: 318.9,
        pvProductionTodayKwh: 9.7,
        waterTodayLiters: 212,
        onLights: ms.house
          .list()
          .filter((c) => c.category === "Lighting" && (c.states.on === true || c.states.active === true))
          .length,
      }),
    ),
  );

  server.registerTool(
    names.weather_forecast,
    {
      title: "Weather forecast",
      description: "Weather forecast for the next days at the house.",
      inputSchema: {},
      ...read,
    },
    run("weather_forecast", () => {
      const day = 24 * 3600 * 1000;
      const base = Date.UTC(2026, 0, 1);
      return text({
        location: "Kollerschlag, AT",
        days: [0, 1, 2].map((i) => ({
          date: new Date(base + i * day).toISOString().slice(0, 10),
          tempMinC: 2 + i,
          tempMaxC: 9 + i,
          precipitationMm: [0.4, 3.1, 0][i],
          description: ["partly cloudy", "rain", "sunny"][i],
        })),
      });
    }),
  );
  return server;
}
