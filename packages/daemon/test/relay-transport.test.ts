/**
 * The relay's node:http Streamable HTTP transport (relay/transport.ts), over real HTTP: under the
 * daemon's own MCP client (relay/mcp-client.ts) against the simulator (SSE answers, keep-alive reuse, a stream that breaks mid-answer, a
 * 401 with its challenge, a connection refused, an abort), against an SDK server answering JSON, and
 * against a hand-written server that closes a POST's stream after an event id (SEP-1699 resumption).
 * Delivery tracking is read from the `RequestCtx` each request runs in, as the daemon runs it.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import { Agent, createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import type { Simulator } from "@loxmcp/simulator";
import { startSimulator } from "@loxmcp/simulator";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import type { JSONRPCMessage } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { RequestCtx } from "../src/relay/delivery.js";
import { HttpPool } from "../src/relay/http.js";
import { RelayClient } from "../src/relay/mcp-client.js";
import { SseParser } from "../src/relay/sse.js";
import { RelayTransport } from "../src/relay/transport.js";
import { simAccessToken } from "./sim-upstream.js";

const READ = { name: "system_status", arguments: {} };

/** A keep-alive agent that counts the connections it opens and closes. */
function countingAgent(): Agent & { opened: number; closed: number } {
  const agent = new Agent({ keepAlive: true }) as Agent & { opened: number; closed: number };
  agent.opened = 0;
  agent.closed = 0;
  const create = agent.createConnection.bind(agent) as (...a: unknown[]) => Socket;
  (agent as unknown as { createConnection: (...a: unknown[]) => Socket }).createConnection = (...a) => {
    const s = create(...a);
    agent.opened++;
    s.once("close", () => agent.closed++);
    return s;
  };
  return agent;
}

interface Rig {
  als: AsyncLocalStorage<RequestCtx>;
  agent: ReturnType<typeof countingAgent>;
  transport: RelayTransport;
  client: RelayClient;
  /** One request as the exchange sends it: in its own context, aborted by its own signal. */
  call(
    method: string,
    params: unknown,
    ctx?: RequestCtx,
  ): Promise<{ ctx: RequestCtx; result?: unknown; error?: unknown }>;
}

const clients: RelayClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) await c.close().catch(() => {});
});

function rig(url: string, token: string | undefined, pool?: HttpPool): Rig {
  const als = new AsyncLocalStorage<RequestCtx>();
  const agent = countingAgent();
  const transport = new RelayTransport({
    url: new URL(url),
    pool: pool ?? { agentFor: () => agent },
    token: async () => token,
    current: () => als.getStore(),
    graceMs: 50,
    reconnection: {
      initialReconnectionDelay: 50,
      maxReconnectionDelay: 200,
      reconnectionDelayGrowFactor: 1.5,
      maxRetries: 2,
    },
  });
  const client = new RelayClient({ name: "transport-test", version: "0.0.0" }, {});
  clients.push(client);
  const call: Rig["call"] = async (method, params, ctx = new RequestCtx(method, true)) => {
    try {
      const result = await als.run(ctx, () =>
        method === "initialize"
          ? client.connect(transport, { signal: ctx.ac.signal })
          : client.request(
              { method, params: params as Record<string, unknown> },
              {
                signal: ctx.ac.signal,
              },
            ),
      );
      return { ctx, result };
    } catch (error) {
      return { ctx, error };
    } finally {
      ctx.settle();
    }
  };
  return { als, agent, transport, client, call };
}

describe("against the simulator (SSE answers)", () => {
  let sim: Simulator;
  let url: string;
  let token: string;
  beforeAll(async () => {
    sim = await startSimulator({ port: 0 });
    url = sim.relayUrls[sim.currentRelay()] ?? "";
    token = await simAccessToken(sim);
  });
  afterAll(async () => {
    await sim.stop();
  });

  it("initialize and calls: accepted, with the token, the id, the session and the protocol version; connections kept alive", async () => {
    const r = rig(url, token);
    const init = await r.call("initialize", undefined);
    expect(init.error).toBeUndefined();
    expect([init.ctx.phase, init.ctx.status, init.ctx.usedToken]).toEqual(["accepted", 200, token]);
    expect(r.transport.sessionId).toMatch(/\S/);
    expect(r.transport.protocolVersion).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    const first = await r.call("tools/call", READ);
    expect(first.error).toBeUndefined();
    expect(first.result).toMatchObject({ content: [{ type: "text" }] });
    expect([first.ctx.phase, first.ctx.status, first.ctx.usedToken, typeof first.ctx.id]).toEqual([
      "accepted",
      200,
      token,
      "number",
    ]);
    const opened = r.agent.opened;
    // The GET notification stream holds one connection; the calls share another.
    expect(opened).toBeLessThanOrEqual(3);
    for (let i = 0; i < 20; i++) {
      const c = await r.call("tools/call", READ);
      expect(c.ctx.phase).toBe("accepted");
    }
    expect(r.agent.opened, "20 sequential calls on kept-alive connections").toBe(opened);
    await r.transport.terminateSession();
    expect(r.transport.sessionId).toBeUndefined();
  });

  it("the pool's reset() closes the idle kept-alive connections; the next request opens a new one", async () => {
    const pool = new HttpPool();
    const r = rig(url, token, pool);
    expect((await r.call("initialize", undefined)).error).toBeUndefined();
    expect((await r.call("tools/call", READ)).ctx.phase).toBe("accepted");
    const before = pool.agentFor(new URL(url));
    const idle = Object.values(before.freeSockets).flat() as Socket[];
    expect(idle.length).toBeGreaterThan(0);
    pool.reset();
    expect(idle.every((s) => s.destroyed)).toBe(true);
    const after = pool.agentFor(new URL(url));
    expect(after).not.toBe(before);
    expect((await r.call("tools/call", READ)).ctx.phase).toBe("accepted");
    expect(Object.values(after.freeSockets).flat().length).toBeGreaterThan(0);
    await pool.close();
  });

  it("a stream that breaks after the tool ran: lost (it may have run), the request fails", async () => {
    const r = rig(url, token);
    expect((await r.call("initialize", undefined)).error).toBeUndefined();
    sim.setFaults({ dropAfterExecute: 1 });
    const uuid = sim.house().controls.find((c) => c.type === "LightControllerV2")!.uuid;
    const before = sim.stats().executions.find((e) => e.tool === "control_command")?.count ?? 0;
    const c = await r.call(
      "tools/call",
      { name: "control_command", arguments: { uuid, command: "changeTo/3" } },
      new RequestCtx("tools/call", false),
    );
    expect(c.error).toBeDefined();
    expect([c.ctx.phase, c.ctx.mayHaveRun]).toEqual(["lost", true]);
    expect(c.ctx.netCode).toBeDefined();
    const after = sim.stats().executions.find((e) => e.tool === "control_command")?.count ?? 0;
    expect(after - before, "it ran once, never resent").toBe(1);
  });

  it("a 401: rejected (it never ran), with the WWW-Authenticate challenge and the token it was refused for", async () => {
    const r = rig(url, "not-a-token");
    const init = await r.call("initialize", undefined);
    expect(init.error).toMatchObject({ code: 401 });
    expect([init.ctx.phase, init.ctx.status, init.ctx.usedToken, init.ctx.mayHaveRun]).toEqual([
      "rejected",
      401,
      "not-a-token",
      false,
    ]);
    expect(init.ctx.challenge).toMatchObject({ error: "invalid_token" });
    expect(String(init.ctx.challenge?.resourceMetadataUrl)).toMatch(/oauth-protected-resource/);
  });

  it("an abort by the request's context aborts its HTTP request at once", async () => {
    const r = rig(url, token);
    expect((await r.call("initialize", undefined)).error).toBeUndefined();
    sim.setFaults({ latencyMs: 3_000 });
    try {
      const ctx = new RequestCtx("tools/call", true);
      const closedBefore = r.agent.closed;
      const t0 = Date.now();
      setTimeout(() => ctx.abort("caller"), 100);
      const c = await r.call("tools/call", READ, ctx);
      expect(Date.now() - t0).toBeLessThan(2_000);
      expect(c.error).toBeDefined();
      expect(ctx.abortReason).toBe("caller");
      // Its connection was closed (the request aborted), not left waiting for the answer.
      await waitFor(() => r.agent.closed > closedBefore);
    } finally {
      sim.setFaults({ latencyMs: 0 });
    }
    const again = await r.call("tools/call", READ);
    expect(again.ctx.phase).toBe("accepted");
  });
});

describe("connection refused", () => {
  it("nothing was written: refused, with the network code", async () => {
    const srv = createServer();
    await new Promise<void>((res) => srv.listen(0, "127.0.0.1", res));
    const port = (srv.address() as AddressInfo).port;
    await new Promise((res) => srv.close(res));
    const r = rig(`http://127.0.0.1:${port}/mcp`, "tok");
    const init = await r.call("initialize", undefined);
    expect(init.error).toBeDefined();
    expect([init.ctx.phase, init.ctx.netCode, init.ctx.mayHaveRun]).toEqual([
      "refused",
      "ECONNREFUSED",
      false,
    ]);
  });
});

describe("an SDK server answering JSON", () => {
  let srv: Server;
  let url: string;
  const seen: Array<Record<string, string | undefined>> = [];
  beforeAll(async () => {
    const sessions = new Map<string, StreamableHTTPServerTransport>();
    srv = createServer(async (req, res) => {
      seen.push({
        method: req.method,
        authorization: req.headers.authorization,
        session: req.headers["mcp-session-id"] as string | undefined,
        version: req.headers["mcp-protocol-version"] as string | undefined,
        accept: req.headers.accept,
      });
      const id = req.headers["mcp-session-id"] as string | undefined;
      let t = id ? sessions.get(id) : undefined;
      if (!t) {
        const server = new McpServer({ name: "json", version: "1" });
        server.registerTool("echo", { inputSchema: { text: z.string() } }, async ({ text }) => ({
          content: [{ type: "text", text }],
        }));
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: true,
          onsessioninitialized: (sid) => void sessions.set(sid, created),
        });
        await server.connect(created);
        t = created;
      }
      await t.handleRequest(req, res);
    });
    await new Promise<void>((res) => srv.listen(0, "127.0.0.1", res));
    url = `http://127.0.0.1:${(srv.address() as AddressInfo).port}/mcp`;
  });
  afterAll(async () => {
    srv.closeAllConnections();
    await new Promise((res) => srv.close(res));
  });

  it("JSON answers reach the client; every POST carries the session, the protocol version and the token", async () => {
    const r = rig(url, "tok-json");
    expect((await r.call("initialize", undefined)).error).toBeUndefined();
    const c = await r.call("tools/call", { name: "echo", arguments: { text: "hi" } });
    expect(c.error).toBeUndefined();
    expect(c.result).toEqual({ content: [{ type: "text", text: "hi" }] });
    expect([c.ctx.phase, c.ctx.status, c.ctx.usedToken]).toEqual(["accepted", 200, "tok-json"]);
    const posts = seen.filter((s) => s.method === "POST");
    expect(posts.every((s) => s.authorization === "Bearer tok-json")).toBe(true);
    expect(posts.every((s) => s.accept === "application/json, text/event-stream")).toBe(true);
    const last = posts.at(-1)!;
    expect(last.session).toBe(r.transport.sessionId);
    expect(last.version).toBe(r.transport.protocolVersion);
  });
});

describe("SEP-1699: a POST's stream closed after an event id is resumed by GET + Last-Event-ID", () => {
  it("the answer arrives on the resumed stream, after the server's retry; the request is not lost", async () => {
    const gets: Array<string | undefined> = [];
    const srv = createServer((req: IncomingMessage, res: ServerResponse) => {
      if (req.method === "POST") {
        let body = "";
        req.on("data", (c) => (body += c));
        req.on("end", () => {
          const id = (JSON.parse(body) as { id: number }).id;
          res.writeHead(200, { "content-type": "text/event-stream" });
          res.end(`id: p-${id}\nretry: 100\ndata: \n\n`);
        });
        return;
      }
      gets.push(req.headers["last-event-id"] as string | undefined);
      const last = String(req.headers["last-event-id"] ?? "");
      const id = Number(last.replace("p-", ""));
      res.writeHead(200, { "content-type": "text/event-stream" });
      const msg = { jsonrpc: "2.0", id, result: { resumed: true } };
      res.end(`: resumed\r\nid: r-${id}\r\ndata: ${JSON.stringify(msg)}\r\n\r\n`);
    });
    await new Promise<void>((res) => srv.listen(0, "127.0.0.1", res));
    try {
      const als = new AsyncLocalStorage<RequestCtx>();
      const transport = new RelayTransport({
        url: new URL(`http://127.0.0.1:${(srv.address() as AddressInfo).port}/mcp`),
        pool: { agentFor: () => countingAgent() },
        token: async () => undefined,
        current: () => als.getStore(),
        graceMs: 50,
        reconnection: {
          initialReconnectionDelay: 1_000,
          maxReconnectionDelay: 1_000,
          reconnectionDelayGrowFactor: 1,
          maxRetries: 2,
        },
      });
      const got: JSONRPCMessage[] = [];
      transport.onmessage = (m) => void got.push(m);
      await transport.start();
      const ctx = new RequestCtx("tools/call", true);
      const t0 = Date.now();
      await als.run(ctx, () => transport.send({ jsonrpc: "2.0", id: 7, method: "tools/call", params: {} }));
      await waitFor(() => got.length > 0);
      expect(Date.now() - t0, "after the server's retry (100 ms), not the 1 s backoff").toBeLessThan(900);
      expect(got).toEqual([{ jsonrpc: "2.0", id: 7, result: { resumed: true } }]);
      expect(gets).toEqual(["p-7"]);
      // Not called lost meanwhile: the grace covers the resumption.
      expect([ctx.phase, ctx.abortReason]).toEqual(["accepted", undefined]);
      ctx.settle();
      await transport.close();
    } finally {
      srv.closeAllConnections();
      await new Promise((res) => srv.close(res));
    }
  });
});

describe("SseParser", () => {
  it("fields across chunk borders, CRLF/CR/LF, multi-line data, comments, event names, ids and retry", () => {
    const events: Array<[string, string, string | undefined]> = [];
    const retries: number[] = [];
    const p = new SseParser(
      (e, d, id) => void events.push([e, d, id]),
      (ms) => void retries.push(ms),
    );
    for (const chunk of [
      ": hello\n",
      "retry: 250\n",
      "id: 1\r",
      '\ndata: {"a"',
      ":1}\r\n\r\n",
      "event: ping\ndata: x\ndata:  y\n\n",
      "data:z\rid: 9\r\r",
      "retry: nope\n",
      "data: unfinished",
    ]) {
      p.push(chunk);
    }
    expect(events).toEqual([
      ["", '{"a":1}', "1"],
      ["ping", "x\n y", undefined],
      ["", "z", "9"],
    ]);
    expect(retries).toEqual([250]);
  });
});

async function waitFor(cond: () => boolean, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}
