/**
 * The daemon speaks MCP to the relay without loading the SDK's types or Client (memory, issue 21):
 * what it keeps of them must stay what the SDK in use says. Protocol versions, the error's shape and
 * the WWW-Authenticate reading are compared with the SDK itself; the client's own behaviour
 * (server ping answered, server requests answered with the handler's result or error, unknown
 * answers reported, a closed session failing what is open) against a real HTTP server.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { LATEST_PROTOCOL_VERSION, McpError, SUPPORTED_PROTOCOL_VERSIONS } from "@loxmcp/common";
import { extractWWWAuthenticateParams } from "@modelcontextprotocol/sdk/client/auth.js";
import * as sdk from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { RelayClient } from "../src/relay/mcp-client.js";
import { challengeOf, RelayTransport } from "../src/relay/transport.js";

describe("what the daemon keeps of the SDK", () => {
  it("protocol versions equal the SDK's", () => {
    expect(LATEST_PROTOCOL_VERSION).toBe(sdk.LATEST_PROTOCOL_VERSION);
    expect([...SUPPORTED_PROTOCOL_VERSIONS]).toEqual([...sdk.SUPPORTED_PROTOCOL_VERSIONS]);
  });

  it("McpError has the SDK's message, code, data and name", () => {
    const ours = new McpError(-32602, "bad args", { x: 1 });
    const theirs = new sdk.McpError(-32602, "bad args", { x: 1 });
    expect({ m: ours.message, c: ours.code, d: ours.data, n: ours.name }).toEqual({
      m: theirs.message,
      c: theirs.code,
      d: theirs.data,
      n: theirs.name,
    });
  });

  it("WWW-Authenticate is read as the SDK reads it", () => {
    const headers = [
      undefined,
      "Basic realm=x",
      "Bearer",
      'Bearer error="insufficient_scope", scope="a b", resource_metadata="https://r.example/.well-known/oauth-protected-resource"',
      "Bearer error=invalid_token, scope=read",
      'Bearer resource_metadata="not a url"',
      'bearer realm="x", error="invalid_token"',
    ];
    for (const h of headers) {
      const theirs = extractWWWAuthenticateParams(
        new Response(null, { headers: h ? { "www-authenticate": h } : {} }),
      );
      const defined = Object.fromEntries(Object.entries(theirs).filter(([, v]) => v !== undefined));
      expect(challengeOf({ headers: h ? { "www-authenticate": h } : {} }), String(h)).toEqual(defined);
    }
  });
});

/** A hand-written MCP server: answers initialize, then runs `script` for every other POST. */
let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

type Posted = Record<string, unknown>;
async function startServer(
  script: (msg: Posted, res: ServerResponse, posted: Posted[]) => void,
): Promise<{ url: string; posted: Posted[] }> {
  const posted: Posted[] = [];
  server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      if (req.method !== "POST") {
        res.writeHead(405).end();
        return;
      }
      const msg = JSON.parse(body) as Posted;
      posted.push(msg);
      if (msg.method === "initialize") {
        res.writeHead(200, { "content-type": "application/json", "mcp-session-id": "s1" });
        res.end(
          JSON.stringify({
            jsonrpc: "2.0",
            id: msg.id,
            result: {
              protocolVersion: "2025-06-18",
              capabilities: { tools: {} },
              serverInfo: { name: "hand", version: "1" },
              instructions: "be careful",
            },
          }),
        );
        return;
      }
      script(msg, res, posted);
    });
  });
  const s = server;
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
  return { url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/mcp`, posted };
}

function clientFor(url: string): { client: RelayClient; transport: RelayTransport; errors: Error[] } {
  const transport = new RelayTransport({
    url: new URL(url),
    pool: { agentFor: () => undefined } as never,
    token: async () => undefined,
    current: () => undefined,
    graceMs: 50,
    reconnection: {
      initialReconnectionDelay: 50,
      maxReconnectionDelay: 50,
      reconnectionDelayGrowFactor: 1,
      maxRetries: 0,
    },
  });
  const client = new RelayClient({ name: "t", version: "0" }, { elicitation: {} });
  const errors: Error[] = [];
  client.onerror = (e) => errors.push(e);
  return { client, transport, errors };
}

function sse(res: ServerResponse, ...messages: unknown[]): void {
  res.writeHead(200, { "content-type": "text/event-stream" });
  for (const m of messages) res.write(`event: message\ndata: ${JSON.stringify(m)}\n\n`);
  res.end();
}

describe("RelayClient over a real HTTP server", () => {
  it("initialize: the server's version, capabilities, info and instructions; the version header after it", async () => {
    const { url, posted } = await startServer((msg, res) => {
      if (msg.method === "tools/list") sse(res, { jsonrpc: "2.0", id: msg.id, result: { tools: [] } });
      else res.writeHead(202).end();
    });
    const { client, transport } = clientFor(url);
    await client.connect(transport);
    expect(transport.protocolVersion).toBe("2025-06-18");
    expect(client.server).toEqual({
      capabilities: { tools: {} },
      serverInfo: { name: "hand", version: "1" },
      instructions: "be careful",
    });
    expect(await client.request({ method: "tools/list" })).toEqual({ tools: [] });
    expect(posted.map((m) => m.method)).toEqual(["initialize", "notifications/initialized", "tools/list"]);
    await client.close();
  });

  it("the server's ping is answered {}, its elicitation by the handler, a handler's McpError as its code and message", async () => {
    let held: ServerResponse | undefined;
    let callId: unknown;
    const { url, posted } = await startServer((msg, res) => {
      if (msg.method === "tools/call") {
        callId = msg.id;
        held = res;
        res.writeHead(200, { "content-type": "text/event-stream" });
        for (const m of [
          { jsonrpc: "2.0", id: "p1", method: "ping" },
          { jsonrpc: "2.0", id: "e1", method: "elicitation/create", params: { message: "ok?" } },
          { jsonrpc: "2.0", id: "e2", method: "sampling/createMessage", params: {} },
        ])
          res.write(`event: message\ndata: ${JSON.stringify(m)}\n\n`);
        return;
      }
      res.writeHead(202).end();
      const answers = posted.filter((m) => m.id !== undefined && m.method === undefined);
      if (answers.length === 3 && held) {
        held.end(
          `event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", id: callId, result: { done: true } })}\n\n`,
        );
      }
    });
    const { client, transport } = clientFor(url);
    client.onrequest = async (method) => {
      if (method === "elicitation/create") return { action: "accept", content: {} };
      throw new McpError(-32601, "no sampling here", { why: "test" });
    };
    await client.connect(transport);
    expect(await client.request({ method: "tools/call", params: { name: "x" } })).toEqual({ done: true });
    const answers = Object.fromEntries(
      posted.filter((m) => m.method === undefined).map((m) => [m.id as string, m.result ?? m.error]),
    );
    expect(answers).toEqual({
      p1: {},
      e1: { action: "accept", content: {} },
      e2: { code: -32601, message: "MCP error -32601: no sampling here", data: { why: "test" } },
    });
    await client.close();
  });

  it("an error answer rejects as McpError; a closed session fails what is open with ConnectionClosed", async () => {
    const { url } = await startServer((msg, res) => {
      if (msg.method === "bad")
        sse(res, { jsonrpc: "2.0", id: msg.id, error: { code: -32602, message: "no", data: 7 } });
      else if (msg.method === "slow") res.writeHead(200, { "content-type": "text/event-stream" });
      else res.writeHead(202).end();
    });
    const { client, transport } = clientFor(url);
    await client.connect(transport);
    const bad = await client.request({ method: "bad" }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(McpError);
    expect(bad).toMatchObject({ code: -32602, data: 7, message: "MCP error -32602: no" });
    const slow = client.request({ method: "slow" }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    await client.close();
    expect(await slow).toMatchObject({ code: -32000, message: "MCP error -32000: Connection closed" });
    await expect(client.request({ method: "bad" })).rejects.toThrow(/Not connected/);
  });

  it("an abort cancels upstream (notifications/cancelled with the id) and rejects with the reason", async () => {
    const { url, posted } = await startServer((msg, res) => {
      if (msg.method === "slow") res.writeHead(200, { "content-type": "text/event-stream" });
      else res.writeHead(202).end();
    });
    const { client, transport } = clientFor(url);
    await client.connect(transport);
    const ac = new AbortController();
    const p = client.request({ method: "slow" }, { signal: ac.signal }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    const reason = new Error("request caller");
    ac.abort(reason);
    expect(await p).toMatchObject({ code: -32001, message: expect.stringContaining("request caller") });
    const slowId = posted.find((m) => m.method === "slow")?.id;
    await new Promise((r) => setTimeout(r, 100));
    expect(posted.find((m) => m.method === "notifications/cancelled")?.params).toEqual({
      requestId: slowId,
      reason: "Error: request caller",
    });
    await client.close();
  });

  it("a malformed answer (error null, error without an integer code) fails the request; it never hangs", async () => {
    const { url } = await startServer((msg, res) => {
      if (msg.method === "nullerr") sse(res, { jsonrpc: "2.0", id: msg.id, error: null });
      else if (msg.method === "badcode")
        sse(res, { jsonrpc: "2.0", id: msg.id, error: { code: "x", message: 5 } });
      else if (msg.method === "both") sse(res, { jsonrpc: "2.0", id: msg.id, result: {}, error: null });
      else res.writeHead(202).end();
    });
    const { client, transport } = clientFor(url);
    await client.connect(transport);
    for (const method of ["nullerr", "badcode", "both"]) {
      const err = await client.request({ method }, { timeout: 5_000 }).catch((e: unknown) => e);
      expect(err, method).toBeInstanceOf(McpError);
      expect(err, method).toMatchObject({ code: -32603, message: expect.stringMatching(/malformed answer/) });
    }
    await client.close();
  });

  it("a server request the server cancels is not answered", async () => {
    let held: ServerResponse | undefined;
    let callId: unknown;
    let release: (() => void) | undefined;
    const { url, posted } = await startServer((msg, res) => {
      if (msg.method === "tools/call") {
        callId = msg.id;
        held = res;
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.write(
          `event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", id: "e9", method: "elicitation/create", params: {} })}\n\n`,
        );
        res.write(
          `event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", method: "notifications/cancelled", params: { requestId: "e9" } })}\n\n`,
        );
        setTimeout(() => {
          release?.();
          setTimeout(
            () =>
              held?.end(
                `event: message\ndata: ${JSON.stringify({ jsonrpc: "2.0", id: callId, result: {} })}\n\n`,
              ),
            100,
          );
        }, 50);
        return;
      }
      res.writeHead(202).end();
    });
    const { client, transport } = clientFor(url);
    client.onrequest = () => new Promise((resolve) => (release = () => resolve({ action: "accept" })));
    await client.connect(transport);
    expect(await client.request({ method: "tools/call", params: { name: "x" } })).toEqual({});
    await new Promise((r) => setTimeout(r, 100));
    expect(posted.filter((m) => m.id === "e9")).toEqual([]);
    await client.close();
  });

  it("a server speaking an unsupported protocol version is refused in initialize", async () => {
    server = createServer((req, res) => {
      let body = "";
      req.on("data", (c) => (body += c));
      req.on("end", () => {
        const msg = JSON.parse(body) as Posted;
        res.writeHead(200, { "content-type": "application/json" });
        res.end(
          JSON.stringify({
            jsonrpc: "2.0",
            id: msg.id,
            result: {
              protocolVersion: "1999-01-01",
              capabilities: {},
              serverInfo: { name: "old", version: "0" },
            },
          }),
        );
      });
    });
    await new Promise<void>((r) => server?.listen(0, "127.0.0.1", () => r()));
    const { client, transport } = clientFor(`http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`);
    await expect(client.connect(transport)).rejects.toThrow(/protocol version is not supported: 1999-01-01/);
  });
});
