/**
 * Fuzz (fast-check) of the real daemon's socket framing and JSON-RPC handling: random bytes,
 * invalid JSON, wrong shapes, unknown methods, ids of every type, a huge line. The daemon never
 * crashes (it still answers status), a response that is due is a JSON-RPC error with the right id,
 * and another connected MCP client is unaffected throughout.
 */
import { MAX_FRAME_BYTES } from "@loxmcp/common";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { RawConnection, SocketClientTransport } from "../../../test-support/socket-client.js";

const PROBE_ID = "__probe__";
const probe = `${JSON.stringify({ jsonrpc: "2.0", id: PROBE_ID, method: "loxmcp/status" })}\n`;

type Msg = Record<string, unknown>;

describe("fuzz: daemon socket framing and JSON-RPC handling", () => {
  let home: TempHome;
  let sim: SimHandle;
  let daemon: DaemonProcess;
  let bystander: Client;

  beforeAll(async () => {
    home = makeHome();
    sim = await withSimulator();
    daemon = spawnDaemon(sim.env(home.home));
    await daemon.waitReady(30_000);
    bystander = new Client({ name: "bystander", version: "1.0.0" });
    await bystander.connect(new SocketClientTransport(daemon.socketPath, { name: "bystander" }));
  });

  afterAll(async () => {
    await bystander?.close();
    await daemon?.stop();
    await sim?.stop();
    home?.cleanup();
  });

  /** Sends raw text then the probe; returns every message received before the probe's answer (or close). */
  async function exchange(raw: string | Buffer): Promise<{ before: Msg[]; probe?: Msg; closed: boolean }> {
    const c = await RawConnection.open(daemon.socketPath);
    try {
      await c.write(raw);
      await c.write(probe);
      let answer: Msg | undefined;
      try {
        answer = await c.waitMessage((m) => m.id === PROBE_ID, 5_000);
      } catch {
        if (!c.closed)
          throw new Error(`no answer to the probe; got ${JSON.stringify(c.messages).slice(0, 500)}`);
      }
      const before = c.messages.filter((m) => m.id !== PROBE_ID);
      return answer ? { before, probe: answer, closed: c.closed } : { before, closed: c.closed };
    } finally {
      c.close();
    }
  }

  async function stillHealthy(): Promise<void> {
    const s = await daemon.status();
    expect(s.state).toBe("ready");
    expect(daemon.exitInfo()).toBeUndefined();
    await bystander.ping();
  }

  const isError = (m: Msg) =>
    typeof m.error === "object" &&
    m.error !== null &&
    typeof (m.error as Msg).code === "number" &&
    typeof (m.error as Msg).message === "string" &&
    ((m.error as Msg).message as string).length > 0;

  it("random bytes never crash it, never produce a result, and leave other clients alone", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 2048 }), async (bytes) => {
        const r = await exchange(Buffer.concat([Buffer.from(bytes), Buffer.from("\n")]));
        for (const m of r.before) {
          expect(m.jsonrpc).toBe("2.0");
          // Random bytes may happen to be a JSON value, but never a request that yields a result
          // unless it was one (checked by the shape properties below); here only errors are due.
          if (!("result" in m)) expect(isError(m), JSON.stringify(m)).toBe(true);
        }
      }),
      { numRuns: 60 },
    );
    await stillHealthy();
  });

  it("each invalid JSON line gets a parse error (id null) and the connection stays usable", async () => {
    const notJson = fc.string({ minLength: 1, maxLength: 200 }).filter((s) => {
      if (s.includes("\n") || s.trim() === "") return false;
      try {
        JSON.parse(s);
        return false;
      } catch {
        return true;
      }
    });
    await fc.assert(
      fc.asyncProperty(notJson, async (line) => {
        const r = await exchange(`${line}\n`);
        expect(r.probe, "connection still answers after a malformed line").toBeDefined();
        expect(r.before).toHaveLength(1);
        const m = r.before[0] as Msg;
        expect(m.id).toBeNull();
        expect(isError(m)).toBe(true);
        expect((m.error as Msg).code).toBe(-32700);
      }),
      { numRuns: 60 },
    );
    await stillHealthy();
  });

  it("wrong shapes get an Invalid Request error when they carry an id, and nothing crashes", async () => {
    const shape = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      fc.record({
        jsonrpc: fc.constant("2.0"),
        id: fc.oneof(fc.integer(), fc.string()),
        method: fc.jsonValue(),
      }),
      fc.record({
        jsonrpc: fc.constant("2.0"),
        id: fc.oneof(fc.integer(), fc.string()),
        params: fc.jsonValue(),
      }),
      fc.record({
        id: fc.oneof(fc.integer(), fc.string()),
        method: fc.constant("loxmcp/status"),
        extra: fc.jsonValue(),
      }),
    );
    await fc.assert(
      fc.asyncProperty(shape, async (value) => {
        if (JSON.stringify(value) === undefined) return;
        const r = await exchange(`${JSON.stringify(value)}\n`);
        expect(r.probe, "connection still answers").toBeDefined();
        const v = value as Msg;
        const hasValidId =
          typeof v === "object" && v !== null && (typeof v.id === "string" || Number.isInteger(v.id));
        const isValidRequest = hasValidId && typeof v.method === "string";
        for (const m of r.before) {
          if (isValidRequest) continue; // e.g. {id, method:"loxmcp/status", extra}: a normal answer
          expect(isError(m), `answer to ${JSON.stringify(value)}: ${JSON.stringify(m)}`).toBe(true);
        }
        if (hasValidId && typeof v.method !== "string" && !("result" in v) && !("error" in v)) {
          expect(r.before.map((m) => m.id)).toContain(v.id);
        }
      }),
      { numRuns: 150 },
    );
    await stillHealthy();
  });

  it("unknown methods with ids of every valid type get exactly one MethodNotFound-style error with that id", async () => {
    const id = fc.oneof(fc.string({ maxLength: 40 }), fc.integer(), fc.constant(0), fc.constant(""));
    const method = fc.oneof(
      fc.string({ minLength: 1, maxLength: 40 }).map((s) => `x/${s}`),
      fc.string({ minLength: 1, maxLength: 40 }).map((s) => `loxmcp/zz-${s}`),
    );
    await fc.assert(
      fc.asyncProperty(id, method, fc.jsonValue({ maxDepth: 2 }), async (rid, m, params) => {
        const c = await RawConnection.open(daemon.socketPath);
        try {
          await c.send({ jsonrpc: "2.0", id: rid, method: m, params });
          const answer = await c.waitMessage((x) => x.id === rid, 5_000);
          expect(isError(answer), JSON.stringify(answer)).toBe(true);
          await c.send({ jsonrpc: "2.0", id: PROBE_ID, method: "loxmcp/status" });
          await c.waitMessage((x) => x.id === PROBE_ID, 5_000);
          expect(c.messages.filter((x) => x.id === rid)).toHaveLength(1);
        } finally {
          c.close();
        }
      }),
      { numRuns: 80 },
    );
    await stillHealthy();
  });

  it("ids of invalid types (null, bool, object, array) never get a result", async () => {
    const badId = fc.oneof(
      fc.constant(null),
      fc.boolean(),
      fc.object({ maxDepth: 1 }),
      fc.array(fc.integer(), { maxLength: 3 }),
    );
    await fc.assert(
      fc.asyncProperty(badId, fc.constantFrom("loxmcp/status", "ping", "tools/list"), async (rid, m) => {
        const r = await exchange(`${JSON.stringify({ jsonrpc: "2.0", id: rid, method: m })}\n`);
        expect(r.probe, "connection still answers").toBeDefined();
        for (const x of r.before)
          expect(isError(x), `answer to id ${JSON.stringify(rid)}: ${JSON.stringify(x)}`).toBe(true);
      }),
      { numRuns: 60 },
    );
    await stillHealthy();
  });

  it("valid frames split at any byte (even inside UTF-8 characters) or batched in one write are each answered once", async () => {
    const frames = fc.array(fc.string({ maxLength: 30, unit: "grapheme" }), { minLength: 1, maxLength: 8 });
    await fc.assert(
      fc.asyncProperty(frames, fc.array(fc.nat(), { maxLength: 12 }), async (texts, cuts) => {
        const ids = texts.map((_, i) => `f${i}`);
        const payload = Buffer.from(
          texts
            .map((t, i) =>
              JSON.stringify({ jsonrpc: "2.0", id: ids[i], method: "loxmcp/status", params: { note: t } }),
            )
            .join("\n") + "\n",
        );
        const points = [...new Set(cuts.map((c) => c % payload.length))].sort((a, b) => a - b);
        const c = await RawConnection.open(daemon.socketPath);
        try {
          let from = 0;
          for (const p of [...points, payload.length]) {
            if (p > from) await c.write(payload.subarray(from, p));
            from = p;
          }
          for (const id of ids) await c.waitMessage((m) => m.id === id, 5_000);
          for (const id of ids) {
            const answers = c.messages.filter((m) => m.id === id);
            expect(answers).toHaveLength(1);
            expect(answers[0]?.result, JSON.stringify(answers[0])).toBeDefined();
          }
          expect(c.messages).toHaveLength(ids.length);
        } finally {
          c.close();
        }
      }),
      { numRuns: 60 },
    );
    await stillHealthy();
  });

  it("a line over 4 MiB closes only that connection, with an error", async () => {
    const c = await RawConnection.open(daemon.socketPath);
    const other = await RawConnection.open(daemon.socketPath);
    try {
      await c.write(Buffer.alloc(MAX_FRAME_BYTES + 1024, 0x61));
      await c.write("\n");
      await c.closedPromise;
      expect(c.messages.some((m) => isError(m) && m.id === null)).toBe(true);
      await other.send({ jsonrpc: "2.0", id: 7, method: "loxmcp/status" });
      const ok = await other.waitMessage((m) => m.id === 7);
      expect(ok.result).toBeDefined();
    } finally {
      c.close();
      other.close();
    }
    await stillHealthy();
  });
});
