/**
 * Internal contracts between the daemon's components. Components are built by the wiring
 * (daemon.ts) and talk only through these interfaces: relay/ knows nothing of shims, mux/ knows
 * nothing of OAuth, only store/ runs SQL. policy/ decides; it never holds the `Upstream`: it sees
 * the relay through `PolicyUpstreamPort` — the tool list, the session's state and events, reads
 * of the house structure — and every write it lets through leaves by a `ForwardCall`, the path
 * of a client's tools/call (mux/forward.ts): the client's own, or for the calls the policy makes
 * itself (`loxmcp stop-all`) one the wiring builds the same way.
 */
import type { Logger } from "pino";

// ---------------------------------------------------------------- upstream (relay/)

export type UpstreamState =
  | "starting"
  | "resolving"
  | "authenticating"
  | "connecting"
  | "ready"
  | "degraded"
  | "auth_failed"
  | "stopped";

export interface UpstreamCounters {
  logins: number;
  refreshes: number;
  resolves: number;
  reconnects: number;
  requests: number;
  errors: number;
}

export interface UpstreamStatus {
  state: UpstreamState;
  /** Human-readable reason for degraded / auth_failed (never contains a secret). */
  reason?: string;
  /** Resolved relay MCP URL traffic goes to. */
  entry?: string;
  /** Epoch ms when the access token expires. */
  tokenExpiresAt?: number;
  /** Epoch ms when the current MCP session was initialised. */
  sessionStartedAt?: number;
  /** Epoch ms of the last successful ping (or request). */
  lastPingAt?: number;
  counters: UpstreamCounters;
}

export interface UpstreamOptions {
  /** connect base, e.g. https://connect.loxonecloud.com */
  connectUrl: string;
  serial: string;
  /** The user, or a function yielding the current one (`loxmcp relogin` re-reads it). */
  user: string | (() => string);
  /** Password or a function that yields it (password file / command). */
  password: string | (() => Promise<string>);
  /** Direct mode: talk to this MCP URL, skip connect resolution. */
  upstreamUrl?: string;
  /** Extra audiences accepted besides same-serial Loxone relays. */
  allowedResources?: string[];
  pingIntervalMs: number;
  /** Ping before use when the session was idle longer than this. */
  idleCheckMs: number;
  requestTimeoutMs: number;
  /** Fetch to use (e.g. one that accepts a self-signed cert when --insecure-tls). */
  fetch?: typeof fetch;
  logger: Logger;
}

export type UpstreamErrorCode =
  /** A write may or may not have run; never resent. */
  | "OUTCOME_UNKNOWN"
  /** Relay not reachable/ready; nothing was sent, safe to retry later. */
  | "UNAVAILABLE"
  /** Credentials rejected / login impossible. */
  | "AUTH_FAILED"
  /** The MCP server answered with a JSON-RPC error (passed through as is). */
  | "REMOTE_ERROR"
  | "TIMEOUT"
  | "CANCELLED";

export class UpstreamError extends Error {
  constructor(
    readonly code: UpstreamErrorCode,
    message: string,
    readonly rpcCode?: number,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = "UpstreamError";
  }
}

export interface ServerRequest {
  method: string;
  params?: unknown;
}

export interface UpstreamRequestOptions {
  /** true: a read, may be resent after recovery. false: a write, never resent once it may have reached the server. */
  retryable: boolean;
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Server→client requests (elicitation, sampling, roots) raised while this request runs are routed here. */
  onServerRequest?: (req: ServerRequest) => Promise<unknown>;
}

export interface InitializeInfo {
  protocolVersion: string;
  capabilities: Record<string, unknown>;
  serverInfo: { name: string; version: string; [k: string]: unknown };
  instructions?: string;
}

export interface UpstreamEvents {
  state: (s: UpstreamStatus) => void;
  /** Server notifications other than list_changed (progress, logging, resources/updated …). */
  notification: (n: { method: string; params?: unknown }) => void;
  /** Tool list changed (server notification, or after a reconnect). */
  toolsChanged: () => void;
}

export interface Upstream {
  /** Starts connecting in the background; returns at once. */
  start(): void;
  stop(): Promise<void>;
  status(): UpstreamStatus;
  /** Resolves when ready; rejects with UpstreamError(UNAVAILABLE | AUTH_FAILED) after timeoutMs. */
  whenReady(timeoutMs: number): Promise<void>;
  /** The upstream's initialize result (cached; undefined before the first session). */
  initializeInfo(): InitializeInfo | undefined;
  /** Cached tools/list result; refreshed on list_changed and after reconnect. */
  listTools(): Promise<{ tools: Array<Record<string, unknown>> }>;
  /** Sends one JSON-RPC request upstream and returns its raw result. Throws UpstreamError. */
  request(method: string, params: unknown, opts: UpstreamRequestOptions): Promise<unknown>;
  notify(method: string, params?: unknown): Promise<void>;
  /** Drops tokens and logs in again now. */
  relogin(): Promise<void>;
  on<E extends keyof UpstreamEvents>(event: E, listener: UpstreamEvents[E]): this;
  off<E extends keyof UpstreamEvents>(event: E, listener: UpstreamEvents[E]): this;
}

// ---------------------------------------------------------------- clients (mux/)

/**
 * Who is calling: fixed by the mux for a connection's whole life from its role and its first
 * hello (never from a name the client chose), and what the policy, the audit and status use.
 */
export interface Principal {
  /** Connection id inside this daemon, e.g. "c7". */
  connId: string;
  /**
   * Whom held approvals (and the cap on them) belong to: the shim's --name when it has one (the
   * person wrote it into the client's config), else this connection alone (`unnamed:<connId>`).
   */
  holder: string;
  /** How an approval request names the client to the person. */
  holderLabel: string;
  /** Shown in status and the audit: the shim's --name, else clientInfo.name from initialize. */
  name: string;
  /**
   * The name per-client rules match: the shim's --name from its first hello (written by the
   * person into the client's config). Never clientInfo.name, which the client chooses itself.
   */
  ruleName?: string;
  /** An MCP client connection (through a shim) or a control connection (the CLI). Fixed for life. */
  role?: "mcp" | "control";
  /**
   * Came in on the system daemon's admin socket (hardened mode), which only root (and the daemon's
   * own user) can open: root's PIN and reset go this way. Never set on the ordinary socket.
   */
  admin?: boolean;
  version?: string;
  /** pid / ppid of the shim, as it reported them. */
  pid?: number;
  ppid?: number;
  connectedAt: number;
}

/**
 * A principal from what the mux knows of a connection. Only an MCP connection's shim --name
 * (`ruleName`) binds approvals across connections; anything else is bound to its own connection.
 */
export function makePrincipal(p: Omit<Principal, "holder" | "holderLabel">): Principal {
  const rule = p.role === "mcp" ? p.ruleName : undefined;
  const holderLabel = rule
    ? rule
    : p.role === "mcp"
      ? `unnamed client (calls itself "${p.name.slice(0, 64)}")`
      : p.name;
  return { ...p, holder: rule || `unnamed:${p.connId}`, holderLabel };
}

export interface CallToolParams {
  name: string;
  arguments?: Record<string, unknown>;
  _meta?: Record<string, unknown>;
}

/** MCP CallToolResult, kept loose here: the policy passes upstream results through untouched. */
export interface CallToolResult {
  content: Array<Record<string, unknown>>;
  isError?: boolean;
  structuredContent?: Record<string, unknown>;
  [k: string]: unknown;
}

export interface CallContext {
  client: Principal;
  /** The client declared the elicitation capability. */
  supportsElicitation: boolean;
  /** Ask the person through the client's elicitation (only when supportsElicitation). */
  elicit(
    message: string,
    requestedSchema: Record<string, unknown>,
  ): Promise<{ action: "accept" | "decline" | "cancel"; content?: Record<string, unknown> }>;
  signal?: AbortSignal;
}

export type ForwardCall = (call: CallToolParams, opts: { retryable: boolean }) => Promise<CallToolResult>;

/**
 * Every tools/call passes through the gate (policy/). The default gate forwards everything,
 * retrying only tools the upstream marks read-only.
 */
export interface ToolGate {
  /** Tools the daemon itself adds to tools/list (e.g. loxmcp_emergency_stop). */
  extraTools(): Array<Record<string, unknown>>;
  /**
   * The tools/list a client sees, from the full list (upstream + extraTools). Absent = all of
   * them. The policy leaves write tools out for a read-only client.
   */
  visibleTools?(
    client: Principal,
    tools: Array<Record<string, unknown>>,
  ): Promise<Array<Record<string, unknown>>>;
  callTool(call: CallToolParams, ctx: CallContext, forward: ForwardCall): Promise<CallToolResult>;
  /** Audits something the mux refused for safety (a control method from an MCP client, a second hello). */
  recordRefusal?(client: Principal, what: string, reason: string): void;
  /** The gate's part of `loxmcp/status`. Absent: the configured mode, nothing held. */
  statusSection?(): GateStatusSection;
}

/** The fields of `loxmcp/status` the gate (the policy) alone writes. */
export interface GateStatusSection {
  policy: { mode: string; [k: string]: unknown };
  /** Held calls (without their codes: status is for anyone at the socket). */
  pendingApprovals: Array<Record<string, unknown>>;
}

// ---------------------------------------------------------------- the policy's view of the upstream

/** The upstream events the policy follows. */
export interface PolicyUpstreamEvents {
  /** The session's state changed (the policy re-reads the house structure once it is ready). */
  state: (s: { state: UpstreamState }) => void;
  /** The tool list changed (server notification, or after a reconnect). */
  toolsChanged: () => void;
}

/**
 * All the policy may use of the upstream (built by the wiring, daemon.ts). It reads (the tool
 * list, the house structure) and follows the session; it sends a write only through a
 * `ForwardCall`: a client's, or for its own (`loxmcp stop-all`) one from `forward`.
 */
export interface PolicyUpstreamPort {
  /** The Miniserver's tools/list (cached by the relay). */
  listTools(): Promise<{ tools: Array<Record<string, unknown>> }>;
  /** The session's state, and why when it is not ready: writes are sent only while "ready". */
  status(): { state: UpstreamState; reason?: string };
  /** Follows the state and tool-list events; returns the function that stops following. */
  subscribe(listeners: PolicyUpstreamEvents): () => void;
  /**
   * A tools/call of a tool that only reads (the house structure), ended by `signal`. It is
   * resent after a recovery only when `retryable` (the tool is marked read-only).
   */
  read(call: CallToolParams, opts: { retryable: boolean; signal: AbortSignal }): Promise<CallToolResult>;
  /**
   * A forward for calls the policy makes of its own accord (the emergency stop of `loxmcp
   * stop-all`): the path of a client's tools/call — a relay slot, then the relay, a write never
   * resent — ended by `signal`. The person's stop takes the next free slot ahead of every waiting
   * client call and is never refused for a full queue.
   */
  forward(holder: string, signal: AbortSignal): ForwardCall;
}

// ---------------------------------------------------------------- control (mux/control.ts)

/** Control methods run only on control connections (the CLI), never on an MCP client connection. */
export interface ControlContext {
  client: Principal;
}

/** Handler of a `loxmcp/*` control method (CLI). Throw ControlError for a clear failure. */
export type ControlHandler = (
  params: Record<string, unknown>,
  ctx: ControlContext,
) => Promise<unknown> | unknown;

export interface ControlRegistry {
  register(method: `loxmcp/${string}`, handler: ControlHandler): void;
}

export class ControlError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
    this.name = "ControlError";
  }
}
