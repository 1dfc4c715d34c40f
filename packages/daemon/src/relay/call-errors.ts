/** The UpstreamErrors a call ends with, worded for the person (what happened, whether it may have run). */
import { UpstreamError } from "../contracts.js";

export function cancelled(method: string, mayHaveRun: boolean): UpstreamError {
  return new UpstreamError(
    "CANCELLED",
    mayHaveRun
      ? `${method} was cancelled after it was sent; it may or may not have run`
      : `${method} was cancelled before it was sent`,
  );
}

export function timeoutError(
  method: string,
  ms: number,
  mayHaveRun: boolean,
  retryable: boolean,
): UpstreamError {
  const sec = Math.round(ms / 100) / 10;
  if (mayHaveRun && !retryable) {
    // Not a broken connection: the request was sent and no answer came in time.
    return new UpstreamError(
      "OUTCOME_UNKNOWN",
      `${method} timed out after ${sec} s; outcome unknown: it was sent, so it may or may not have run; not retried automatically`,
      undefined,
      { method, cause: "timeout", afterSec: sec },
    );
  }
  return new UpstreamError(
    "TIMEOUT",
    mayHaveRun
      ? `${method} got no answer within ${sec} s (it may still run upstream)`
      : `${method} could not be sent within ${sec} s`,
  );
}

export function describeCall(method: string, params: unknown): string {
  if (method === "tools/call" && params && typeof params === "object") {
    const name = (params as { name?: unknown }).name;
    if (typeof name === "string") return `the call of tool ${name}`;
  }
  return method;
}

export function stripMcpPrefix(message: string, code: number): string {
  const prefix = `MCP error ${code}: `;
  return message.startsWith(prefix) ? message.slice(prefix.length) : message;
}

export function describe(err: unknown): string {
  if (err instanceof Error) return err.message.length > 300 ? `${err.message.slice(0, 300)}…` : err.message;
  return String(err);
}
