/**
 * The client side's checks and the shim's own answers to its client: a line's JSON-RPC shape,
 * the refused control methods, the size of what the shim re-encodes, and the error a request
 * gets when no daemon can be reached. Pure: the bridge (bridge.ts) writes what they return.
 */
import {
  type DaemonUnreachableError,
  ErrorCodes,
  errorResponse,
  isRequest,
  type JsonRpcFailure,
  type JsonRpcId,
  type LoxmcpPaths,
  MAX_FRAME_BYTES,
} from "@loxmcp/common";

export const UNREACHABLE_MESSAGE = "loxmcp daemon not reachable: run `loxmcp status`";
export const CONTROL_REFUSED_SUFFIX =
  "is not available to MCP clients: loxmcp control methods are for the person's `loxmcp` CLI";
export const INVALID_UTF8_MESSAGE =
  "Parse error: the line is not valid UTF-8; it was not forwarded. Send JSON encoded as UTF-8.";
export const ANSWER_TOO_LARGE_MESSAGE = "the client's answer was too large";

/** Methods the shim never forwards from its client: the daemon's control surface. */
const CONTROL_METHOD = /^loxmcp\//i;
/** Longest id the shim gives a replayed initialize (`loxmcp-shim-replay-<gen>`). */
const REPLAY_ID_PLACEHOLDER = `loxmcp-shim-replay-${Number.MAX_SAFE_INTEGER}`;

export const idKey = (id: unknown): string => `${typeof id}:${String(id)}`;
export const validId = (id: unknown): id is JsonRpcId => typeof id === "string" || typeof id === "number";

/** What the line decoder refused: each gets an error with a null id. */
export function undecodableReplies(invalidUtf8: number, oversized: number): JsonRpcFailure[] {
  const replies: JsonRpcFailure[] = [];
  for (let i = 0; i < invalidUtf8; i++) {
    // Decoded leniently, each bad byte would become U+FFFD (3 bytes) on the way to the daemon.
    replies.push(errorResponse(null, ErrorCodes.ParseError, INVALID_UTF8_MESSAGE));
  }
  for (let i = 0; i < oversized; i++) {
    replies.push(
      errorResponse(
        null,
        ErrorCodes.InvalidRequest,
        `message larger than ${MAX_FRAME_BYTES} bytes (4 MiB) refused; it was not forwarded. Send less data per request.`,
      ),
    );
  }
  return replies;
}

/** A client line as a JSON-RPC object, or the error the client gets for it. */
export function parseClientLine(
  line: string,
): { ok: true; m: Record<string, unknown> } | { ok: false; reply: JsonRpcFailure } {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch {
    return {
      ok: false,
      reply: errorResponse(null, ErrorCodes.ParseError, "Parse error: the line is not valid JSON"),
    };
  }
  if (typeof msg !== "object" || msg === null || Array.isArray(msg)) {
    const what = Array.isArray(msg) ? "JSON-RPC batches are not supported" : "expected a JSON-RPC object";
    return { ok: false, reply: errorResponse(null, ErrorCodes.InvalidRequest, `Invalid request: ${what}`) };
  }
  const m = msg as Record<string, unknown>;
  const hasId = "id" in m && m.id !== null && m.id !== undefined;
  if (m.jsonrpc !== "2.0" || (hasId && !validId(m.id))) {
    const id = validId(m.id) ? m.id : null;
    return {
      ok: false,
      reply: errorResponse(
        id,
        ErrorCodes.InvalidRequest,
        'Invalid request: needs "jsonrpc":"2.0" and a string or number id',
      ),
    };
  }
  return { ok: true, m };
}

export function isControlMethod(m: Record<string, unknown>): boolean {
  return typeof m.method === "string" && CONTROL_METHOD.test(m.method);
}

/**
 * A `loxmcp/*` message from the client (an AI, or whoever writes to our stdin): never reaches
 * the daemon, so it can neither approve, resume, shut down nor send a second hello. A request
 * is answered -32601, a notification dropped; `warning` is for the shim's log.
 */
export function refuseControl(m: Record<string, unknown>): {
  warning: string;
  reply: JsonRpcFailure | undefined;
} {
  const raw = String(m.method);
  const method = raw.length > 100 ? `${raw.slice(0, 100)}…` : raw;
  if (isRequest(m)) {
    return {
      warning: `refused the client's ${method} request: loxmcp control methods are for the CLI`,
      reply: errorResponse(m.id, ErrorCodes.MethodNotFound, `${method} ${CONTROL_REFUSED_SUFFIX}`),
    };
  }
  return {
    warning: `dropped the client's ${method} notification: loxmcp control methods are for the CLI`,
    reply: undefined,
  };
}

/** The client's initialize, replayed after a reconnect with a longer id, still fits a frame. */
export function fitsAsReplay(m: Record<string, unknown>): boolean {
  return Buffer.byteLength(JSON.stringify({ ...m, id: REPLAY_ID_PLACEHOLDER })) <= MAX_FRAME_BYTES;
}

/**
 * The client's answer to a daemon→client request, re-encoded under the daemon's id: only the
 * answer's own fields. Re-encoding can grow a line (1e20 → 100000000000000000000): measure what
 * would go out, not what came in; over a frame the daemon gets an error instead.
 */
export function encodeAnswer(
  m: Record<string, unknown>,
  daemonId: JsonRpcId,
): { line: string; tooLarge?: number } {
  const answer = "error" in m ? { error: m.error } : { result: m.result };
  const line = JSON.stringify({ jsonrpc: "2.0", id: daemonId, ...answer });
  const bytes = Buffer.byteLength(line);
  if (bytes <= MAX_FRAME_BYTES) return { line };
  const error = errorResponse(
    daemonId,
    ErrorCodes.InvalidRequest,
    `${ANSWER_TOO_LARGE_MESSAGE} (${bytes} bytes, more than ${MAX_FRAME_BYTES}); it was not forwarded`,
  );
  return { line: JSON.stringify(error), tooLarge: bytes };
}

/**
 * The daemon cannot be reached. When it could not start for a reason the person must fix (a
 * configuration error, an unusable directory), the client — and so the AI and the person
 * reading its error — gets the daemon's own line naming the key and the fix, not a bare
 * "not reachable".
 */
export function unreachableReply(
  id: JsonRpcId,
  e: DaemonUnreachableError | undefined,
  paths: LoxmcpPaths,
): JsonRpcFailure {
  const data: Record<string, unknown> = {
    socket: paths.socket,
    logFile: paths.logFile,
  };
  if (e) data.reason = e.message;
  if (e?.detail.refused !== undefined) data.refused = e.detail.refused;
  const startError = e?.detail.startError;
  if (startError) {
    if (startError.exitCode !== undefined) data.exitCode = startError.exitCode;
    if (startError.problems) data.problems = startError.problems;
    data.fix =
      "fix it, then use this server again (the daemon is started on the next request); `loxmcp doctor` lists every problem";
  }
  // Hardened mode with the system daemon stopped: "system daemon not running: sudo systemctl
  // start loxmcpd" (nothing was started in its place) is what the person needs to read.
  if (e?.detail.system) data.system = true;
  const message = startError
    ? `loxmcpd cannot start: ${startError.message}`
    : e?.detail.system
      ? e.message
      : UNREACHABLE_MESSAGE;
  return errorResponse(id, ErrorCodes.DaemonUnreachable, message, data);
}
