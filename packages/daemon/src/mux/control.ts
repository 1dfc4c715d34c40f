/**
 * `loxmcp/*` control methods (the CLI's), accepted on the same socket without initialize.
 * The daemon core registers status / relogin / shutdown; the policy registers its own
 * (approve, stop-all, …) through the same `ControlRegistry`. `buildStatus` composes
 * `loxmcp/status` from its owners' sections: every field has one owner.
 */
import { ErrorCodes } from "@loxmcp/common";
import {
  ControlError,
  type ControlHandler,
  type ControlRegistry,
  type GateStatusSection,
  type Principal,
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

  async dispatch(method: string, params: Record<string, unknown>, client: Principal): Promise<unknown> {
    const h = this.handlers.get(method);
    if (!h) throw new ControlError(ErrorCodes.MethodNotFound, `unknown control method ${method}`);
    return h(params, { client });
  }
}

/** One component's fields of `loxmcp/status` (storage, page, …): fields no other part writes. */
export type StatusSection = () => Record<string, unknown>;

export interface StatusSources {
  version: string;
  startedAt: number;
  socket: string;
  home: string;
  upstream: () => UpstreamStatus;
  clients: () => Principal[];
  counters: () => Record<string, number>;
  /** The gate's section (`policy`, `pendingApprovals`), shown where status always had it. */
  gate: () => GateStatusSection;
  /** The other components' sections, after the core's fields, in the order they were added. */
  sections: () => StatusSection[];
}

/**
 * Composes the `loxmcp/status` object: the core's fields, the gate's section, then each further
 * section. A field has one owner: a section never overwrites a field written before it (its
 * other fields still show). Times are relative ("… ago", "… left"): never a secret.
 */
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
  const gate = src.gate();
  status.policy = gate.policy;
  status.clients = src.clients().map((c) => {
    const out: Record<string, unknown> = { connId: c.connId, name: c.name };
    if (c.version !== undefined) out.version = c.version;
    if (c.pid !== undefined) out.pid = c.pid;
    if (c.ppid !== undefined) out.ppid = c.ppid;
    out.since = new Date(c.connectedAt).toISOString();
    return out;
  });
  status.counters = { ...up.counters, ...src.counters() };
  status.pendingApprovals = gate.pendingApprovals;
  status.socket = src.socket;
  status.home = src.home;
  for (const section of src.sections()) {
    let fields: Record<string, unknown>;
    try {
      fields = section();
    } catch {
      continue; // a section failing must not break status
    }
    for (const [k, v] of Object.entries(fields)) if (!Object.hasOwn(status, k)) status[k] = v;
  }
  return status;
}
