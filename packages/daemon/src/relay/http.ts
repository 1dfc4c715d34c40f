/**
 * The relay path's own HTTP connection pools, dropped as a whole on a wake: the relay's MCP
 * endpoint is spoken over `node:http`/`node:https` keep-alive agents (transport.ts); what still
 * uses fetch (connect, the authorization server) goes through one dedicated undici `Agent`, not the
 * process-wide one.
 *
 * Why: keep-alive connections idle in the pool are closed by the server after a few seconds. When
 * the daemon sleeps (a laptop suspended, a frozen process) the server closes them while nobody is
 * looking, and the first request after the wake can be written into such a dead socket before the
 * close is noticed ("other side closed", UND_ERR_SOCKET / ECONNRESET). On a wake the pool is
 * replaced before anything is sent: the old one closes its idle sockets at once and lets requests
 * in flight finish; new requests open new connections.
 *
 * The Agent class is Node's own (the one behind the global `fetch`, reached through undici's
 * global-dispatcher symbol), so no second copy of undici is loaded and its dispatcher always fits
 * the `fetch` it is given to. When the process-wide dispatcher is not a plain Agent (a proxy
 * agent installed by the environment), it is used as is and `reset()` only counts.
 */
import { Agent as HttpAgent, request as httpRequest } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import type { Socket } from "node:net";
import { isLoopbackHost } from "@loxmcp/common";

interface Dispatcher {
  close(): Promise<void>;
}
type AgentClass = new (opts?: Record<string, unknown>) => Dispatcher;

const GLOBAL_DISPATCHER = Symbol.for("undici.globalDispatcher.1");
let agentClass: Promise<AgentClass | undefined> | undefined;

/** Node's undici Agent class, or undefined when it cannot be used (see above). */
function nodeAgentClass(): Promise<AgentClass | undefined> {
  agentClass ??= (async () => {
    const g = globalThis as Record<symbol, unknown>;
    // Node loads its undici (and creates the global dispatcher) on the first fetch.
    if (!g[GLOBAL_DISPATCHER])
      await fetch("data:,").then(
        (r) => r.arrayBuffer(),
        () => undefined,
      );
    const d = g[GLOBAL_DISPATCHER] as { constructor?: unknown; dispatch?: unknown } | undefined;
    const ctor = d?.constructor as (AgentClass & { name?: string }) | undefined;
    return typeof ctor === "function" && ctor.name === "Agent" && typeof d?.dispatch === "function"
      ? ctor
      : undefined;
  })().catch(() => undefined);
  return agentClass;
}

export interface HttpPoolOptions {
  /** The fetch to call (default: the global one); it gets `dispatcher` in its init. */
  fetch?: typeof fetch;
  /** Called before every request, synchronously: the place to notice a wake (and `reset()`). */
  beforeRequest?: () => void;
}

export class HttpPool {
  private agent: Dispatcher | undefined;
  /** The keep-alive agents of the MCP transport (this generation), by protocol. */
  private nodeAgents: { http?: HttpAgent; https?: HttpsAgent } = {};
  /** How many times the pool was replaced. */
  generation = 0;
  private readonly base: typeof fetch;

  constructor(private readonly o: HttpPoolOptions = {}) {
    this.base = o.fetch ?? fetch;
  }

  /** fetch through the current pool. */
  readonly fetch: typeof fetch = async (input, init) => {
    const Agent = await nodeAgentClass();
    // After the await: a wake noticed here replaces the pool before this request picks a socket.
    this.o.beforeRequest?.();
    if (!Agent) return this.base(input, init);
    this.agent ??= new Agent();
    const agent = this.agent;
    try {
      return await this.base(input, { ...init, dispatcher: agent } as RequestInit);
    } catch (err) {
      // The pool was replaced between picking it and dispatching: a closed pool refuses new requests
      // before sending anything (UND_ERR_CLOSED), so this one provably went nowhere: send it on the
      // new pool.
      if (agent === this.agent || !replayable(input, init) || codeOf(err) !== "UND_ERR_CLOSED") throw err;
      this.agent ??= new Agent();
      return this.base(input, { ...init, dispatcher: this.agent } as RequestInit);
    }
  };

  /**
   * The keep-alive agent for a request to `url` over `node:http(s)`, after the wake check (which
   * may replace the pool first). With TLS verification off for the process (--insecure-tls) only
   * loopback hosts are allowed, as insecureLoopbackFetch does for fetch.
   */
  agentFor(url: URL): HttpAgent {
    this.o.beforeRequest?.();
    if (url.protocol === "http:") {
      this.nodeAgents.http ??= new HttpAgent({ keepAlive: true });
      return this.nodeAgents.http;
    }
    if (process.env.NODE_TLS_REJECT_UNAUTHORIZED === "0" && !isLoopbackHost(url.hostname)) {
      throw new Error(`--insecure-tls refuses to talk to non-loopback host ${url.hostname}`);
    }
    this.nodeAgents.https ??= new HttpsAgent({ keepAlive: true });
    return this.nodeAgents.https;
  }

  /** connect's GET on this pool's keep-alive agents (after the wake check), without fetch. */
  readonly get: BodylessGet = bodylessGet((url) => this.agentFor(url));

  /**
   * Drops every pooled connection: idle ones close now, requests in flight finish on theirs
   * (their sockets are closed then, never pooled again); the next request opens a new connection.
   */
  reset(): void {
    this.generation++;
    const old = this.agent;
    this.agent = undefined;
    if (old) void old.close().catch(() => {});
    const agents = this.nodeAgents;
    this.nodeAgents = {};
    for (const a of [agents.http, agents.https]) if (a) retire(a);
  }

  /** Closes the pool for good (daemon stopping). */
  async close(): Promise<void> {
    const old = this.agent;
    this.agent = undefined;
    const agents = this.nodeAgents;
    this.nodeAgents = {};
    agents.http?.destroy();
    agents.https?.destroy();
    if (old) await old.close().catch(() => {});
  }
}

/** What connect's GET needs of an answer (a fetch `Response` has it too): status and headers. */
export interface BodylessAnswer {
  status: number;
  headers: { get(name: string): string | null };
  body?: { cancel(): Promise<void> } | null;
}

/** A GET whose answer body nobody reads (connect's redirect): fetch's shape, so tests can inject fetch. */
export type BodylessGet = (
  url: string,
  init: { method: "GET"; redirect: "manual"; headers: Record<string, string>; signal: AbortSignal },
) => Promise<BodylessAnswer>;

/**
 * `BodylessGet` over node:http(s), on `agentFor`'s agent (default: Node's global one): no fetch, so
 * no undici and no web streams in the daemon for it. Redirects are not followed. An aborted signal
 * rejects with its reason (a timeout: TimeoutError, as fetch does).
 */
export function bodylessGet(agentFor?: (url: URL) => HttpAgent): BodylessGet {
  return (url, init) =>
    new Promise((resolve, reject) => {
      const u = new URL(url);
      if (init.signal.aborted) return reject(init.signal.reason);
      let agent: HttpAgent | undefined;
      try {
        agent = agentFor?.(u);
      } catch (err) {
        return reject(err);
      }
      const send = u.protocol === "https:" ? httpsRequest : httpRequest;
      const req = send(u, { method: "GET", headers: init.headers, agent, signal: init.signal });
      req.on("response", (res) => {
        res.on("error", () => {});
        res.resume();
        resolve({
          status: res.statusCode ?? 0,
          headers: {
            get(name: string) {
              const v = res.headers[name.toLowerCase()];
              return v === undefined ? null : Array.isArray(v) ? v.join(", ") : String(v);
            },
          },
        });
      });
      req.on("error", (err) => reject(init.signal.aborted ? init.signal.reason : err));
      req.end();
    });
}

/** Closes an agent's idle sockets now and each busy one when its request ends. */
function retire(agent: HttpAgent): void {
  agent.keepSocketAlive = () => false;
  for (const list of Object.values(agent.freeSockets)) {
    for (const s of (list ?? []) as Socket[]) s.destroy();
  }
}

/** Network errors of a connection that broke under a request (no HTTP answer came back). */
const BROKEN_CONNECTION = new Set(["UND_ERR_SOCKET", "ECONNRESET", "EPIPE", "ECONNABORTED"]);

/**
 * True for "the connection broke before any answer": a keep-alive connection the server had closed
 * (or a server that died); not "could not connect", not a timeout.
 */
export function isBrokenConnection(code: string | undefined): boolean {
  return code !== undefined && BROKEN_CONNECTION.has(code);
}

/** A request that can be given to fetch again as is (no Request object, no stream body). */
export function replayable(input: unknown, init: RequestInit | undefined): boolean {
  if (typeof Request !== "undefined" && input instanceof Request) return false;
  const body = init?.body;
  return (
    body === undefined ||
    body === null ||
    typeof body === "string" ||
    body instanceof URLSearchParams ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body)
  );
}

function codeOf(err: unknown): string | undefined {
  let e: unknown = err;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}
