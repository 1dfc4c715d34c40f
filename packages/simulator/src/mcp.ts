import { randomUUID } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { McpServer, type RegisteredTool } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { readBody, sendJson } from "./http.js";
import { debug } from "./log.js";
import { PRM_PATH } from "./oauth.js";
import type { Miniserver } from "./state.js";
import { TOOL_KEYS, ToolCatalog, type ToolSpec } from "./tools.js";
import type { HouseControl, ToolKey } from "./types.js";

interface Session {
  id: string;
  transport: StreamableHTTPServerTransport;
  tools: SessionTools;
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
  /** The tool catalogue every session lists (changed at runtime like a firmware update). */
  private readonly catalog: ToolCatalog;

  constructor(private readonly ms: Miniserver) {
    this.catalog = new ToolCatalog(ms.opts.toolNames, ms.opts.annotations);
  }

  /** Applies a catalogue change (throws SimulatorOptionsError, nothing changed, if invalid) to every live session. */
  changeTools(change: unknown): void {
    this.catalog.change(change);
    this.syncSessions();
  }

  resetTools(): void {
    this.catalog.reset();
    this.syncSessions();
  }

  listedTools(): string[] {
    return this.catalog.listed();
  }

  private syncSessions(): void {
    for (const s of this.sessions.values()) syncTools(s.tools, this.catalog);
    debug(`tool catalogue v${this.catalog.version}: ${this.catalog.listed().join(", ")}`);
  }

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
    const tools = buildServer(this.ms, this.catalog, (extra) => this.afterExecute(extra));
    const session: Session = {
      id: "",
      tools,
      lastUsed: Date.now(),
      transport: new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          session.id = id;
          // The catalogue may have changed while this session was being initialized.
          if (tools.version !== this.catalog.version) syncTools(tools, this.catalog);
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
    void tools.server.connect(session.transport);
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

type Handler = (args: Record<string, unknown>, extra: ToolExtra) => CallToolResult;

/** One session's registered tools, kept in step with the catalogue. */
interface SessionTools {
  server: McpServer;
  builtin: Record<ToolKey, RegisteredTool>;
  added: Map<string, RegisteredTool>;
  /** catalog.version these registrations reflect. */
  version: number;
  /** Handler of an added tool (write: through the house, read: its text). */
  handlerFor(spec: ToolSpec): Handler;
}

/** Builds one McpServer (one per session) exposing the Miniserver's current tool catalogue. */
function buildServer(
  ms: Miniserver,
  catalog: ToolCatalog,
  afterExecute: (extra: ToolExtra) => void,
): SessionTools {
  const server = new McpServer(SERVER_INFO, {
    capabilities: { tools: { listChanged: true } },
    instructions:
      "Loxone Miniserver (simulated). Use control_find to locate controls before commanding them.",
    // One catalogue change updates several tools; the client gets one list_changed for it.
    debouncedNotificationMethods: ["notifications/tools/list_changed"],
  });
  const names = ms.opts.toolNames;

  /** Runs a tool; records successful executions under `name`; applies the drop-after-execute fault. */
  const run =
    (name: string, fn: (args: Record<string, unknown>) => CallToolResult): Handler =>
    (args, extra) => {
      const result = fn(args);
      if (!result.isError) ms.recordExecution(name, args);
      afterExecute(extra);
      return result;
    };

  const command = (args: Record<string, unknown>): CallToolResult => {
    const a = args as { uuid: string; command: string };
    const check = ms.house.check(a.uuid, a.command);
    if (!check.ok) return toolError(check.message);
    const c = ms.house.execute(a.uuid, check.verb, check.n);
    debug(`executed ${a.command} on ${c.name}`);
    return text({
      LL: { control: `jdev/sps/io/${c.uuid}/${a.command}`, value: "1", Code: "200" },
      control: { uuid: c.uuid, name: c.name, type: c.type },
      states: c.states,
    });
  };

  const handlers: Record<ToolKey, (args: Record<string, unknown>) => CallToolResult> = {
    control_find: (args) => {
      const a = args as { query?: string; room?: string; type?: string; category?: string };
      const eq = (x: string, y: string | undefined) => y === undefined || x.toLowerCase() === y.toLowerCase();
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
    control_describe: (args) => {
      const a = args as { uuid: string };
      const c = ms.house.get(a.uuid);
      if (!c) return toolError(`Control ${a.uuid} not found. Use ${names.control_find} to list controls.`);
      return text(c);
    },
    control_command: command,
    system_status: () =>
      text({
        serial: ms.opts.serial,
        firmware: "15.3.3.1",
        online: true,
        uptimeSec: Math.floor((Date.now() - ms.startedAt) / 1000),
        cpuLoadPercent: 7,
        memoryFreeKb: 41_236,
        controls: ms.house.list().length,
      }),
    statistics: () =>
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
    weather_forecast: () => {
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
    },
  };

  const register = (spec: ToolSpec, handler: Handler) => registerSpec(server, spec, handler);

  const tools: SessionTools = {
    server,
    builtin: Object.fromEntries(
      TOOL_KEYS.map((k) => [k, register(catalog.builtin(k), run(names[k], handlers[k]))]),
    ) as Record<ToolKey, RegisteredTool>,
    added: new Map(),
    version: catalog.version,
    handlerFor: (spec) => run(spec.name, spec.write ? command : () => text(spec.text)),
  };
  for (const spec of catalog.addedTools()) tools.added.set(spec.name, register(spec, tools.handlerFor(spec)));
  return tools;
}

/**
 * Brings one live session's registrations in line with the catalogue: built-ins are updated in
 * place (so a reset restores the original order), added tools are updated, registered or removed.
 * Every RegisteredTool.update() asks for list_changed; the server debounces them into one.
 */
function syncTools(tools: SessionTools, catalog: ToolCatalog): void {
  for (const key of TOOL_KEYS) {
    const spec = catalog.builtin(key);
    apply(tools.builtin[key], spec);
  }
  const wanted = new Map(catalog.addedTools().map((s) => [s.name, s]));
  for (const [name, tool] of tools.added) {
    if (wanted.has(name)) continue;
    tool.remove();
    tools.added.delete(name);
  }
  for (const spec of wanted.values()) {
    const handler = tools.handlerFor(spec);
    const tool = tools.added.get(spec.name);
    if (tool) {
      apply(tool, spec);
      tool.update({ callback: handler });
    } else {
      tools.added.set(spec.name, registerSpec(tools.server, spec, handler));
    }
  }
  tools.version = catalog.version;
  tools.server.sendToolListChanged();
}

function registerSpec(server: McpServer, spec: ToolSpec, handler: Handler): RegisteredTool {
  const tool = server.registerTool(
    spec.name,
    {
      ...(spec.title !== undefined ? { title: spec.title } : {}),
      ...(spec.description !== undefined ? { description: spec.description } : {}),
      inputSchema: spec.shape,
      ...(spec.annotations ? { annotations: spec.annotations } : {}),
    },
    handler,
  );
  if (!spec.enabled) tool.disable();
  return tool;
}

/** Sets a registered tool's listed fields to the spec (update() cannot clear a field, so those are deleted). */
function apply(tool: RegisteredTool, spec: ToolSpec): void {
  tool.update({
    ...(spec.description !== undefined ? { description: spec.description } : {}),
    ...(spec.title !== undefined ? { title: spec.title } : {}),
    paramsSchema: spec.shape,
    ...(spec.annotations ? { annotations: spec.annotations } : {}),
    enabled: spec.enabled,
  });
  if (spec.title === undefined) delete tool.title;
  if (spec.description === undefined) delete tool.description;
  if (!spec.annotations) delete tool.annotations;
}
