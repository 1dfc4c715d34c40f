/**
 * The failure classifier (relay/failures.ts), on its own: every branch of what a failed request
 * means and what the session must do about it. The rule above all: a write that may have reached
 * the server is never resent.
 */
import { McpError } from "@loxmcp/common";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { AuthError } from "../src/relay/auth/errors.js";
import type { Phase } from "../src/relay/delivery.js";
import {
  type Attempt,
  ConnectError,
  classifyFailure,
  classifyInitFailure,
  type Decision,
  type Failure,
  type InitFailure,
} from "../src/relay/failures.js";

const ENTRY = "https://relay.example.test/mcp?secret=x";

function failure(attempt: Partial<Attempt>, more: Partial<Failure> = {}): Failure {
  return {
    purpose: "request",
    attempt: { method: "tools/call", retryable: false, phase: "none", ...attempt },
    error: new Error("fetch failed"),
    elapsedMs: 1_234,
    entry: ENTRY,
    current: true,
    params: { name: "switch_on" },
    ...more,
  };
}

const read = (a: Partial<Attempt>, more?: Partial<Failure>) =>
  classifyFailure(failure({ ...a, retryable: true, method: "tools/list" }, more));
const write = (a: Partial<Attempt>, more?: Partial<Failure>) => classifyFailure(failure(a, more));

function errorOf(d: Decision): { code: string; message: string; rpcCode?: number | undefined } {
  if (!("error" in d)) throw new Error(`no error in ${d.outcome}`);
  return { code: d.error.code, message: d.error.message, rpcCode: d.error.rpcCode };
}

describe("classifyFailure: a write whose answer was lost", () => {
  it("connection broke after it was sent ⇒ OUTCOME_UNKNOWN, never resendable; the connection is dropped and the relay re-resolved", () => {
    const d = write({ phase: "sent", netCode: "ETIMEDOUT" });
    expect(d.outcome).toBe("outcome_unknown");
    expect(errorOf(d).code).toBe("OUTCOME_UNKNOWN");
    expect(errorOf(d).message).toContain("the call of tool switch_on was in flight: outcome unknown");
    expect(errorOf(d).message).toContain("not retried automatically");
    expect(d.drop).toEqual({
      reresolve: true,
      reason: "the connection to the relay's MCP endpoint (https://relay.example.test/mcp) broke (ETIMEDOUT)",
    });
  });

  it("accepted, then the response stream was lost ⇒ OUTCOME_UNKNOWN", () => {
    const d = write({ phase: "lost", status: 200, netCode: "stream broken" });
    expect(d.outcome).toBe("outcome_unknown");
    expect(d.drop?.reason).toContain("broke (stream broken)");
  });

  it("a 5xx after it may have run ⇒ OUTCOME_UNKNOWN naming the status", () => {
    const d = write({ phase: "lost", status: 502 });
    expect(d.outcome).toBe("outcome_unknown");
    expect(d.drop?.reason).toBe(
      "the relay's MCP endpoint (https://relay.example.test/mcp) answered HTTP 502",
    );
  });

  it("no net code ⇒ the reason names the error", () => {
    const d = write({ phase: "accepted" }, { error: new Error("socket hang up") });
    expect(d.drop?.reason).toContain("broke (socket hang up)");
  });

  it("a method other than tools/call is named as is", () => {
    const d = classifyFailure(failure({ phase: "sent", method: "resources/read" }, { params: {} }));
    expect(errorOf(d).message).toContain("while resources/read was in flight");
  });

  it("a kept-alive connection that broke before any answer ⇒ OUTCOME_UNKNOWN, pool reset, session pinged, no re-resolve", () => {
    const d = write({ phase: "lost", netCode: "ECONNRESET" });
    expect(d.outcome).toBe("outcome_unknown");
    expect(d.resetPool).toBe(true);
    expect(d.checkSession).toBe(true);
    expect(d.drop).toBeUndefined();
  });

  it("…on a connection already replaced ⇒ no ping (the new session is checked anyway)", () => {
    const d = write({ phase: "lost", netCode: "UND_ERR_SOCKET" }, { current: false });
    expect(d.outcome).toBe("outcome_unknown");
    expect(d.resetPool).toBe(true);
    expect(d.checkSession).toBeUndefined();
  });

  it("property: whatever else happened, a write that may have run is never resent", () => {
    const phases: Phase[] = ["none", "sent", "refused", "rejected", "lost", "accepted"];
    fc.assert(
      fc.property(
        fc.constantFrom(...phases),
        fc.option(fc.integer({ min: 100, max: 599 }), { nil: undefined }),
        fc.option(fc.constantFrom("ECONNRESET", "ECONNREFUSED", "ETIMEDOUT", "UND_ERR_SOCKET", "EPIPE"), {
          nil: undefined,
        }),
        fc.option(fc.constantFrom("timeout" as const, "caller" as const, "stream" as const), {
          nil: undefined,
        }),
        fc.constantFrom("request" as const, "ping" as const, "wake" as const),
        fc.boolean(),
        (phase, status, netCode, abortReason, purpose, current) => {
          const d = classifyFailure(
            failure({ phase, status, netCode, abortReason }, { purpose, current, sinceWakeMs: 0 }),
          );
          const mayHaveRun = phase === "sent" || phase === "lost" || phase === "accepted";
          if (mayHaveRun) expect(["resend_read", "not_delivered"]).not.toContain(d.outcome);
        },
      ),
    );
  });
});

describe("classifyFailure: reads and requests that never ran", () => {
  it("a read that may have run ⇒ resent after recovery", () => {
    const d = read({ phase: "sent", netCode: "ETIMEDOUT" });
    expect(d).toMatchObject({ outcome: "resend_read", drop: { reresolve: true } });
  });

  it("a read on a kept-alive connection that broke ⇒ resent (the resend checks the session), no ping", () => {
    const d = read({ phase: "lost", netCode: "EPIPE" });
    expect(d.outcome).toBe("resend_read");
    expect(d.resetPool).toBe(true);
    expect(d.checkSession).toBeUndefined();
  });

  it("connection refused before sending ⇒ not delivered (nothing was sent), even a write; re-resolve", () => {
    const d = write({ phase: "refused", netCode: "ECONNREFUSED" });
    expect(d).toEqual({
      outcome: "not_delivered",
      reason: "ECONNREFUSED",
      drop: {
        reresolve: true,
        reason: "cannot connect to the relay's MCP endpoint (https://relay.example.test/mcp) (ECONNREFUSED)",
      },
    });
    expect(write({ phase: "refused" })).toMatchObject({
      reason: "connection refused",
      drop: { reason: expect.stringContaining("(network error)") },
    });
  });

  it("never reached fetch (closed client) ⇒ not delivered; the current connection is dropped", () => {
    const d = write({ phase: "none" }, { error: new Error("Not connected") });
    expect(d).toEqual({
      outcome: "not_delivered",
      reason: "Not connected",
      drop: { reresolve: true, reason: "could not send: Not connected" },
    });
    expect(write({ phase: "none" }, { error: new Error("Not connected"), current: false })).toEqual({
      outcome: "not_delivered",
      reason: "Not connected",
    });
  });
});

describe("classifyFailure: answers that mean it never ran", () => {
  it("401 ⇒ answer once (refresh / log in), then resend", () => {
    expect(write({ phase: "rejected", status: 401 })).toEqual({ outcome: "reauth" });
  });

  it("403 insufficient_scope ⇒ step up, then resend", () => {
    expect(write({ phase: "rejected", status: 403, challenge: { error: "insufficient_scope" } })).toEqual({
      outcome: "step_up",
    });
  });

  it("a plain 403 ⇒ REMOTE_ERROR forbidden, it did not run", () => {
    const d = write({ phase: "rejected", status: 403, challenge: { error: "invalid_token" } });
    expect(errorOf(d)).toEqual({
      code: "REMOTE_ERROR",
      message: "the relay forbidden tools/call (HTTP 403); it did not run",
      rpcCode: 403,
    });
  });

  it.each([400, 405, 406, 415, 422])(
    "%i ⇒ REMOTE_ERROR refused as malformed; the session stays",
    (status) => {
      const d = write({ phase: "rejected", status });
      expect(d.outcome).toBe("remote_error");
      expect(errorOf(d).message).toBe(
        `the relay refused as malformed tools/call (HTTP ${status}); it did not run`,
      );
      expect(d.drop).toBeUndefined();
    },
  );

  it("404 session gone ⇒ re-initialise on the same relay (no re-resolve), then resend", () => {
    expect(write({ phase: "rejected", status: 404 })).toEqual({
      outcome: "not_delivered",
      reason: "session expired (404)",
      drop: {
        reresolve: false,
        reason: "the relay forgot our MCP session (HTTP 404 from https://relay.example.test/mcp)",
      },
    });
  });

  it("429 ⇒ UNAVAILABLE, nothing sent; the session stays and connect is not asked", () => {
    const d = write({ phase: "rejected", status: 429 });
    expect(d.outcome).toBe("unavailable");
    expect(errorOf(d).message).toContain("rate limiting requests (HTTP 429); tools/call was not sent");
    expect(d.drop).toBeUndefined();
  });

  it.each([408, 409, 413, 503])("%i ⇒ not delivered; reconnect through connect", (status) => {
    expect(write({ phase: "rejected", status })).toEqual({
      outcome: "not_delivered",
      reason: `HTTP ${status}`,
      drop: {
        reresolve: true,
        reason: `the relay's MCP endpoint (https://relay.example.test/mcp) answered HTTP ${status}`,
      },
    });
  });
});

describe("classifyFailure: errors, timeouts, cancellation", () => {
  it("a JSON-RPC error answer ⇒ REMOTE_ERROR passed through (code, data, message without the SDK prefix)", () => {
    const d = write(
      { phase: "accepted", status: 200 },
      { error: new McpError(-32602, "bad args", { x: 1 }) },
    );
    expect(d.outcome).toBe("remote_error");
    if (!("error" in d)) throw new Error("no error");
    expect([d.error.code, d.error.message, d.error.rpcCode, d.error.data]).toEqual([
      "REMOTE_ERROR",
      "bad args",
      -32602,
      { x: 1 },
    ]);
  });

  it("an McpError that did not come from an answer (the stream was lost) ⇒ connection trouble", () => {
    const d = write({ phase: "lost", status: 200 }, { error: new McpError(-32000, "Connection closed") });
    expect(d.outcome).toBe("outcome_unknown");
  });

  it("getting a token failed ⇒ UNAVAILABLE, not sent", () => {
    const d = write({ phase: "none" }, { error: new AuthError("AUTH_UNAVAILABLE", "token endpoint down") });
    expect(errorOf(d)).toMatchObject({
      code: "UNAVAILABLE",
      message: "token endpoint down; tools/call was not sent",
    });
  });

  it("login impossible ⇒ auth_failed with the reason", () => {
    const d = write(
      { phase: "none" },
      { error: new AuthError("LOGIN_REJECTED", "rejected"), loginImpossible: "login was rejected" },
    );
    expect(d).toEqual({ outcome: "auth_failed", reason: "login was rejected" });
  });

  it("timeout before it was sent ⇒ TIMEOUT could not be sent", () => {
    const d = write({ phase: "none", abortReason: "timeout" });
    expect(errorOf(d)).toMatchObject({
      code: "TIMEOUT",
      message: "tools/call could not be sent within 1.2 s",
    });
    expect(d.drop).toBeUndefined();
  });

  it("a write timed out after it was sent ⇒ OUTCOME_UNKNOWN (cause timeout); a read ⇒ TIMEOUT", () => {
    const w = write({ phase: "accepted", abortReason: "timeout" });
    expect(errorOf(w).code).toBe("OUTCOME_UNKNOWN");
    expect(errorOf(w).message).toContain("timed out after 1.2 s");
    const r = read({ phase: "accepted", abortReason: "timeout" });
    expect(errorOf(r)).toMatchObject({
      code: "TIMEOUT",
      message: "tools/list got no answer within 1.2 s (it may still run upstream)",
    });
  });

  it("a health ping timed out ⇒ the connection is dropped and the relay re-resolved", () => {
    const d = classifyFailure(
      failure(
        { method: "ping", retryable: true, phase: "sent", abortReason: "timeout" },
        { purpose: "ping" },
      ),
    );
    expect(d).toMatchObject({ outcome: "timeout", drop: { reresolve: true, reason: "ping timed out" } });
  });

  it("cancelled by the caller ⇒ CANCELLED, saying whether it may have run; nothing dropped", () => {
    const before = write({ phase: "none", abortReason: "caller" });
    expect(errorOf(before)).toEqual({
      code: "CANCELLED",
      message: "tools/call was cancelled before it was sent",
      rpcCode: undefined,
    });
    const after = write({ phase: "sent", abortReason: "caller" });
    expect(errorOf(after).message).toBe(
      "tools/call was cancelled after it was sent; it may or may not have run",
    );
    expect(after.drop).toBeUndefined();
  });
});

describe("classifyFailure: the ping after a wake", () => {
  const wake = (a: Partial<Attempt>, more: Partial<Failure> = {}) =>
    classifyFailure(
      failure(
        { method: "ping", retryable: true, ...a },
        { purpose: "wake", sinceWakeMs: 1_000, pingTimeoutMs: 10_000, ...more },
      ),
    );

  it("404 ⇒ the session expired while we slept: renew it, nothing dropped", () => {
    expect(wake({ phase: "rejected", status: 404 })).toEqual({ outcome: "session_expired" });
  });

  it("no network yet (within a minute of the wake) ⇒ wait, connect not asked", () => {
    expect(wake({ phase: "refused", netCode: "ENETUNREACH" })).toEqual({
      outcome: "wait",
      reason: "no network yet (ENETUNREACH for https://relay.example.test/mcp)",
    });
  });

  it("no network a minute after the wake, or a refused connection ⇒ the usual recovery", () => {
    expect(wake({ phase: "refused", netCode: "ENOTFOUND" }, { sinceWakeMs: 60_000 })).toMatchObject({
      outcome: "not_delivered",
      drop: { reresolve: true },
    });
    expect(wake({ phase: "refused", netCode: "ECONNREFUSED" }).outcome).toBe("not_delivered");
  });

  it("no answer in time ⇒ drop the connection, re-resolve", () => {
    expect(wake({ phase: "sent", abortReason: "timeout" })).toMatchObject({
      outcome: "timeout",
      drop: {
        reresolve: true,
        reason:
          "the relay's MCP endpoint (https://relay.example.test/mcp) did not answer a ping within 10 s after the wake",
      },
    });
  });

  it("the token could not be had ⇒ wait; login impossible ⇒ auth_failed", () => {
    const e = new AuthError("AUTH_UNAVAILABLE", "token endpoint busy");
    expect(wake({ phase: "none" }, { error: e })).toEqual({ outcome: "wait", reason: "token endpoint busy" });
    expect(wake({ phase: "none" }, { error: e, loginImpossible: "no" })).toEqual({
      outcome: "auth_failed",
      reason: "no",
    });
  });

  it("a 401 ⇒ reauth; any other answer ⇒ as for a request", () => {
    expect(wake({ phase: "rejected", status: 401 })).toEqual({ outcome: "reauth" });
    expect(wake({ phase: "rejected", status: 429 }).outcome).toBe("unavailable");
  });
});

describe("classifyInitFailure: opening a session", () => {
  const init = (a: Partial<Attempt>, more: Partial<InitFailure> = {}) =>
    classifyInitFailure({
      attempt: { method: "initialize", retryable: true, phase: "none", ...a },
      error: new Error("fetch failed"),
      entry: ENTRY,
      brokenTries: 0,
      authTries: 0,
      ...more,
    });
  const failed = (a: Partial<Attempt>, more?: Partial<InitFailure>) => {
    const d = init(a, more);
    if (d.outcome !== "fail") throw new Error(`expected fail, got ${d.outcome}`);
    expect(d.error).toBeInstanceOf(ConnectError);
    return { message: d.error.message, relayGone: d.error.relayGone };
  };

  it("getting a token failed ⇒ that error, as is", () => {
    expect(init({}, { error: new AuthError("AUTH_UNAVAILABLE", "x") })).toEqual({ outcome: "token_error" });
  });

  it("a kept-alive connection broke ⇒ initialize again on a new one (twice at most)", () => {
    expect(init({ phase: "lost", netCode: "ECONNRESET" })).toEqual({ outcome: "retry", resetPool: true });
    expect(failed({ phase: "lost", netCode: "ECONNRESET" }, { brokenTries: 2 })).toEqual({
      message: "initialize at https://relay.example.test/mcp failed (ECONNRESET)",
      relayGone: true,
    });
    expect(init({ phase: "lost", netCode: "ECONNRESET", abortReason: "stream" }).outcome).toBe("fail");
  });

  it("401 ⇒ reauth; 403 insufficient_scope ⇒ step up; a plain 403 ⇒ refused; twice at most", () => {
    expect(init({ phase: "rejected", status: 401 })).toEqual({ outcome: "reauth" });
    expect(init({ phase: "rejected", status: 403, challenge: { error: "insufficient_scope" } })).toEqual({
      outcome: "step_up",
    });
    const forbidden = init({ phase: "rejected", status: 403 });
    expect(forbidden.outcome).toBe("forbidden");
    if (forbidden.outcome === "forbidden") {
      expect([forbidden.error.message, forbidden.error.relayGone]).toEqual([
        "the relay refused the session (HTTP 403)",
        false,
      ]);
    }
    expect(failed({ phase: "rejected", status: 401 }, { authTries: 2 })).toEqual({
      message: "the relay at https://relay.example.test/mcp answered HTTP 401 to initialize",
      relayGone: false,
    });
  });

  it("timeout, refused, 404 and 502/503/504 ⇒ ask connect for the relay again; other statuses do not", () => {
    expect(failed({ phase: "sent", abortReason: "timeout" })).toEqual({
      message: "initialize at https://relay.example.test/mcp timed out",
      relayGone: true,
    });
    expect(failed({ phase: "refused", netCode: "ECONNREFUSED" })).toEqual({
      message: "cannot connect to https://relay.example.test/mcp (ECONNREFUSED)",
      relayGone: true,
    });
    for (const status of [404, 502, 503, 504])
      expect(failed({ phase: "rejected", status }).relayGone).toBe(true);
    expect(failed({ phase: "lost", status: 500 })).toEqual({
      message: "the relay at https://relay.example.test/mcp answered HTTP 500 to initialize",
      relayGone: false,
    });
  });

  it("a JSON-RPC error to initialize ⇒ refused by the server, same relay; anything else ⇒ re-resolve", () => {
    expect(
      failed({ phase: "accepted", status: 200 }, { error: new McpError(-32602, "unsupported version") }),
    ).toEqual({
      message: "the server refused initialize: unsupported version",
      relayGone: false,
    });
    expect(failed({ phase: "sent" }, { error: new Error("socket hang up") })).toEqual({
      message: "initialize at https://relay.example.test/mcp failed (socket hang up)",
      relayGone: true,
    });
  });
});
