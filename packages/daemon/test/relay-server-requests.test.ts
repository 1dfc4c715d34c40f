/**
 * Server→client requests and notifications through the UpstreamSession, against a real SDK
 * MCP server (no auth, direct mode) that elicits during tool calls and changes its tool list.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { ElicitResultSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import type { ServerRequest } from "../src/contracts.js";
import { UpstreamSession } from "../src/relay/upstream.js";
import { type Database, openDatabase } from "../src/store/db.js";
import { TokenStore } from "../src/store/tokens.js";
import { captureLog } from "./relay-helpers.js";

let http: Server | undefined;
let up: UpstreamSession | undefined;
let db: Database | undefined;
let dir: string | undefined;
const servers: McpServer[] = [];

afterEach(async () => {
  await up?.stop();
  for (const s of servers.splice(0)) await s.close().catch(() => {});
  if (http) {
    http.closeAllConnections();
    await new Promise((r) => http!.close(r));
  }
  db?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  http = up = db = dir = undefined;
});

async function startServer(): Promise<{ url: string; addTool: () => void }> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  let latest: McpServer | undefined;
  const build = () => {
    const server = new McpServer({ name: "fixture", version: "1.0.0" }, { capabilities: { logging: {} } });
    server.registerTool("ask", { inputSchema: { who: z.string() } }, async ({ who }, extra) => {
      try {
        const answer = await extra.sendRequest(
          {
            method: "elicitation/create",
            params: {
              message: `question for ${who}`,
              requestedSchema: { type: "object", properties: { ok: { type: "boolean" } } },
            },
          },
          ElicitResultSchema,
        );
        return { content: [{ type: "text", text: `${who}:${JSON.stringify(answer)}` }] };
      } catch (err) {
        return { content: [{ type: "text", text: `${who}:error:${(err as Error).message}` }], isError: true };
      }
    });
    server.registerTool("log", {}, async (extra) => {
      await extra.sendNotification({
        method: "notifications/message",
        params: { level: "info", data: "hello" },
      });
      const progressToken = extra._meta?.progressToken;
      if (progressToken !== undefined) {
        await extra.sendNotification({
          method: "notifications/progress",
          params: { progressToken, progress: 1 },
        });
      }
      return { content: [{ type: "text", text: "logged" }] };
    });
    servers.push(server);
    latest = server;
    return server;
  };
  http = createServer(async (req, res) => {
    const sid = req.headers["mcp-session-id"] as string | undefined;
    let t = sid ? transports.get(sid) : undefined;
    if (!t) {
      t = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => void transports.set(id, t!),
      });
      await build().connect(t);
    }
    await t.handleRequest(req, res);
  });
  await new Promise<void>((r) => http!.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`,
    addTool: () => latest!.registerTool("added", {}, async () => ({ content: [] })),
  };
}

function session(url: string): UpstreamSession {
  dir = mkdtempSync("/tmp/lx-");
  db = openDatabase(join(dir, "loxmcp.db"));
  up = new UpstreamSession(
    {
      connectUrl: "https://connect.loxonecloud.com",
      serial: "504F94A0C0DE",
      user: "u",
      password: "p",
      upstreamUrl: url,
      pingIntervalMs: 60_000,
      idleCheckMs: 60_000,
      requestTimeoutMs: 5_000,
      logger: captureLog().logger,
    },
    new TokenStore(db),
  );
  up.start();
  return up;
}

async function waitUntil(fn: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("server→client traffic", () => {
  it("routes elicitation to the request that caused it, even with several in flight", async () => {
    const srv = await startServer();
    const s = session(srv.url);
    await s.whenReady(10_000);
    const seen: string[] = [];
    const handler = (tag: string) => async (req: ServerRequest) => {
      seen.push(`${tag}:${req.method}:${(req.params as { message: string }).message}`);
      return { action: "accept", content: { ok: tag === "A" } };
    };
    const [a, b] = (await Promise.all([
      s.request(
        "tools/call",
        { name: "ask", arguments: { who: "A" } },
        { retryable: false, onServerRequest: handler("A") },
      ),
      s.request(
        "tools/call",
        { name: "ask", arguments: { who: "B" } },
        { retryable: false, onServerRequest: handler("B") },
      ),
    ])) as Array<{ content: Array<{ text: string }> }>;
    expect(a?.content[0]?.text).toBe('A:{"action":"accept","content":{"ok":true}}');
    expect(b?.content[0]?.text).toBe('B:{"action":"accept","content":{"ok":false}}');
    expect(seen.sort()).toEqual([
      "A:elicitation/create:question for A",
      "B:elicitation/create:question for B",
    ]);
  });

  it("answers method-not-found when no request can take the server's request", async () => {
    const srv = await startServer();
    const s = session(srv.url);
    await s.whenReady(10_000);
    const res = (await s.request(
      "tools/call",
      { name: "ask", arguments: { who: "C" } },
      { retryable: false },
    )) as {
      content: Array<{ text: string }>;
    };
    expect(res.content[0]?.text).toMatch(/^C:error:.*no connected client can answer elicitation\/create/);
  });

  it("forwards notifications and refreshes the tool cache on tools/list_changed", async () => {
    const srv = await startServer();
    const s = session(srv.url);
    await s.whenReady(10_000);
    const notes: Array<{ method: string; params?: unknown }> = [];
    s.on("notification", (n) => notes.push(n));
    const r0 = await s.request(
      "tools/call",
      { name: "log", arguments: {}, _meta: { progressToken: "client-7" } },
      { retryable: true },
    );
    expect(r0).toEqual({ content: [{ type: "text", text: "logged" }] });
    await waitUntil(() => notes.length >= 2);
    expect(notes).toContainEqual({
      method: "notifications/message",
      params: { level: "info", data: "hello" },
    });
    // Progress keeps the client's own token (the mux maps tokens per connection).
    expect(notes).toContainEqual({
      method: "notifications/progress",
      params: { progressToken: "client-7", progress: 1 },
    });

    expect((await s.listTools()).tools.map((t) => t.name)).toEqual(["ask", "log"]);
    const changed = new Promise<void>((r) => s.on("toolsChanged", () => r()));
    srv.addTool();
    await changed;
    expect((await s.listTools()).tools.map((t) => t.name)).toEqual(["ask", "log", "added"]);
  });
});
