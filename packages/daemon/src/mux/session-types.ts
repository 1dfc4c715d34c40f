/**
 * The shapes a client session works with: its dependencies, the socket side's counters, the
 * connection's role and hello, and one request in flight.
 */
import type { JsonRpcId } from "@loxmcp/common";
import type { Logger } from "pino";
import type { Principal, ToolGate, Upstream } from "../contracts.js";
import type { FairQueue } from "./limits.js";
import type { ProgressRouter } from "./progress.js";

/** Counters of the socket side (the upstream has its own `requests`/`errors`). */
export interface MuxCounters {
  connections: number;
  clientRequests: number;
  toolCalls: number;
  clientErrors: number;
  outcomeUnknown: number;
  cancelled: number;
  parseErrors: number;
  oversizeFrames: number;
  notificationsFannedOut: number;
  refusedConnections: number;
  slowClientsDropped: number;
}

export function newMuxCounters(): MuxCounters {
  return {
    connections: 0,
    clientRequests: 0,
    toolCalls: 0,
    clientErrors: 0,
    outcomeUnknown: 0,
    cancelled: 0,
    parseErrors: 0,
    oversizeFrames: 0,
    notificationsFannedOut: 0,
    refusedConnections: 0,
    slowClientsDropped: 0,
  };
}

/** Dispatches `loxmcp/*` control methods (implemented by mux/control.ts). */
export interface ControlDispatcher {
  has(method: string): boolean;
  dispatch(method: string, params: Record<string, unknown>, client: Principal): Promise<unknown>;
}

export interface SessionDeps {
  upstream: Upstream;
  /** The current gate (a getter, so the policy can be plugged in after start). */
  gate: () => ToolGate;
  control: ControlDispatcher;
  logger: Logger;
  counters: MuxCounters;
  /** Removes secrets from text before it goes to a client. */
  scrub: (text: string) => string;
  /** How long `initialize` waits for the first upstream session. */
  initTimeoutMs: number;
  /** Progress routing of in-flight requests (owned by the mux server). */
  progress: ProgressRouter;
  /** True once the daemon is stopping: new MCP requests are refused (nothing is sent upstream). */
  shuttingDown?: () => boolean;
  /** Audits a refusal made for safety (control method from an MCP client, a second hello). */
  onRefused?: (client: Principal, what: string, reason: string) => void;
  /** Requests one connection may have in flight at once (beyond: refused with TooBusy). */
  maxInFlight?: number;
  /** Slots for requests to the relay, shared fairly by all MCP client connections. */
  upstreamSlots?: FairQueue;
  /** Asked once when the connection becomes an MCP client connection: false = over the limit. */
  admitMcp?: () => boolean;
  /** Closes this connection with one error (the limit of MCP clients was reached). */
  refuse?: (message: string) => void;
  /** The connection came in on the admin socket (hardened mode: only root and the daemon's user can open it). */
  admin?: boolean;
}

export type ConnectionRole = "mcp" | "control" | "refused";

/** Requests that only read: safe to resend after the upstream recovered. */
export const RETRYABLE_METHODS = new Set([
  "tools/list",
  "resources/list",
  "resources/read",
  "resources/templates/list",
  "resources/subscribe",
  "resources/unsubscribe",
  "prompts/list",
  "prompts/get",
  "completion/complete",
]);

export interface InFlight {
  id: JsonRpcId;
  method: string;
  /** For tools/call: the tool name. */
  tool?: string;
  controller: AbortController;
  /** The client cancelled it: answer nothing. */
  cancelled: boolean;
  answered: boolean;
}

export interface HelloInfo {
  kind?: string;
  name?: string | null;
  pid?: number;
  ppid?: number;
  version?: string;
}
