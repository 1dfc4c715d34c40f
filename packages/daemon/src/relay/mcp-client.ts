/**
 * The MCP client end of one relay session, over our transport (transport.ts): initialize, requests
 * by id, notifications both ways, the server's own requests answered. It does what the SDK `Client`
 * did for the relay, with the same errors, but without the SDK's per-message schema work and
 * without loading its modules (client/index.js, ajv, zod's v3 copy, the SDK's types: several MB of
 * the daemon's memory, docs/benchmarks.md). Results are passed on as the server sent them; the
 * clients behind the daemon validate what they get.
 */
import {
  ErrorCodes,
  isNotification,
  isRequest,
  isResponse,
  type JsonRpcRequest,
  LATEST_PROTOCOL_VERSION,
  McpError,
  McpErrorCodes,
  SUPPORTED_PROTOCOL_VERSIONS,
} from "@loxmcp/common";
import type { InitializeInfo } from "../contracts.js";
import type { RelayTransport } from "./transport.js";

/** The backstop when a request names no timeout (the SDK's default). */
const DEFAULT_TIMEOUT_MS = 60_000;

export interface RelayRequestOptions {
  /** Aborts the request: `notifications/cancelled` goes upstream, the promise rejects with the reason. */
  signal?: AbortSignal;
  /** Rejects with McpError RequestTimeout (and cancels upstream) after this long. */
  timeout?: number;
}

export interface Notification {
  method: string;
  params?: Record<string, unknown>;
}

type Answer = { result: unknown } | { error: { code: number; message: string; data?: unknown } } | Error;

export class RelayClient {
  /** A transport or protocol problem (never a request's own failure: that rejects the request). */
  onerror?: (err: Error) => void;
  /** A notification from the server (its own `notifications/cancelled` aside). */
  onnotification?: (n: { method: string; params?: unknown }) => void;
  /** A request from the server (elicitation, sampling, roots); its result or error is the answer. */
  onrequest?: (method: string, params: unknown) => Promise<unknown>;

  private transport: RelayTransport | undefined;
  private readonly pending = new Map<number, (answer: Answer) => void>();
  private nextId = 0;
  /** Server→client requests being answered, and those the server cancelled meanwhile. */
  private readonly serving = new Set<string | number>();
  private readonly cancelled = new Set<string | number>();
  private info: Omit<InitializeInfo, "protocolVersion"> | undefined;

  constructor(
    private readonly clientInfo: { name: string; version: string },
    private readonly capabilities: Record<string, unknown>,
  ) {}

  /** Starts `transport` and initializes the session on it; closes it again when that fails. */
  async connect(transport: RelayTransport, o: RelayRequestOptions = {}): Promise<void> {
    if (this.transport) throw new Error("RelayClient is already connected");
    this.transport = transport;
    transport.onclose = () => this.closed();
    transport.onerror = (err) => this.onerror?.(err);
    transport.onmessage = (m) => this.dispatch(m);
    await transport.start();
    try {
      const params = {
        protocolVersion: LATEST_PROTOCOL_VERSION,
        capabilities: this.capabilities,
        clientInfo: this.clientInfo,
      };
      const result = await this.request({ method: "initialize", params }, o);
      const r = result as Record<string, unknown> | null;
      if (
        typeof r !== "object" ||
        r === null ||
        typeof r.protocolVersion !== "string" ||
        typeof r.capabilities !== "object" ||
        r.capabilities === null ||
        typeof r.serverInfo !== "object" ||
        r.serverInfo === null
      ) {
        throw new Error(`Server sent invalid initialize result: ${JSON.stringify(result)?.slice(0, 200)}`);
      }
      if (!SUPPORTED_PROTOCOL_VERSIONS.includes(r.protocolVersion)) {
        throw new Error(`Server's protocol version is not supported: ${r.protocolVersion}`);
      }
      this.info = {
        capabilities: r.capabilities as Record<string, unknown>,
        serverInfo: r.serverInfo as InitializeInfo["serverInfo"],
      };
      if (typeof r.instructions === "string") this.info.instructions = r.instructions;
      transport.setProtocolVersion(r.protocolVersion);
      await this.notification({ method: "notifications/initialized" });
    } catch (err) {
      void this.close();
      throw err;
    }
  }

  /** What the server said in initialize (undefined before). */
  get server(): Omit<InitializeInfo, "protocolVersion"> | undefined {
    return this.info;
  }

  /** Sends a request; resolves with the server's result, rejects with its error as McpError. */
  request(req: Notification, o: RelayRequestOptions = {}): Promise<unknown> {
    const transport = this.transport;
    if (!transport) return Promise.reject(new Error("Not connected"));
    const signal = o.signal;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const id = this.nextId++;
    const message = { ...req, jsonrpc: "2.0" as const, id };
    return new Promise((resolve, reject) => {
      const done = () => {
        this.pending.delete(id);
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const cancel = (reason: unknown) => {
        done();
        this.transport
          ?.send({
            jsonrpc: "2.0",
            method: "notifications/cancelled",
            params: { requestId: id, reason: String(reason) },
          })
          .catch((err: unknown) => this.onerror?.(new Error(`Failed to send cancellation: ${String(err)}`)));
        reject(
          reason instanceof McpError ? reason : new McpError(McpErrorCodes.RequestTimeout, String(reason)),
        );
      };
      const onAbort = () => cancel(signal?.reason);
      const timeout = o.timeout ?? DEFAULT_TIMEOUT_MS;
      const timer = setTimeout(
        () => cancel(new McpError(McpErrorCodes.RequestTimeout, "Request timed out", { timeout })),
        timeout,
      );
      this.pending.set(id, (answer) => {
        done();
        if (answer instanceof Error) reject(answer);
        else if ("error" in answer)
          reject(new McpError(answer.error.code, answer.error.message, answer.error.data));
        else resolve(answer.result);
      });
      signal?.addEventListener("abort", onAbort, { once: true });
      transport.send(message).catch((err: unknown) => {
        if (!this.pending.has(id)) return; // answered, cancelled or closed meanwhile
        done();
        reject(err);
      });
    });
  }

  /** Sends a notification to the server. */
  async notification(n: Notification): Promise<void> {
    if (!this.transport) throw new Error("Not connected");
    await this.transport.send({ jsonrpc: "2.0", ...n });
  }

  /** Closes the transport; every request still open rejects with McpError ConnectionClosed. */
  async close(): Promise<void> {
    await this.transport?.close();
  }

  private closed(): void {
    this.transport = undefined;
    const open = [...this.pending.values()];
    this.pending.clear();
    const err = new McpError(McpErrorCodes.ConnectionClosed, "Connection closed");
    for (const answer of open) answer(err);
  }

  private dispatch(m: unknown): void {
    if (isResponse(m)) {
      const answer = this.pending.get(Number(m.id));
      if (answer) answer(wellFormed(m as unknown as { id: unknown } & Record<string, unknown>));
      else this.onerror?.(new Error(`Received a response for an unknown message ID: ${JSON.stringify(m)}`));
    } else if (isRequest(m)) {
      this.answerServer(m);
    } else if (isNotification(m)) {
      // The server cancelled a request of its own: it is not answered any more (as the SDK does).
      if (m.method === "notifications/cancelled") {
        const id = (m.params as { requestId?: unknown } | undefined)?.requestId;
        if ((typeof id === "string" || typeof id === "number") && this.serving.has(id))
          this.cancelled.add(id);
        return;
      }
      const n: { method: string; params?: unknown } = { method: m.method };
      if (m.params !== undefined) n.params = m.params;
      try {
        this.onnotification?.(n);
      } catch (err) {
        this.onerror?.(new Error(`Uncaught error in notification handler: ${String(err)}`));
      }
    } else {
      this.onerror?.(new Error(`Unknown message type: ${JSON.stringify(m)?.slice(0, 200)}`));
    }
  }

  /** A server→client request: `ping` answered here, the rest by `onrequest` (its error as the SDK sends it). */
  private answerServer(req: JsonRpcRequest): void {
    this.serving.add(req.id);
    const reply = (body: Record<string, unknown>) => {
      this.serving.delete(req.id);
      if (this.cancelled.delete(req.id)) return;
      this.transport
        ?.send({ jsonrpc: "2.0", id: req.id, ...body } as never)
        .catch((err: unknown) => this.onerror?.(new Error(`Failed to send response: ${String(err)}`)));
    };
    const handler = this.onrequest;
    if (req.method === "ping" || !handler) {
      reply(
        req.method === "ping"
          ? { result: {} }
          : { error: { code: ErrorCodes.MethodNotFound, message: "Method not found" } },
      );
      return;
    }
    Promise.resolve()
      .then(() => handler(req.method, req.params))
      .then(
        (result) => reply({ result }),
        (err: unknown) => {
          const e = (err ?? {}) as { code?: unknown; message?: unknown; data?: unknown };
          const error: Record<string, unknown> = {
            code: Number.isSafeInteger(e.code) ? e.code : ErrorCodes.InternalError,
            message: typeof e.message === "string" ? e.message : "Internal error",
          };
          if (e.data !== undefined) error.data = e.data;
          reply({ error });
        },
      );
  }
}

/**
 * A response as the request's callback takes it: a result, or a JSON-RPC error object with an
 * integer code and a string message; anything else becomes an Error saying the answer was
 * malformed (the SDK's schema refused such answers; unchecked, a request would never settle).
 */
function wellFormed(m: { id: unknown } & Record<string, unknown>): Answer {
  const e = m.error;
  if (e === undefined && "result" in m) return { result: m.result };
  if (
    typeof e === "object" &&
    e !== null &&
    Number.isInteger((e as { code?: unknown }).code) &&
    typeof (e as { message?: unknown }).message === "string" &&
    !("result" in m)
  ) {
    return { error: e as { code: number; message: string; data?: unknown } };
  }
  return new McpError(
    ErrorCodes.InternalError,
    `the server sent a malformed answer: ${JSON.stringify(m)?.slice(0, 200)}`,
  );
}
