/**
 * JSON-RPC 2.0 edges the socket must get right.
 *
 * Ids come back exactly as the client wrote them. JSON.parse cannot keep every number as written
 * (1e400 becomes Infinity, 9007199254740993 loses its last digit, 1.50 becomes 1.5), so the raw
 * text of a numeric top-level `id` that does not survive a round trip is kept in a marker string
 * (`RAW_ID_PREFIX` + text) while the request is handled, and spliced back as a bare number when
 * the answer is written. A client string id that starts with the marker is refused as invalid.
 */
import {
  ErrorCodes,
  errorResponse,
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcFailure,
} from "@loxmcp/common";

/** Marker for numeric ids kept as raw text (NUL cannot appear unescaped in a client's JSON string). */
export const RAW_ID_PREFIX = "\u0000num:";

/** The raw text of the top-level `"id"` member when it is a number (the last one wins, as in JSON.parse). */
export function rawNumericId(text: string): string | undefined {
  let i = 0;
  const n = text.length;
  const ws = () => {
    while (i < n && (text[i] === " " || text[i] === "\t" || text[i] === "\n" || text[i] === "\r")) i++;
  };
  const str = (): string | undefined => {
    if (text[i] !== '"') return undefined;
    const start = ++i;
    let escaped = false;
    while (i < n) {
      const c = text[i++];
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') {
        try {
          return JSON.parse(`"${text.slice(start, i - 1)}"`) as string;
        } catch {
          return undefined;
        }
      }
    }
    return undefined;
  };
  /** Skips one value; returns its raw text. */
  const value = (): string | undefined => {
    ws();
    const start = i;
    const c = text[i];
    if (c === '"') return str() === undefined ? undefined : text.slice(start, i);
    if (c === "{" || c === "[") {
      let depth = 0;
      while (i < n) {
        const d = text[i];
        if (d === '"') {
          if (str() === undefined) return undefined;
          continue;
        }
        i++;
        if (d === "{" || d === "[") depth++;
        else if (d === "}" || d === "]") {
          depth--;
          if (depth === 0) return text.slice(start, i);
        }
      }
      return undefined;
    }
    while (i < n && /[-+0-9.eEa-z]/.test(text[i] as string)) i++;
    return i > start ? text.slice(start, i) : undefined;
  };
  ws();
  if (text[i] !== "{") return undefined;
  i++;
  let found: string | undefined;
  for (;;) {
    ws();
    if (text[i] === "}") return found;
    const key = str();
    if (key === undefined) return undefined;
    ws();
    if (text[i] !== ":") return undefined;
    i++;
    ws();
    const raw = value();
    if (raw === undefined) return undefined;
    if (key === "id") found = /^-?\d/.test(raw) ? raw : undefined;
    ws();
    if (text[i] === ",") {
      i++;
      continue;
    }
    if (text[i] === "}") return found;
    return undefined;
  }
}

/**
 * Parses one frame. A numeric id that would not come back as written is replaced by a marker
 * string; a client string id that imitates the marker is replaced by an invalid id (an object).
 */
export function parseFrame(line: string): unknown {
  const msg = JSON.parse(line) as unknown;
  if (typeof msg !== "object" || msg === null || Array.isArray(msg)) return msg;
  const m = msg as Record<string, unknown>;
  if (typeof m.id === "number" || (typeof m.id === "string" && m.id.startsWith(RAW_ID_PREFIX))) {
    if (typeof m.id === "string") {
      m.id = { invalid: "reserved id prefix" };
      return m;
    }
    // Fast path, exact: the line opens with the id as JSON.stringify writes it and no other "id"
    // key follows anywhere, so that is the top-level id's raw text (what SDK clients send).
    if (Number.isSafeInteger(m.id)) {
      const head = `{"jsonrpc":"2.0","id":${m.id as number},`;
      if (line.startsWith(head) && line.indexOf('"id"', head.length) < 0) return m;
    }
    const raw = rawNumericId(line);
    if (raw !== undefined && raw !== JSON.stringify(m.id)) m.id = RAW_ID_PREFIX + raw;
  }
  return m;
}

/** A JSON number, strictly (RFC 8259): what may be spliced back as a bare id. */
const JSON_NUMBER = /^-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?$/;

/**
 * Serialises one answer. Only the top-level `id` is ever spliced back as a bare number (a client
 * may put marker-like text anywhere else — clientInfo, tool names, arguments — and it must stay a
 * string there); anything that is not a strict JSON number stays as it was.
 */
export function encodeAnswer(message: unknown): string {
  const id = (message as { id?: unknown } | null)?.id;
  // Only an answer to a marked id pays for the copy without it.
  if (typeof id === "string" && id.startsWith(RAW_ID_PREFIX) && !Array.isArray(message)) {
    const { id: _marker, ...rest } = message as Record<string, unknown>;
    const raw = id.slice(RAW_ID_PREFIX.length);
    if (JSON_NUMBER.test(raw)) {
      const body = JSON.stringify(rest);
      return `{"id":${raw}${body === "{}" ? "}" : `,${body.slice(1)}`}\n`;
    }
  }
  return `${JSON.stringify(message)}\n`;
}

// ------------------------------------------------------------------ protocol versions

/** MCP protocol versions in order; fields newer than a client's version are not sent to it. */
const ORDER = ["2024-10-07", "2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];

function before(version: string, than: string): boolean {
  const a = ORDER.indexOf(version);
  const b = ORDER.indexOf(than);
  return a >= 0 && b >= 0 && a < b;
}

function without<T extends Record<string, unknown>>(o: T, keys: string[]): T {
  const out = { ...o };
  for (const k of keys) delete out[k];
  return out;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Adapts a result to the protocol version the client negotiated: drops fields its version does
 * not define (tool annotations before 2025-03-26; titles, output schemas, structured content and
 * resource links before 2025-06-18; icons before 2025-11-25).
 */
export function adaptToVersion(method: string, result: unknown, version: string | undefined): unknown {
  if (!version || !ORDER.includes(version) || !isObject(result)) return result;
  const pre0326 = before(version, "2025-03-26");
  const pre0618 = before(version, "2025-06-18");
  const pre1125 = before(version, "2025-11-25");
  if (!pre1125) return result;
  if (method === "initialize") {
    let r = result;
    if (isObject(r.serverInfo)) {
      const drop = ["icons", "websiteUrl", "description", ...(pre0618 ? ["title"] : [])];
      r = { ...r, serverInfo: without(r.serverInfo, drop) };
    }
    if (pre0326 && isObject(r.capabilities))
      r = { ...r, capabilities: without(r.capabilities, ["completions"]) };
    return r;
  }
  if (method === "tools/list" && Array.isArray(result.tools)) {
    const drop = [
      "icons",
      "execution",
      ...(pre0618 ? ["title", "outputSchema", "_meta"] : []),
      ...(pre0326 ? ["annotations"] : []),
    ];
    return { ...result, tools: result.tools.map((t) => (isObject(t) ? without(t, drop) : t)) };
  }
  if (method === "tools/call" && pre0618) {
    const content = Array.isArray(result.content)
      ? result.content.filter(
          (c) => !isObject(c) || (c.type !== "resource_link" && !(pre0326 && c.type === "audio")),
        )
      : result.content;
    return { ...without(result, ["structuredContent"]), content };
  }
  return result;
}

/** MCP logging levels, least to most severe. */
export const LOG_LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"];

/**
 * What is wrong with one decoded message from a client, as the error answer to send (with id
 * null when no valid id can be told); undefined for a request, response or notification.
 */
export function frameProblem(msg: unknown): JsonRpcFailure | undefined {
  if (Array.isArray(msg)) {
    return errorResponse(
      null,
      ErrorCodes.InvalidRequest,
      "JSON-RPC batches are not supported; send one message per line",
    );
  }
  if (isObject(msg) && typeof msg.method === "string" && "id" in msg && msg.id === null) {
    return errorResponse(
      null,
      ErrorCodes.InvalidRequest,
      "invalid request: id null is not allowed (use a string or a number, or leave id out for a notification)",
    );
  }
  if (isRequest(msg)) {
    if (typeof msg.id !== "string" && !(typeof msg.id === "number" && Number.isFinite(msg.id))) {
      return errorResponse(null, ErrorCodes.InvalidRequest, "invalid request id: use a string or a number");
    }
    if ((msg as { jsonrpc?: unknown }).jsonrpc !== "2.0") {
      return errorResponse(msg.id, ErrorCodes.InvalidRequest, 'invalid request: "jsonrpc" must be "2.0"');
    }
    return undefined;
  }
  if (isResponse(msg) || isNotification(msg)) return undefined;
  const id = isObject(msg) && (typeof msg.id === "string" || typeof msg.id === "number") ? msg.id : null;
  return errorResponse(
    id,
    ErrorCodes.InvalidRequest,
    "invalid JSON-RPC message: expected a request, notification or response",
  );
}
