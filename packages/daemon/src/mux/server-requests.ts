/**
 * Server→client requests (elicitation, sampling, roots) a client is asked while one of its own
 * requests runs: sent under the daemon's own ids (`lx-N`, never a client's), answered by the
 * client's response, rejected when the client goes away.
 */
import { ErrorCodes, type JsonRpcResponse, McpError } from "@loxmcp/common";
import type { Logger } from "pino";
import type { ServerRequest } from "../contracts.js";

interface Pending {
  resolve(result: unknown): void;
  reject(err: Error): void;
  method: string;
}

export class ServerRequests {
  private readonly pending = new Map<string, Pending>();
  private next = 1;

  constructor(
    private readonly send: (message: Record<string, unknown>) => void,
    private readonly isClosed: () => boolean,
    private readonly log: Logger,
  ) {}

  /** Sends a server→client request to this client and awaits the answer. */
  request(req: ServerRequest): Promise<unknown> {
    if (this.isClosed()) {
      return Promise.reject(
        new McpError(ErrorCodes.RequestAborted, "the client that caused this request is gone"),
      );
    }
    const id = `lx-${this.next++}`;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, method: req.method });
      const msg: Record<string, unknown> = { jsonrpc: "2.0", id, method: req.method };
      if (req.params !== undefined) msg.params = req.params;
      this.send(msg);
    });
  }

  /** The client's answer to one of them. */
  answer(msg: JsonRpcResponse): void {
    if (typeof msg.id !== "string") {
      if (msg.id !== null) this.log.debug({ id: msg.id }, "response to an unknown server request ignored");
      return;
    }
    const pending = this.pending.get(msg.id);
    if (!pending) {
      this.log.debug({ id: msg.id }, "response to an unknown server request ignored");
      return;
    }
    this.pending.delete(msg.id);
    if ("error" in msg) {
      pending.reject(new McpError(msg.error.code, msg.error.message, msg.error.data));
    } else {
      pending.resolve(msg.result);
    }
  }

  /** The client went away: every open one fails. */
  rejectAll(): void {
    for (const [id, p] of this.pending) {
      p.reject(
        new McpError(ErrorCodes.RequestAborted, `the client disconnected before answering ${p.method}`),
      );
      this.pending.delete(id);
    }
  }
}

/** The client's answer to an elicitation, as the policy reads it: anything unclear is "cancel". */
export function elicitAnswer(r: unknown): {
  action: "accept" | "decline" | "cancel";
  content?: Record<string, unknown>;
} {
  const res = typeof r === "object" && r !== null && !Array.isArray(r) ? (r as Record<string, unknown>) : {};
  const action = res.action === "accept" || res.action === "decline" ? res.action : "cancel";
  const content = res.content;
  return typeof content === "object" && content !== null && !Array.isArray(content)
    ? { action, content: content as Record<string, unknown> }
    : { action };
}
