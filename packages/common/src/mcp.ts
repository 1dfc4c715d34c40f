/**
 * The few MCP protocol facts the daemon needs at run time, without loading the SDK's `types.js`
 * (its zod schemas cost ~2.4 MB of memory in every process that imports it): the protocol versions
 * and an error class with the SDK's `McpError` shape. `mcp-protocol.test.ts` checks both against the
 * SDK in use, so an SDK upgrade that adds a version fails there and not in the field.
 */

/** The newest MCP protocol version spoken (the SDK's `LATEST_PROTOCOL_VERSION`). */
export const LATEST_PROTOCOL_VERSION = "2025-11-25";

/** Every version accepted in initialize, newest first (the SDK's `SUPPORTED_PROTOCOL_VERSIONS`). */
export const SUPPORTED_PROTOCOL_VERSIONS: readonly string[] = [
  LATEST_PROTOCOL_VERSION,
  "2025-06-18",
  "2025-03-26",
  "2024-11-05",
  "2024-10-07",
];

/** The SDK's codes for a session that closed and a request that timed out. */
export const McpErrorCodes = { ConnectionClosed: -32000, RequestTimeout: -32001 } as const;

/**
 * A JSON-RPC error answered by (or for) an MCP peer. Same shape as the SDK's `McpError`: the
 * message carries the `MCP error <code>: ` prefix, which `stripMcpPrefix` callers remove.
 */
export class McpError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(`MCP error ${code}: ${message}`);
    this.name = "McpError";
  }
}
