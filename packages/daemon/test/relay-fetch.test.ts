/**
 * The transport's fetch wrappers (SDK middleware shape), composed as the upstream composes them:
 * the Bearer token outside, delivery tracking inside, so that tracking sees what went on the wire.
 */
import type { FetchLike } from "@modelcontextprotocol/sdk/shared/transport.js";
import { describe, expect, it } from "vitest";
import { withBearer } from "../src/relay/auth/bearer.js";
import { RequestCtx, withDeliveryTracking } from "../src/relay/delivery.js";

const URL_ = "https://relay.example.test/mcp";
const body = (id: number, method = "tools/call") =>
  JSON.stringify({ jsonrpc: "2.0", id, method, params: {} });

function rig(base: FetchLike, token: string | null = "tok-1") {
  let ctx: RequestCtx | undefined;
  const seen: Array<string | null> = [];
  const wire: FetchLike = (input, init) => {
    seen.push(new Headers(init?.headers).get("authorization"));
    return base(input, init);
  };
  const fetch = withBearer(async () => token ?? undefined)(withDeliveryTracking(() => ctx, 10)(wire));
  return {
    seen,
    fetch,
    track(c: RequestCtx) {
      ctx = c;
      return c;
    },
  };
}

describe("withBearer + withDeliveryTracking", () => {
  it("accepted: the token goes on the wire and is noted; the request is accepted", async () => {
    const r = rig(
      async () => new Response("{}", { status: 200, headers: { "content-type": "application/json" } }),
    );
    const ctx = r.track(new RequestCtx("tools/call", false));
    await r.fetch(URL_, { method: "POST", body: body(7) });
    expect(r.seen).toEqual(["Bearer tok-1"]);
    expect([ctx.phase, ctx.status, ctx.usedToken, ctx.id, ctx.mayHaveRun]).toEqual([
      "accepted",
      200,
      "tok-1",
      7,
      true,
    ]);
  });

  it("401: rejected (it never ran), with the challenge and the token it was refused for", async () => {
    const r = rig(
      async () =>
        new Response("", {
          status: 401,
          headers: { "www-authenticate": 'Bearer error="invalid_token", scope="mcp"' },
        }),
    );
    const ctx = r.track(new RequestCtx("tools/call", false));
    await r.fetch(URL_, { method: "POST", body: body(1) });
    expect([ctx.phase, ctx.status, ctx.usedToken, ctx.mayHaveRun]).toEqual(["rejected", 401, "tok-1", false]);
    expect(ctx.challenge).toMatchObject({ error: "invalid_token", scope: "mcp" });
  });

  it("connection refused: refused (nothing left); a reset after connecting: lost", async () => {
    const fail = (code: string) => async () => {
      throw Object.assign(new TypeError("fetch failed"), { cause: { code } });
    };
    const refused = rig(fail("ECONNREFUSED"));
    const a = refused.track(new RequestCtx("tools/call", false));
    await expect(refused.fetch(URL_, { method: "POST", body: body(1) })).rejects.toThrow();
    expect([a.phase, a.netCode, a.mayHaveRun]).toEqual(["refused", "ECONNREFUSED", false]);
    const reset = rig(fail("ECONNRESET"));
    const b = reset.track(new RequestCtx("tools/call", false));
    await expect(reset.fetch(URL_, { method: "POST", body: body(1) })).rejects.toThrow();
    expect([b.phase, b.netCode, b.mayHaveRun]).toEqual(["lost", "ECONNRESET", true]);
  });

  it("a 5xx is lost (it may have run); no token ⇒ no header", async () => {
    const r = rig(async () => new Response("", { status: 500 }), null);
    const ctx = r.track(new RequestCtx("tools/call", false));
    await r.fetch(URL_, { method: "POST", body: body(1), headers: { authorization: "Bearer stale" } });
    expect(r.seen).toEqual([null]);
    expect([ctx.phase, ctx.usedToken]).toEqual(["lost", undefined]);
  });

  it("only the context's own request is tracked: GETs, notifications and other ids pass untouched", async () => {
    const r = rig(async () => new Response("", { status: 500 }));
    const ctx = r.track(new RequestCtx("tools/call", false));
    await r.fetch(URL_, { method: "GET" });
    await r.fetch(URL_, {
      method: "POST",
      body: JSON.stringify({ jsonrpc: "2.0", method: "notifications/cancelled" }),
    });
    expect(ctx.phase).toBe("none");
    await r.fetch(URL_, { method: "POST", body: body(3) });
    expect(ctx.id).toBe(3);
    ctx.phase = "none";
    await r.fetch(URL_, { method: "POST", body: body(4) });
    expect(ctx.phase).toBe("none");
    expect(r.seen).toEqual(["Bearer tok-1", "Bearer tok-1", "Bearer tok-1", "Bearer tok-1"]);
  });
});
