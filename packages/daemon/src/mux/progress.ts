/**
 * Progress routing, owned by the mux server: clients pick progress tokens on their own (the SDK
 * uses its request ids), so each in-flight request's token is made daemon-unique on the way
 * upstream, and an upstream `notifications/progress` goes back to the one session that owns the
 * request, with the client's own token.
 */

/** The side of a client session progress is delivered to. */
export interface ProgressTarget {
  notify(method: string, params?: unknown): void;
}

interface Route {
  session: ProgressTarget;
  token: string | number;
}

export class ProgressRouter {
  private readonly routes = new Map<string, Route>();

  /** Registers a request's progress token; returns the daemon-unique token to send upstream. */
  open(connId: string, session: ProgressTarget, clientToken: string | number): string {
    const token = `lxp-${connId}-${typeof clientToken}-${String(clientToken)}`;
    this.routes.set(token, { session, token: clientToken });
    return token;
  }

  /** The request ended: forget its token (unless another request of another session took it). */
  close(token: string, session: ProgressTarget): void {
    if (this.routes.get(token)?.session === session) this.routes.delete(token);
  }

  /** The session closed: forget all its tokens. */
  closeAll(session: ProgressTarget): void {
    for (const [token, r] of this.routes) {
      if (r.session === session) this.routes.delete(token);
    }
  }

  /** Delivers an upstream progress notification to its session; false when no request owns it. */
  deliver(params: unknown): boolean {
    const p = params as { progressToken?: unknown } | undefined;
    const route = typeof p?.progressToken === "string" ? this.routes.get(p.progressToken) : undefined;
    if (!route) return false;
    route.session.notify("notifications/progress", { ...p, progressToken: route.token });
    return true;
  }
}
