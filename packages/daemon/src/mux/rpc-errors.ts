/**
 * The one place where a failure becomes the JSON-RPC error a client reads. Everything the
 * daemon throws while answering a request ends here: the relay's `UpstreamError` (what it means
 * for the call: outcome unknown, nothing sent, login failed …), `ControlError` from control
 * methods and the policy, the SDK's `McpError`, and anything unexpected (an internal error,
 * logged with its stack). Messages are scrubbed of secrets on the way out.
 */
import { ErrorCodes, type JsonRpcErrorObject, type JsonRpcRequest, McpError } from "@loxmcp/common";
import { ControlError, UpstreamError } from "../contracts.js";

export interface RpcErrorContext {
  /** Removes every known secret from a text. */
  scrub: (text: string) => string;
  /** Called for an error nobody expected (a bug): the caller logs it with its stack. */
  onInternal: (err: unknown) => void;
}

/** "tools/call <name>" for a tool call, else the method: how an error names the request. */
export function requestLabel(req: JsonRpcRequest): string {
  const p = req.params;
  return req.method === "tools/call" && typeof p === "object" && p !== null && !Array.isArray(p)
    ? `tools/call ${String((p as Record<string, unknown>).name)}`
    : req.method;
}

export function toRpcError(err: unknown, req: JsonRpcRequest, ctx: RpcErrorContext): JsonRpcErrorObject {
  const what = requestLabel(req);
  const mk = (code: number, message: string, data?: unknown): JsonRpcErrorObject =>
    data === undefined ? { code, message: ctx.scrub(message) } : { code, message: ctx.scrub(message), data };
  if (err instanceof UpstreamError) {
    switch (err.code) {
      case "OUTCOME_UNKNOWN": {
        const d =
          typeof err.data === "object" && err.data !== null ? (err.data as Record<string, unknown>) : {};
        if (d.cause === "timeout") {
          const after = typeof d.afterSec === "number" ? ` after ${d.afterSec} s` : "";
          return mk(
            ErrorCodes.OutcomeUnknown,
            `${what} timed out; outcome unknown: it was sent but no answer came${after}, so it may or may not have run — check the device before retrying`,
          );
        }
        return mk(
          ErrorCodes.OutcomeUnknown,
          `outcome unknown for ${what}: the Loxone connection broke after the request was sent, so it may or may not have run — check the device before retrying (${err.message})`,
        );
      }
      case "UNAVAILABLE":
        return mk(
          ErrorCodes.UpstreamUnavailable,
          `Loxone is not reachable right now, nothing was sent: ${err.message}`,
        );
      case "AUTH_FAILED":
        return mk(ErrorCodes.AuthFailed, `Loxone login failed: ${err.message}`);
      case "TIMEOUT":
        return mk(ErrorCodes.UpstreamUnavailable, `${what} timed out: ${err.message}`);
      case "CANCELLED":
        return mk(ErrorCodes.RequestAborted, `${what} was cancelled: ${err.message}`);
      case "REMOTE_ERROR":
        return mk(err.rpcCode ?? ErrorCodes.InternalError, err.message, err.data);
    }
  }
  if (err instanceof ControlError) return mk(err.code, err.message, err.data);
  if (err instanceof McpError) return mk(err.code, err.message.replace(/^MCP error -?\d+: /, ""), err.data);
  ctx.onInternal(err);
  const message = err instanceof Error ? err.message : String(err);
  return mk(ErrorCodes.InternalError, `internal error in loxmcpd while handling ${what}: ${message}`);
}

/** A request still open when the daemon shuts down: a tool call may or may not have run. */
export function interruptedError(message: string, tool: string | undefined): JsonRpcErrorObject {
  return {
    code: ErrorCodes.RequestAborted,
    message:
      tool === undefined
        ? message
        : `${message}. tools/call ${tool} was interrupted and may or may not have run — check the device before retrying`,
  };
}
