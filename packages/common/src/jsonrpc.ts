/** Minimal JSON-RPC 2.0 shapes; the shim and CLI use these instead of importing the MCP SDK. */

export type JsonRpcId = string | number;

export interface JsonRpcRequest {
  jsonrpc: "2.0";
  id: JsonRpcId;
  method: string;
  params?: unknown;
}

export interface JsonRpcNotification {
  jsonrpc: "2.0";
  method: string;
  params?: unknown;
}

export interface JsonRpcErrorObject {
  code: number;
  message: string;
  data?: unknown;
}

export interface JsonRpcSuccess {
  jsonrpc: "2.0";
  id: JsonRpcId;
  result: unknown;
}

export interface JsonRpcFailure {
  jsonrpc: "2.0";
  id: JsonRpcId | null;
  error: JsonRpcErrorObject;
}

export type JsonRpcResponse = JsonRpcSuccess | JsonRpcFailure;
export type JsonRpcMessage = JsonRpcRequest | JsonRpcNotification | JsonRpcResponse;

/** Standard and loxmcp-specific error codes. */
export const ErrorCodes = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  /** Upstream (Loxone relay) not reachable right now; safe to retry later. */
  UpstreamUnavailable: -32001,
  /** A write's outcome is unknown: it may or may not have run. Never retried automatically. */
  OutcomeUnknown: -32002,
  /** Daemon not reachable from the shim. */
  DaemonUnreachable: -32003,
  /** Refused by the safety policy. */
  PolicyDenied: -32004,
  /** Login failed / credentials rejected. */
  AuthFailed: -32005,
  /** Request cancelled or connection lost while in flight. */
  RequestAborted: -32006,
  /**
   * Only the person may do this: the approval PIN is missing, wrong or locked out, or (without a
   * PIN) the request did not come from the CLI at an interactive terminal. `data.reason` says which.
   */
  PersonRequired: -32007,
  /** A limit of the daemon was reached (requests in flight, connections, upstream queue); nothing was sent. */
  TooBusy: -32008,
} as const;

export function isRequest(m: unknown): m is JsonRpcRequest {
  return isObject(m) && typeof m.method === "string" && "id" in m && m.id !== null && m.id !== undefined;
}

export function isNotification(m: unknown): m is JsonRpcNotification {
  return isObject(m) && typeof m.method === "string" && !("id" in m && m.id !== undefined && m.id !== null);
}

export function isResponse(m: unknown): m is JsonRpcResponse {
  return isObject(m) && typeof m.method !== "string" && ("result" in m || "error" in m) && "id" in m;
}

export function errorResponse(
  id: JsonRpcId | null,
  code: number,
  message: string,
  data?: unknown,
): JsonRpcFailure {
  const error: JsonRpcErrorObject = data === undefined ? { code, message } : { code, message, data };
  return { jsonrpc: "2.0", id, error };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
