/**
 * Many clients through the real daemon's socket: one login and one upstream session for all,
 * ids that collide across clients, framing errors that hurt only the offending connection.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { ElicitRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import {
  ControlCallError,
  controlCall,
  RawConnection,
  SocketClientTransport,
} from "../../../test-support/socket-client.js";

const ErrorCodes = { ParseError: -32700, InvalidRequest: -32600, MethodNotFound: -32601 };

let h: TempHome;
let s: SimHandle;
let d: DaemonProcess;
const clients: Client[] = [];
const raws: RawConnection[] = [];

beforeAll(async () => {
  h = makeHome();
  s = await withSimulator();
  d = spawnDaemon(s.env(h.home));
  await d.waitReady();
});

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => {});
  for (const r of raws) r.close();
  await d?.stop().catch(() => d.kill9());
  await s?.stop();
  h?.cleanup();
});

async function newClient(name: string): Promise<Client> {
  const c = new Client({ name, version: "0.0.1" });
  await c.connect(new SocketClientTransport(d.socketPath, { name: null }));
  clients.push(c);
  return c;
}

async function raw(): Promise<RawConnection> {
  const r = await RawConnection.open(d.socketPath);
  raws.push(r);
  return r;
}

function textOf(result: unknown): string {
  const content = (result as { content?: Array<{ type: string; text?: string }> }).content ?? [];
  return content.map((c) => c.text ?? "").join("");
}

describe("socket multiplexer", () => {
  it("5 concurrent SDK clients share one login and one upstream session, each gets its own answers", async () => {
    const house = s.sim.house();
    const targets = house.controls.slice(0, 5);
    expect(targets).toHaveLength(5);
    const cs = await Promise.all(targets.map((_, i) => newClient(`client-${i}`)));

    // Every SDK client numbers its requests 0, 1, 2 …: ids collide across connections.
    const rounds = await Promise.all(
      cs.map(async (c, i) => {
        const answers: string[] = [];
        for (let k = 0; k < 4; k++) {
          const target = targets[(i + k) % targets.length]!;
          const r = await c.callTool({ name: "control_describe", arguments: { uuid: target.uuid } });
          answers.push(`${target.uuid}=>${JSON.parse(textOf(r)).uuid}`);
        }
        const tools = await c.listTools();
        return { answers, tools: tools.tools.length };
      }),
    );
    for (const r of rounds) {
      for (const a of r.answers) {
        const [asked, got] = a.split("=>");
        expect(got).toBe(asked);
      }
      expect(r.tools).toBeGreaterThanOrEqual(6);
    }
    const stats = s.sim.stats();
    expect(stats.logins).toBe(1);
    expect(stats.sessions).toBe(1);

    const st = await d.status();
    const names = st.clients.map((c) => c.name).sort();
    expect(names).toEqual(
      expect.arrayContaining(["client-0", "client-1", "client-2", "client-3", "client-4"]),
    );
  });

  it("raw connections reusing the same id at the same time get their own answers", async () => {
    const [a, b] = [await raw(), await raw()];
    for (const r of [a, b]) {
      await r.send({
        jsonrpc: "2.0",
        method: "loxmcp/hello",
        params: { kind: "shim", name: "raw", pid: 1, ppid: 1 },
      });
      await r.send({
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: {
          protocolVersion: "2025-06-18",
          capabilities: {},
          clientInfo: { name: "raw", version: "1" },
        },
      });
    }
    const [ia, ib] = await Promise.all([a.waitMessage((m) => m.id === 1), b.waitMessage((m) => m.id === 1)]);
    expect((ia.result as { protocolVersion: string }).protocolVersion).toBe("2025-06-18");
    expect(ib.result).toBeDefined();
    const [ua, ub] = [s.sim.house().controls[0]!.uuid, s.sim.house().controls[1]!.uuid];
    await Promise.all([
      a.send({
        jsonrpc: "2.0",
        id: "x",
        method: "tools/call",
        params: { name: "control_describe", arguments: { uuid: ua } },
      }),
      b.send({
        jsonrpc: "2.0",
        id: "x",
        method: "tools/call",
        params: { name: "control_describe", arguments: { uuid: ub } },
      }),
    ]);
    const [ra, rb] = await Promise.all([
      a.waitMessage((m) => m.id === "x"),
      b.waitMessage((m) => m.id === "x"),
    ]);
    expect(JSON.parse(textOf(ra.result)).uuid).toBe(ua);
    expect(JSON.parse(textOf(rb.result)).uuid).toBe(ub);
    // A second initialize on the same connection is refused (MCP lifecycle).
    await a.send({
      jsonrpc: "2.0",
      id: 2,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
    });
    expect(((await a.waitMessage((m) => m.id === 2)).error as { message: string }).message).toMatch(
      /already done on this connection/,
    );
    // An unknown protocol version gets the latest one we support.
    const c = await raw();
    await c.send({
      jsonrpc: "2.0",
      id: 2,
      method: "initialize",
      params: { protocolVersion: "1999-01-01", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
    });
    const again = await c.waitMessage((m) => m.id === 2);
    expect((again.result as { protocolVersion: string }).protocolVersion).toMatch(/^20\d\d-\d\d-\d\d$/);
    expect((again.result as { protocolVersion: string }).protocolVersion).not.toBe("1999-01-01");
  });

  it("an oversize frame (> 4 MiB) closes only that connection; other clients keep working", async () => {
    const bystander = await newClient("bystander");
    await bystander.callTool({ name: "system_status", arguments: {} });
    const bad = await raw();
    await bad.send({ jsonrpc: "2.0", id: 1, method: "ping" });
    await bad.waitMessage((m) => m.id === 1);
    const big = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"x","arguments":{"blob":"${"a".repeat(4 * 1024 * 1024 + 10)}"}}}\n`;
    await bad.write(big);
    await bad.closedPromise;
    const err = bad.messages.find((m) => m.error !== undefined) as {
      error: { code: number; message: string };
    };
    expect(err.error.code).toBe(ErrorCodes.InvalidRequest);
    expect(err.error.message).toMatch(/4 MiB/);
    expect(bad.messages.some((m) => m.id === 2)).toBe(false);
    // The daemon and the other client are fine.
    const r = await bystander.callTool({ name: "system_status", arguments: {} });
    expect(textOf(r)).toContain(s.sim.serial);
    expect((await d.status()).state).toBe("ready");
  });

  it("a malformed line gets a parse error and the connection stays usable", async () => {
    const r = await raw();
    await r.write("{this is not json\n");
    const perr = await r.waitMessage((m) => m.error !== undefined);
    expect(perr.id).toBeNull();
    expect((perr.error as { code: number }).code).toBe(ErrorCodes.ParseError);
    await r.write('["batch"]\n');
    await r.waitMessage(
      (m) => (m.error as { code?: number } | undefined)?.code === ErrorCodes.InvalidRequest,
    );
    await r.send({ jsonrpc: "2.0", id: 9, method: "ping" });
    expect((await r.waitMessage((m) => m.id === 9)).result).toEqual({});
    expect(r.closed).toBe(false);
  });

  it("a server→client request (elicitation) goes only to the client whose call caused it", async () => {
    const asked: string[] = [];
    const withElicitation = async (name: string) => {
      const c = new Client({ name, version: "1" }, { capabilities: { elicitation: {} } });
      c.setRequestHandler(ElicitRequestSchema, async (req) => {
        asked.push(`${name}: ${req.params.message}`);
        return { action: "accept", content: { confirm: true } };
      });
      await c.connect(new SocketClientTransport(d.socketPath, { name: null }));
      clients.push(c);
      return c;
    };
    const asker = await withElicitation("asker");
    await withElicitation("other");
    const alarm = s.sim.house().controls.find((c) => c.type === "Alarm");
    expect(alarm).toBeDefined();
    const args = { uuid: alarm!.uuid, command: "quit" };
    const r = await asker.callTool({ name: "control_command", arguments: args });
    expect(r.isError ?? false, JSON.stringify(r.content)).toBe(false);
    expect(asked).toHaveLength(1);
    expect(asked[0]).toMatch(/^asker: /);
    const ran = s.sim.stats().executions.filter((e) => {
      const a = e.arguments as { uuid?: string; command?: string };
      return e.tool === "control_command" && a.uuid === args.uuid && a.command === args.command;
    });
    expect(ran.map((e) => e.count)).toEqual([1]);
  });

  it("control methods work without initialize; an unknown one is MethodNotFound", async () => {
    const st = (await controlCall(d.socketPath, "loxmcp/status")) as Record<string, unknown>;
    expect(st).toMatchObject({
      pid: d.pid,
      state: "ready",
      policy: { mode: "confirm" },
      socket: d.socketPath,
      home: h.home,
    });
    expect(typeof st.uptimeSec).toBe("number");
    expect(typeof st.tokenExpiresInSec).toBe("number");
    expect(st.counters).toMatchObject({ logins: 1 });
    const err = await controlCall(d.socketPath, "loxmcp/no-such-thing").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ControlCallError);
    expect((err as ControlCallError).code).toBe(ErrorCodes.MethodNotFound);
  });
});
