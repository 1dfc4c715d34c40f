/**
 * One MCP session to the relay: an SDK `Client` over our `node:http` Streamable HTTP transport
 * (transport.ts; both single-use: a lost session means a new `Conn`), wired to the handlers of the
 * session around it.
 */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  ProgressNotificationSchema,
  ToolListChangedNotificationSchema,
} from "@modelcontextprotocol/sdk/types.js";
import type { InitializeInfo } from "../contracts.js";
import { RelayTransport, type RelayTransportOptions } from "./transport.js";

export interface Conn {
  id: number;
  client: Client;
  transport: RelayTransport;
  entry: string;
  startedAt: number;
  /** Requests on it now: a retired connection is closed when the last one ends. */
  inflight: number;
  /** Dropped (or replaced): nothing new is sent on it. */
  retired: boolean;
}

export interface ConnOptions {
  /** What the transport sends with besides the URL: the pool, the Bearer token, delivery tracking. */
  transport: Omit<RelayTransportOptions, "url" | "reconnection">;
  /** clientInfo sent in initialize (default loxmcpd/0.1.0). */
  clientInfo?: { name: string; version: string } | undefined;
  /** Client capabilities declared upstream (default: elicitation + sampling). */
  clientCapabilities?: Record<string, unknown> | undefined;
}

/** What the server says on a session, for the session around it. */
export interface ConnHandlers {
  /** The transport reported an error. */
  error(conn: Conn, err: Error): void;
  /** notifications/tools/list_changed. */
  toolListChanged(conn: Conn): Promise<void>;
  /** Any other notification (progress included: its token belongs to the clients). */
  notification(n: { method: string; params?: unknown }): void;
  /** A server→client request (elicitation, sampling, roots). */
  serverRequest(method: string, params: unknown): Promise<never>;
}

/** A new, not yet initialized session to `entry`. */
export function openConn(id: number, entry: string, o: ConnOptions, on: ConnHandlers): Conn {
  const transport = new RelayTransport({
    ...o.transport,
    url: new URL(entry),
    reconnection: {
      initialReconnectionDelay: 1_000,
      maxReconnectionDelay: 30_000,
      reconnectionDelayGrowFactor: 1.5,
      maxRetries: 2,
    },
  });
  const client = new Client(o.clientInfo ?? { name: "loxmcpd", version: "0.1.0" }, {
    capabilities: (o.clientCapabilities ?? { elicitation: {}, sampling: {} }) as never,
  });
  const conn: Conn = { id, client, transport, entry, startedAt: 0, inflight: 0, retired: false };
  client.onerror = (err) => on.error(conn, err);
  client.setNotificationHandler(ToolListChangedNotificationSchema, () => on.toolListChanged(conn));
  // Progress tokens belong to the clients (the mux maps them); pass progress through as is.
  client.setNotificationHandler(ProgressNotificationSchema, async (n) => {
    on.notification({ method: n.method, params: n.params });
  });
  client.fallbackNotificationHandler = async (n) => {
    const out: { method: string; params?: unknown } = { method: n.method };
    if (n.params !== undefined) out.params = n.params;
    on.notification(out);
  };
  client.fallbackRequestHandler = async (request) => on.serverRequest(request.method, request.params);
  return conn;
}

export async function closeConn(conn: Conn): Promise<void> {
  await conn.client.close().catch(() => {});
}

/** What the server said in initialize. */
export function initializeInfoOf(conn: Conn): InitializeInfo {
  const server = conn.client.getServerVersion();
  const info: InitializeInfo = {
    protocolVersion: conn.transport.protocolVersion ?? "",
    capabilities: (conn.client.getServerCapabilities() ?? {}) as Record<string, unknown>,
    serverInfo: (server ?? { name: "unknown", version: "0" }) as InitializeInfo["serverInfo"],
  };
  const instructions = conn.client.getInstructions();
  if (instructions !== undefined) info.instructions = instructions;
  return info;
}

export function shortId(id: string | undefined): string | undefined {
  return id ? `${id.slice(0, 8)}…` : undefined;
}
