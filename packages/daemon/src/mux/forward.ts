/**
 * How a tools/call goes to the relay: in its holder's fair share of the upstream slots, with the
 * caller's signal, carrying only the tool's name, arguments and _meta. Every client's call
 * (session.ts) and every call the daemon makes of its own accord (the policy's `loxmcp stop-all`,
 * through `MuxServer.forwarder`) take this one path.
 */
import type { CallToolResult, ForwardCall, ServerRequest, Upstream } from "../contracts.js";
import type { FairQueue } from "./limits.js";

export interface ForwardRoute {
  upstream: Upstream;
  /** The relay slots, shared fairly by every holder; absent: no limit. */
  slots: FairQueue | undefined;
  /** Whose share of the slots the call waits in (a connection id). */
  holder: string;
  /** Ends the call: waiting for a slot, or at the relay. */
  signal: AbortSignal;
  /** The person's own send (`loxmcp stop-all`): the next free slot, ahead of every waiting call. */
  urgent?: boolean;
  /** Server→client requests raised while the call runs (a client's elicitation). */
  onServerRequest?: (req: ServerRequest) => Promise<unknown>;
}

/** Runs one relay request in `holder`'s fair share of the upstream slots. */
export async function inUpstreamSlot<T>(
  slots: FairQueue | undefined,
  holder: string,
  signal: AbortSignal,
  fn: () => Promise<T>,
  urgent = false,
): Promise<T> {
  if (!slots) return fn();
  const release = await slots.acquire(holder, signal, urgent);
  try {
    return await fn();
  } finally {
    release();
  }
}

/** The `forward` a gate sends a tools/call with (retryable: a read, resent after a recovery). */
export function forwardFor(route: ForwardRoute): ForwardCall {
  return (c, opts) => {
    const forwarded: Record<string, unknown> = { name: c.name };
    if (c.arguments !== undefined) forwarded.arguments = c.arguments;
    if (c._meta !== undefined) forwarded._meta = c._meta;
    return inUpstreamSlot(
      route.slots,
      route.holder,
      route.signal,
      async () =>
        (await route.upstream.request("tools/call", forwarded, {
          retryable: opts.retryable,
          signal: route.signal,
          ...(route.onServerRequest ? { onServerRequest: route.onServerRequest } : {}),
        })) as CallToolResult,
      route.urgent === true,
    );
  };
}
