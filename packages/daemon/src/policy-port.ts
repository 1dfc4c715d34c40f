/**
 * The policy's port onto an upstream (contracts.ts): the tool list, the state and its events,
 * reads; its own writes go through `forward` (the daemon's: MuxServer.forwarder). The policy
 * never gets the `Upstream` itself.
 */
import type { CallToolResult, ForwardCall, PolicyUpstreamPort, Upstream } from "./contracts.js";

export function policyUpstreamPort(
  upstream: Upstream,
  forward: (holder: string, signal: AbortSignal) => ForwardCall,
): PolicyUpstreamPort {
  return {
    listTools: () => upstream.listTools(),
    status: () => {
      const { state, reason } = upstream.status();
      return reason === undefined ? { state } : { state, reason };
    },
    subscribe: ({ state, toolsChanged }) => {
      upstream.on("state", state);
      upstream.on("toolsChanged", toolsChanged);
      return () => {
        upstream.off("state", state);
        upstream.off("toolsChanged", toolsChanged);
      };
    },
    read: async (call, opts) =>
      (await upstream.request(
        "tools/call",
        { name: call.name, arguments: call.arguments ?? {} },
        { retryable: opts.retryable, signal: opts.signal },
      )) as CallToolResult,
    forward,
  };
}
