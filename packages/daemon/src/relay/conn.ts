/**
 * One MCP session to the relay: our MCP client (mcp-client.ts) over our `node:http` Streamable
 * HTTP transport (transport.ts; both single-use: a lost session means a new `Conn`), wired to the
 * handlers of the session around it.
 */
import type { InitializeInfo } from "../contracts.js";
import { RelayClient } from "./mcp-client.js";
import { RelayTransport, type RelayTransportOptions } from "./transport.js";

export interface Conn {
  id: number;
  client: RelayClient;
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
  const client = new RelayClient(
    o.clientInfo ?? { name: "loxmcpd", version: "0.1.0" },
    o.clientCapabilities ?? { elicitation: {}, sampling: {} },
  );
  const conn: Conn = { id, client, transport, entry, startedAt: 0, inflight: 0, retired: false };
  client.onerror = (err) => on.error(conn, err);
  // Progress tokens belong to the clients (the mux maps them): progress passes through as is.
  client.onnotification = (n) => {
    if (n.method === "notifications/tools/list_changed") {
      on.toolListChanged(conn).catch((err: unknown) =>
        on.error(conn, err instanceof Error ? err : new Error(String(err))),
      );
    } else on.notification(n);
  };
  client.onrequest = (method, params) => on.serverRequest(method, params);
  return conn;
}

export async function closeConn(conn: Conn): Promise<void> {
  await conn.client.close().catch(() => {});
}

/** What the server said in initialize. */
export function initializeInfoOf(conn: Conn): InitializeInfo {
  const server = conn.client.server;
  return {
    protocolVersion: conn.transport.protocolVersion ?? "",
    capabilities: server?.capabilities ?? {},
    serverInfo: server?.serverInfo ?? { name: "unknown", version: "0" },
    ...(server?.instructions !== undefined ? { instructions: server.instructions } : {}),
  };
}

export function shortId(id: string | undefined): string | undefined {
  return id ? `${id.slice(0, 8)}…` : undefined;
}
