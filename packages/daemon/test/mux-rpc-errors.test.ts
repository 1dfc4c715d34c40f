/**
 * The one mapping from a failure to the JSON-RPC error a client reads (mux/rpc-errors.ts):
 * each relay outcome keeps its own code and words, and no secret leaves in a message.
 */
import { ErrorCodes, type JsonRpcRequest, McpError } from "@loxmcp/common";
import { describe, expect, it } from "vitest";
import { ControlError, UpstreamError } from "../src/contracts.js";
import { interruptedError, requestLabel, toRpcError } from "../src/mux/rpc-errors.js";

const SECRET = "sentinel-SECRET-3f9a";
const call: JsonRpcRequest = {
  jsonrpc: "2.0",
  id: 1,
  method: "tools/call",
  params: { name: "control_command", arguments: {} },
};

function map(err: unknown, req: JsonRpcRequest = call) {
  const internal: unknown[] = [];
  const error = toRpcError(err, req, {
    scrub: (t) => t.split(SECRET).join("[redacted]"),
    onInternal: (e) => internal.push(e),
  });
  return { error, internal };
}

describe("JSON-RPC error mapping", () => {
  it("names a tool call by its tool, anything else by its method", () => {
    expect(requestLabel(call)).toBe("tools/call control_command");
    expect(requestLabel({ jsonrpc: "2.0", id: 2, method: "tools/list" })).toBe("tools/list");
  });

  it("keeps the relay's meaning: unknown outcome, nothing sent, login failed, timeout, cancelled, remote error", () => {
    expect(map(new UpstreamError("OUTCOME_UNKNOWN", "socket hang up")).error).toMatchObject({
      code: ErrorCodes.OutcomeUnknown,
      message: expect.stringMatching(
        /^outcome unknown for tools\/call control_command: .*may or may not have run/,
      ),
    });
    expect(
      map(new UpstreamError("OUTCOME_UNKNOWN", "x", undefined, { cause: "timeout", afterSec: 30 })).error
        .message,
    ).toContain("timed out; outcome unknown: it was sent but no answer came after 30 s");
    expect(map(new UpstreamError("UNAVAILABLE", "relay down")).error).toMatchObject({
      code: ErrorCodes.UpstreamUnavailable,
      message: expect.stringContaining("nothing was sent"),
    });
    expect(map(new UpstreamError("AUTH_FAILED", "bad password")).error.code).toBe(ErrorCodes.AuthFailed);
    expect(map(new UpstreamError("TIMEOUT", "slow")).error.code).toBe(ErrorCodes.UpstreamUnavailable);
    expect(map(new UpstreamError("CANCELLED", "by the client")).error.code).toBe(ErrorCodes.RequestAborted);
    expect(map(new UpstreamError("REMOTE_ERROR", "no such tool", -32602, { tool: "x" })).error).toEqual({
      code: -32602,
      message: "no such tool",
      data: { tool: "x" },
    });
  });

  it("passes control and SDK errors through with their code, without the SDK's prefix", () => {
    expect(map(new ControlError(ErrorCodes.PersonRequired, "needs the person")).error).toEqual({
      code: ErrorCodes.PersonRequired,
      message: "needs the person",
    });
    expect(map(new McpError(ErrorCodes.InvalidParams, "bad params")).error).toEqual({
      code: ErrorCodes.InvalidParams,
      message: "bad params",
    });
  });

  it("an unexpected error is internal, reported once for the log, and scrubbed like every message", () => {
    const { error, internal } = map(new Error(`boom with ${SECRET}`));
    expect(error.code).toBe(ErrorCodes.InternalError);
    expect(error.message).toBe(
      "internal error in loxmcpd while handling tools/call control_command: boom with [redacted]",
    );
    expect(internal).toHaveLength(1);
    expect(map(new UpstreamError("UNAVAILABLE", `token ${SECRET}`)).error.message).not.toContain(SECRET);
    expect(map(new UpstreamError("UNAVAILABLE", "x")).internal).toHaveLength(0);
  });

  it("a call interrupted by a shutdown says it may or may not have run", () => {
    expect(interruptedError("loxmcpd is shutting down", "control_command")).toEqual({
      code: ErrorCodes.RequestAborted,
      message:
        "loxmcpd is shutting down. tools/call control_command was interrupted and may or may not have run — check the device before retrying",
    });
    expect(interruptedError("loxmcpd is shutting down", undefined).message).toBe("loxmcpd is shutting down");
  });
});
