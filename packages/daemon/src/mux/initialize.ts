/**
 * A client's `initialize`, answered from the relay's: the protocol version both speak, the relay's
 * initialize result (waited for while the session recovers; an earlier one answers when it does
 * not come back in time), and the capabilities the daemon itself adds.
 */
import { LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from "@loxmcp/common";
import type { Logger } from "pino";
import { type InitializeInfo, type Upstream, UpstreamError } from "../contracts.js";

/** The client's version when the daemon speaks it, else the latest. */
export function negotiatedVersion(requested: unknown): string {
  return typeof requested === "string" && SUPPORTED_PROTOCOL_VERSIONS.includes(requested)
    ? requested
    : LATEST_PROTOCOL_VERSION;
}

/** The relay's initialize result for a client's initialize. Throws UNAVAILABLE without one. */
export async function upstreamInitializeInfo(
  upstream: Upstream,
  initTimeoutMs: number,
  log: Logger,
): Promise<InitializeInfo> {
  let info = upstream.initializeInfo();
  if (upstream.status().state !== "ready") {
    // Recovering (or not connected yet): wait up to initTimeoutMs and answer as soon as the
    // upstream is ready. If it does not come back in time, an earlier session's result still
    // answers (requests then wait or fail on their own); without one, the error says why.
    try {
      await upstream.whenReady(initTimeoutMs);
      info = upstream.initializeInfo();
    } catch (err) {
      if (!info) throw err;
      log.info(
        { error: err instanceof Error ? err.message : String(err) },
        "upstream not ready for initialize; answering from the last session's result",
      );
    }
  }
  if (!info) {
    throw new UpstreamError(
      "UNAVAILABLE",
      "the Loxone session is not ready yet; try again in a moment (see `loxmcp status`)",
    );
  }
  return info;
}

/** The answer to the client's initialize. */
export function initializeResult(info: InitializeInfo, protocolVersion: string): Record<string, unknown> {
  const caps: Record<string, unknown> = { ...info.capabilities };
  // The daemon itself announces list changes (after a reconnect), so always say so.
  const tools = caps.tools;
  caps.tools = {
    ...(typeof tools === "object" && tools !== null && !Array.isArray(tools) ? tools : {}),
    listChanged: true,
  };
  const result: Record<string, unknown> = {
    protocolVersion,
    capabilities: caps,
    serverInfo: info.serverInfo,
  };
  if (info.instructions !== undefined) result.instructions = info.instructions;
  return result;
}
