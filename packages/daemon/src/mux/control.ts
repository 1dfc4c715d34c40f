/**
 * `loxmcp/*` control methods (the CLI's), accepted on the same socket without initialize.
 * The daemon core registers status / relogin / shutdown; the policy registers its own
 * (approve, stop-all, …) through the same `ControlRegistry`, and can add fields to status
 * with `addStatusExtension`.
 */
import { ErrorCodes } from "@loxmcp/common";
import {
  type ClientIdentity,
  ControlError,
  type ControlHandler,
  type ControlRegistry,
  type UpstreamStatus,
} from "../contracts.js";
import type { ControlDispatcher } from "./session.js";

export class Controls implements ControlRegistry, ControlDispatcher {
  private readonly handlers = new Map<string, ControlHandler>();

  register(method: `loxmcp/${string}`, handler: ControlHandler): void {
    if (this.handlers.has(method)) throw new Error(`control method ${method} is already registered`);
    this.handlers.set(method, handler);
  }

  /** Replaces a handler (e.g. the policy overriding a default). */
  replace(method: `loxmcp/${string}`, handler: ControlHandler): void {
    this.handlers.set(method, handler);
  }

  has(method: string): boolean {
    return this.handlers.has(method);
  }

  methods(): string[] {
    return [...this.handlers.keys()].sort();
  }

  async dispatch(method: string, params: Record<string, unknown>, client: ClientIdentity): Promise<unknown> {
    const h = this.handlers.get(method);
    if (!h) throw new ControlError(ErrorCodes.MethodNotFound, `unknown control method ${method}`);
    return h(params, { client });
  }
}

/** Extra fields merged into `loxmcp/status` (policy: pendingApprovals, policy mode, …). */
export type StatusExtension = () => Record<string, unknown>;

export interface StatusSources {
  version: string;
  startedAt: number;
  socket: string;
  home: string;
  policyMode: () => string;
  upstream: () => UpstreamStatus;
  clients: () => ClientIdentity[];
  counters: () => Record<string, number>;
  extensions: () => StatusExtension[];
}

/** Builds the `loxmcp/status` object. Times are relative ("… ago", "… left"): never a secret. */
export function buildStatus(src: StatusSources): Record<string, unknown> {
  const now = Date.now();
  const up = src.upstream();
  const secs = (ms: number) => Math.round(ms / 1000);
  const status: Record<string, unknown> = {
    pid: process.pid,
    version: src.version,
    state: up.state,
  };
  if (up.reason !== undefined) status.reason = up.reason;
  if (up.entry !== undefined) status.entry = up.entry;
  status.uptimeSec = secs(now - src.startedAt);
  if (up.tokenExpiresAt !== undefined) status.tokenExpiresInSec = secs(up.tokenExpiresAt - now);
  if (up.sessionStartedAt !== undefined) status.sessionAgeSec = secs(now - up.sessionStartedAt);
  if (up.lastPingAt !== undefined) status.lastPingAgoSec = secs(now - up.lastPingAt);
  status.policy = { mode: src.policyMode() };
  status.clients = src.clients().map((c) => {
    const out: Record<string, unknown> = { connId: c.connId, name: c.name };
    if (c.version !== undefined) out.version = c.version;
    if (c.pid !== undefined) out.pid = c.pid;
    if (c.ppid !== undefined) out.ppid = c.ppid;
    out.since = new Date(c.connectedAt).toISOString();
    return out;
  });
  status.counters = { ...up.counters, ...src.counters() };
  status.pendingApprovals = [];
  status.socket = src.socket;
  status.home = src.home;
  for (const ext of src.extensions()) {
    try {
      Object.assign(status, ext());
    } catch {
      // an extension failing must not break status
    }
  }
  return status;
}
