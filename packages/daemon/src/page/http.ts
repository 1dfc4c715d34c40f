/**
 * The page's HTTP plumbing (page/server.ts decides what to answer): the security headers every
 * answer carries, the request's path, a cookie, the JSON body (at most 16 KiB), and the answers
 * themselves — a page file, JSON, plain text, 405.
 */
import type { IncomingMessage, ServerResponse } from "node:http";

const MAX_BODY_BYTES = 16 * 1024;
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const SECURITY_HEADERS: Record<string, string> = {
  "Content-Security-Policy": CSP,
  "X-Content-Type-Options": "nosniff",
  "X-Frame-Options": "DENY",
  "Referrer-Policy": "no-referrer",
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Resource-Policy": "same-origin",
  "Cache-Control": "no-store",
};

export function setSecurityHeaders(res: ServerResponse): void {
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
}

export function pathOf(req: IncomingMessage): string {
  const raw = req.url ?? "/";
  const q = raw.indexOf("?");
  return q >= 0 ? raw.slice(0, q) : raw;
}

/** The first value of cookie `name` that `accept` takes (several may be sent under one name). */
export function cookieValue(
  req: IncomingMessage,
  name: string,
  accept: (value: string) => boolean,
): string | undefined {
  const prefix = `${name}=`;
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const p = part.trim();
    if (p.startsWith(prefix)) {
      const v = p.slice(prefix.length);
      if (accept(v)) return v;
    }
  }
  return undefined;
}

/**
 * The request's JSON object (at most 16 KiB), or undefined after answering with an error; a
 * body that is not JSON by its Content-Type is a refusal (`refused`).
 */
export async function readJsonBody(
  req: IncomingMessage,
  res: ServerResponse,
  refused: (kind: string, what: string) => void,
): Promise<Record<string, unknown> | undefined> {
  const type = req.headers["content-type"] ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    refused("type", `POST with Content-Type ${JSON.stringify(type)}`);
    sendJson(res, 415, { error: "send JSON (Content-Type: application/json)" });
    return undefined;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) {
      sendJson(res, 413, { error: "request too large" });
      req.destroy();
      return undefined;
    }
    chunks.push(chunk as Buffer);
  }
  try {
    const v: unknown = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // answered below
  }
  sendJson(res, 400, { error: "the body must be one JSON object" });
  return undefined;
}

export function notAllowed(res: ServerResponse, allow: "GET" | "POST"): void {
  res.setHeader("Allow", allow === "GET" ? "GET, HEAD" : "POST");
  sendJson(res, 405, {
    error: allow === "POST" ? "this changes something: only a POST from the page does it" : "use GET",
  });
}

export function sendAsset(
  res: ServerResponse,
  status: number,
  asset: { type: string; body: Buffer } | undefined,
): void {
  if (!asset) {
    sendJson(res, 404, { error: "not found" });
    return;
  }
  res.writeHead(status, { "Content-Type": asset.type, "Content-Length": asset.body.length });
  res.end(asset.body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": body.length,
  });
  res.end(body);
}

export function sendText(res: ServerResponse, status: number, text: string): void {
  const body = Buffer.from(`${text}\n`);
  res.writeHead(status, { "Content-Type": "text/plain; charset=utf-8", "Content-Length": body.length });
  res.end(body);
}
