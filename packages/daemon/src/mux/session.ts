/**
 * One socket connection = one MCP client of ours (a shim) or one control connection (the CLI).
 *
 * - A connection's role and identity are fixed for its whole life: by its first `loxmcp/hello`
 *   (kind "cli" = control, anything else = MCP client), else by its first request (`loxmcp/*` =
 *   control, any MCP method but ping = MCP client). A later hello is refused and audited.
 *   Control methods never run on an MCP client connection; MCP methods never on a control one.
 * - `initialize` is answered from the upstream's cached initialize result; `ping` locally.
 * - Requests go upstream through the relay's single session: the relay uses its own id space,
 *   this connection keeps the client's id and restores it on the answer, so N clients never
 *   collide. A client's `notifications/cancelled` aborts the matching upstream request.
 * - `tools/call` passes the ToolGate (policy) first.
 * - Server→client requests (elicitation, sampling, roots) raised while one of this client's
 *   requests runs are sent to this client with the daemon's own ids (`lx-N`).
 * - Every request gets exactly one response (none when the client cancelled it or is gone).
 */
import {
  ErrorCodes,
  errorResponse,
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcId,
  type JsonRpcRequest,
  type JsonRpcResponse,
  McpError,
} from "@loxmcp/common";
import type { Logger } from "pino";
import {
  type CallContext,
  type CallToolParams,
  type CallToolResult,
  ControlError,
  makePrincipal,
  type Principal,
  type ServerRequest,
  UpstreamError,
} from "../contracts.js";
import { forwardFor, inUpstreamSlot } from "./forward.js";
import { initializeResult, negotiatedVersion, upstreamInitializeInfo } from "./initialize.js";
import { adaptToVersion, frameProblem, LOG_LEVELS } from "./jsonrpc-edges.js";
import { interruptedError, toRpcError } from "./rpc-errors.js";
import { elicitAnswer, ServerRequests } from "./server-requests.js";
import {
  type ConnectionRole,
  type HelloInfo,
  type InFlight,
  RETRYABLE_METHODS,
  type SessionDeps,
} from "./session-types.js";

export {
  type ConnectionRole,
  type ControlDispatcher,
  type HelloInfo,
  type MuxCounters,
  newMuxCounters,
  type SessionDeps,
} from "./session-types.js";

export class ClientSession {
  readonly connectedAt = Date.now();
  hello: HelloInfo | undefined;
  /** Fixed by the first hello or the first request; never changes afterwards. */
  role: ConnectionRole | undefined;
  clientInfo: { name?: string; version?: string } | undefined;
  clientCapabilities: Record<string, unknown> = {};
  protocolVersion: string | undefined;
  /** Sent initialize or any MCP request: receives fanned-out notifications. */
  mcpActive = false;
  /** MCP lifecycle: requests other than ping wait for (or are refused before) initialize. */
  private initState: "none" | "pending" | "done" = "none";
  private initDone: Promise<void> | undefined;
  /** The level this client asked for with logging/setLevel (undefined: everything the relay sends). */
  private logLevel: number | undefined;
  private readonly inflight = new Map<string, InFlight>();
  private readonly serverRequests: ServerRequests;
  private closed = false;
  private readonly log: Logger;

  constructor(
    readonly connId: string,
    private readonly write: (message: unknown) => void,
    private readonly deps: SessionDeps,
  ) {
    this.log = deps.logger.child({ conn: connId });
    this.serverRequests = new ServerRequests(
      (m) => this.send(m),
      () => this.closed,
      this.log,
    );
  }

  /** The client as the policy, audit and status see it. */
  identity(): Principal {
    const name =
      this.hello?.name || this.clientInfo?.name || (this.role === "control" ? "loxmcp-cli" : "unknown");
    const fields: Omit<Principal, "holder" | "holderLabel"> = {
      connId: this.connId,
      name,
      connectedAt: this.connectedAt,
    };
    if (this.role === "mcp" || this.role === "control") fields.role = this.role;
    if (this.deps.admin === true) fields.admin = true;
    if (this.role === "mcp" && this.hello?.name) fields.ruleName = this.hello.name;
    if (this.clientInfo?.version !== undefined) fields.version = this.clientInfo.version;
    if (this.hello?.pid !== undefined) fields.pid = this.hello.pid;
    if (this.hello?.ppid !== undefined) fields.ppid = this.hello.ppid;
    const id = makePrincipal(fields);
    return id;
  }

  /** Counts as a connected MCP client in status (not the CLI's one-shot control calls). */
  isClient(): boolean {
    return this.role === "mcp";
  }

  get inFlightCount(): number {
    return this.inflight.size;
  }

  // ------------------------------------------------------------------ inbound

  /** Handles one decoded JSON value from the socket. */
  handleMessage(msg: unknown): void {
    if (this.closed) return;
    const problem = frameProblem(msg);
    if (problem) {
      this.send(problem);
      return;
    }
    if (isRequest(msg)) void this.handleRequest(msg);
    else if (isResponse(msg)) this.serverRequests.answer(msg);
    else if (isNotification(msg)) this.handleNotification(msg.method, msg.params);
  }

  private async handleRequest(req: JsonRpcRequest): Promise<void> {
    const key = idKey(req.id);
    if (this.inflight.has(key)) {
      this.send(
        errorResponse(
          req.id,
          ErrorCodes.InvalidRequest,
          `request id ${JSON.stringify(req.id)} is already in use by a request in flight`,
        ),
      );
      return;
    }
    const max = this.deps.maxInFlight;
    if (max !== undefined && this.inflight.size >= max) {
      this.deps.counters.clientErrors++;
      this.send(
        errorResponse(
          req.id,
          ErrorCodes.TooBusy,
          `too many requests in flight on this connection (at most ${max}); nothing was sent: wait for answers before sending more`,
          { limit: max, setting: "limits.maxInFlightPerConnection" },
        ),
      );
      return;
    }
    const entry: InFlight = {
      id: req.id,
      method: req.method,
      controller: new AbortController(),
      cancelled: false,
      answered: false,
    };
    if (req.method === "tools/call" && isObject(req.params) && typeof req.params.name === "string") {
      entry.tool = req.params.name;
    }
    this.inflight.set(key, entry);
    this.deps.counters.clientRequests++;
    // Clients pick progress tokens on their own (the SDK uses its request ids): make them unique
    // upstream so progress goes back to the right client, with the client's own token.
    const clientToken = progressTokenOf(req.params);
    let progressToken: string | undefined;
    let forwarded = req;
    if (clientToken !== undefined && isObject(req.params) && isObject(req.params._meta)) {
      progressToken = this.deps.progress.open(this.connId, this, clientToken);
      forwarded = {
        ...req,
        params: { ...req.params, _meta: { ...req.params._meta, progressToken } },
      };
    }
    try {
      const result = await this.dispatch(forwarded, entry.controller.signal);
      this.finish(entry, { jsonrpc: "2.0", id: req.id, result });
    } catch (err) {
      const error = toRpcError(err, req, {
        scrub: this.deps.scrub,
        onInternal: (e) =>
          this.log.error({ err: e, method: req.method }, "internal error while handling a request"),
      });
      this.deps.counters.clientErrors++;
      if (error.code === ErrorCodes.OutcomeUnknown) this.deps.counters.outcomeUnknown++;
      const level = error.code === ErrorCodes.MethodNotFound ? "debug" : "warn";
      this.log[level]({ method: req.method, rpcCode: error.code, error: error.message }, "request failed");
      this.finish(entry, { jsonrpc: "2.0", id: req.id, error });
    } finally {
      if (progressToken !== undefined) this.deps.progress.close(progressToken, this);
    }
  }

  private finish(entry: InFlight, response: JsonRpcResponse): void {
    if (entry.answered) return;
    entry.answered = true;
    this.inflight.delete(idKey(entry.id));
    if (entry.cancelled || this.closed) return;
    this.send(response);
  }

  private async dispatch(req: JsonRpcRequest, signal: AbortSignal): Promise<unknown> {
    const method = req.method;
    const params = isObject(req.params) ? req.params : {};
    if (this.role === "refused") {
      throw new McpError(
        ErrorCodes.TooBusy,
        "too many MCP clients are connected to loxmcpd; nothing was sent",
      );
    }
    if (method.startsWith("loxmcp/")) {
      this.role ??= "control";
      if (this.role !== "control") {
        const reason = `${method} is not available to MCP clients: loxmcp control methods belong to the person's loxmcp CLI`;
        this.refused(method, "control method on an MCP client connection");
        throw new ControlError(ErrorCodes.MethodNotFound, reason);
      }
      if (!this.deps.control.has(method)) {
        throw new ControlError(
          ErrorCodes.MethodNotFound,
          `unknown control method ${method}; see \`loxmcp --help\``,
        );
      }
      return this.deps.control.dispatch(method, params, this.identity());
    }
    if (method !== "ping") {
      if (this.role === undefined) this.becomeMcp();
      if (this.role !== "mcp") {
        throw new ControlError(
          ErrorCodes.InvalidRequest,
          `${method} refused: this is a control connection (it began with a loxmcp/* request); MCP clients connect through loxmcp-shim on a connection of their own`,
        );
      }
      this.mcpActive = true;
      if (method === "initialize") {
        if (this.initState !== "none") {
          throw new ControlError(
            ErrorCodes.InvalidRequest,
            "initialize was already done on this connection; a new MCP session needs a new connection",
          );
        }
      } else {
        // A request sent right behind initialize (the shim's replay does this) waits for it.
        if (this.initState === "pending") await this.initDone?.catch(() => {});
        if (this.initState !== "done") {
          throw new ControlError(
            ErrorCodes.InvalidRequest,
            `${method} refused: send initialize first (MCP lifecycle)`,
          );
        }
      }
    }
    if (this.deps.shuttingDown?.() && method !== "ping") {
      throw new McpError(
        ErrorCodes.RequestAborted,
        `loxmcpd is shutting down, so ${method} was not sent; retry once it is back`,
      );
    }
    switch (method) {
      case "initialize": {
        this.initState = "pending";
        const run = this.initialize(params);
        this.initDone = run.then(() => undefined);
        try {
          const r = await run;
          this.initState = "done";
          return adaptToVersion(method, r, this.protocolVersion);
        } catch (err) {
          this.initState = "none";
          throw err;
        }
      }
      case "ping":
        return {};
      case "logging/setLevel":
        return this.setLogLevel(params);
      case "tools/list":
        return adaptToVersion(method, await this.listTools(signal), this.protocolVersion);
      case "tools/call":
        return adaptToVersion(method, await this.callTool(params, signal), this.protocolVersion);
      default:
        return this.withUpstreamSlot(signal, () =>
          this.deps.upstream.request(method, req.params, {
            retryable: RETRYABLE_METHODS.has(method),
            signal,
            onServerRequest: (r) => this.serverRequest(r),
          }),
        );
    }
  }

  /** Runs one relay request in this connection's fair share of the upstream slots. */
  private withUpstreamSlot<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    return inUpstreamSlot(this.deps.upstreamSlots, this.connId, signal, fn);
  }

  /** logging/setLevel is per client: it filters what this client receives, nobody else's. */
  private setLogLevel(params: Record<string, unknown>): Record<string, never> {
    const level = typeof params.level === "string" ? LOG_LEVELS.indexOf(params.level) : -1;
    if (level < 0) {
      throw new McpError(
        ErrorCodes.InvalidParams,
        `logging/setLevel needs params.level, one of ${LOG_LEVELS.join(", ")}`,
      );
    }
    this.logLevel = level;
    return {};
  }

  private async initialize(params: Record<string, unknown>): Promise<unknown> {
    const ci = params.clientInfo;
    // clientInfo is for display only, and fixed by the first initialize.
    if (isObject(ci) && this.clientInfo === undefined) {
      const info: { name?: string; version?: string } = {};
      if (typeof ci.name === "string") info.name = ci.name;
      if (typeof ci.version === "string") info.version = ci.version;
      this.clientInfo = info;
    }
    this.clientCapabilities = isObject(params.capabilities) ? params.capabilities : {};
    this.protocolVersion = negotiatedVersion(params.protocolVersion);
    const info = await upstreamInitializeInfo(this.deps.upstream, this.deps.initTimeoutMs, this.log);
    const id = this.identity();
    this.log.info(
      { client: id.name, version: id.version, pid: id.pid, protocolVersion: this.protocolVersion },
      "client initialized",
    );
    return initializeResult(info, this.protocolVersion);
  }

  private async listTools(_signal: AbortSignal): Promise<unknown> {
    const upstreamList = await this.deps.upstream.listTools();
    const gate = this.deps.gate();
    const all = [...upstreamList.tools, ...gate.extraTools()];
    // A read-only client is not shown write tools (the gate decides, by the shim's --name).
    return { tools: gate.visibleTools ? await gate.visibleTools(this.identity(), all) : all };
  }

  private async callTool(params: Record<string, unknown>, signal: AbortSignal): Promise<CallToolResult> {
    if (typeof params.name !== "string" || params.name === "") {
      throw new McpError(ErrorCodes.InvalidParams, "tools/call needs params.name (the tool name)");
    }
    if (params.arguments !== undefined && !isObject(params.arguments)) {
      throw new McpError(ErrorCodes.InvalidParams, "tools/call params.arguments must be an object");
    }
    this.deps.counters.toolCalls++;
    const call: CallToolParams = { name: params.name };
    if (params.arguments !== undefined) call.arguments = params.arguments as Record<string, unknown>;
    if (isObject(params._meta)) call._meta = params._meta;
    const ctx: CallContext = {
      client: this.identity(),
      supportsElicitation: isObject(this.clientCapabilities.elicitation),
      elicit: async (message, requestedSchema) =>
        elicitAnswer(
          await this.serverRequest({ method: "elicitation/create", params: { message, requestedSchema } }),
        ),
      signal,
    };
    const forward = forwardFor({
      upstream: this.deps.upstream,
      slots: this.deps.upstreamSlots,
      holder: this.connId,
      signal,
      onServerRequest: (r) => this.serverRequest(r),
    });
    return this.deps.gate().callTool(call, ctx, forward);
  }

  private handleNotification(method: string, params: unknown): void {
    const p = isObject(params) ? params : {};
    switch (method) {
      case "loxmcp/hello": {
        if (this.hello !== undefined || this.role !== undefined) {
          this.refused("loxmcp/hello", "a second hello (a connection's identity is fixed at its first)");
          return;
        }
        const hello: HelloInfo = {};
        if (typeof p.kind === "string") hello.kind = p.kind;
        if (typeof p.name === "string" || p.name === null) hello.name = p.name;
        if (typeof p.pid === "number") hello.pid = p.pid;
        if (typeof p.ppid === "number") hello.ppid = p.ppid;
        if (typeof p.version === "string") hello.version = p.version;
        this.hello = hello;
        if (hello.kind === "cli") this.role = "control";
        else this.becomeMcp();
        this.log.debug({ hello }, "hello");
        return;
      }
      case "notifications/initialized":
        if (this.role === undefined) this.becomeMcp();
        if (this.role === "mcp") this.mcpActive = true;
        return;
      case "notifications/cancelled": {
        const rid = p.requestId;
        if (typeof rid !== "string" && typeof rid !== "number") return;
        const entry = this.inflight.get(idKey(rid));
        if (!entry || entry.answered) return;
        entry.cancelled = true;
        this.deps.counters.cancelled++;
        this.log.info(
          { method: entry.method, reason: typeof p.reason === "string" ? p.reason : undefined },
          "client cancelled a request",
        );
        entry.controller.abort(new UpstreamError("CANCELLED", "cancelled by the client"));
        return;
      }
      case "notifications/progress":
        // Progress for one of our server→client requests: nothing upstream expects it.
        return;
      default:
        if (method.startsWith("loxmcp/")) {
          if (this.role === "mcp") this.refused(method, "control notification on an MCP client connection");
          return;
        }
        if (this.role === "control") return;
        if (method.startsWith("notifications/")) {
          this.deps.upstream.notify(method, params).catch((err: unknown) => {
            this.log.debug({ method, err }, "could not forward a client notification upstream");
          });
        }
    }
  }

  /** Fixes the role as an MCP client connection, unless the limit of MCP clients is reached. */
  private becomeMcp(): void {
    this.role = "mcp";
    if (this.deps.admitMcp && !this.deps.admitMcp()) {
      this.role = "refused";
      this.deps.refuse?.(
        "too many MCP clients are connected to loxmcpd (limits.maxConnections minus the slots kept for the CLI); close one and try again",
      );
    }
  }

  private refused(what: string, reason: string): void {
    const client = this.identity();
    this.log.warn({ client: client.name, what }, `refused: ${reason}`);
    try {
      this.deps.onRefused?.(client, what, reason);
    } catch (err) {
      this.log.error({ err }, "could not audit a refusal");
    }
  }

  // ------------------------------------------------------------------ outbound

  /** Sends a server→client request to this client (daemon's own id space) and awaits the answer. */
  serverRequest(req: ServerRequest): Promise<unknown> {
    return this.serverRequests.request(req);
  }

  /** Sends a notification (fan-out from the upstream); log messages only at this client's level. */
  notify(method: string, params?: unknown): void {
    if (method === "notifications/message" && this.logLevel !== undefined) {
      const level =
        isObject(params) && typeof params.level === "string" ? LOG_LEVELS.indexOf(params.level) : -1;
      if (level >= 0 && level < this.logLevel) return;
    }
    const msg: Record<string, unknown> = { jsonrpc: "2.0", method };
    if (params !== undefined) msg.params = params;
    this.send(msg);
  }

  private send(message: unknown): void {
    if (this.closed) return;
    this.write(message);
  }

  // ------------------------------------------------------------------ teardown

  /**
   * Answers every request still in flight with an error and aborts it upstream
   * (daemon shutdown). Nothing is written when the connection is already gone.
   */
  abortAll(message: string): void {
    for (const entry of [...this.inflight.values()]) {
      entry.controller.abort(new UpstreamError("CANCELLED", message));
      this.finish(entry, { jsonrpc: "2.0", id: entry.id, error: interruptedError(message, entry.tool) });
    }
  }

  /** The peer went away: abort its requests upstream, write nothing. */
  onClosed(): void {
    if (this.closed) return;
    this.closed = true;
    for (const entry of this.inflight.values()) {
      entry.controller.abort(new UpstreamError("CANCELLED", "the client disconnected"));
    }
    this.serverRequests.rejectAll();
    this.deps.progress.closeAll(this);
  }

  get isClosed(): boolean {
    return this.closed;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Map key for a JSON-RPC id: 1 and "1" are different ids. */
function idKey(id: JsonRpcId): string {
  return typeof id === "number" ? `n:${id}` : `s:${id}`;
}

function _idOf(msg: unknown): JsonRpcId | null {
  if (isObject(msg) && (typeof msg.id === "string" || typeof msg.id === "number")) return msg.id;
  return null;
}

function progressTokenOf(params: unknown): string | number | undefined {
  if (!isObject(params) || !isObject(params._meta)) return undefined;
  const t = params._meta.progressToken;
  return typeof t === "string" || typeof t === "number" ? t : undefined;
}
