/**
 * What the page may read and do, as the daemon's own control methods run it for the CLI: the
 * page is one more control caller (named `loxmcp-page` in the audit). Approve, resume and tool
 * acceptance go through the same person check (policy/person.ts): the PIN when one is set — wrong
 * PINs counted and locked out exactly as on the socket — and never without one (the page never
 * claims to be a terminal). Deny and the emergency stop need no PIN.
 */
import { ErrorCodes } from "@loxmcp/common";
import { ControlError, makePrincipal, type Principal } from "../contracts.js";
import type { ControlDispatcher } from "../mux/session.js";
import type { PageSession } from "./auth.js";
import type { LiveState } from "./live.js";

export const PAGE_CLIENT_NAME = "loxmcp-page";

export class PageApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly reason?: string,
  ) {
    super(message);
    this.name = "PageApiError";
  }
}

type J = Record<string, unknown>;
const isRecord = (v: unknown): v is J => typeof v === "object" && v !== null && !Array.isArray(v);

const DAEMON_FIELDS = [
  "pid",
  "version",
  "state",
  "reason",
  "entry",
  "uptimeSec",
  "tokenExpiresInSec",
  "sessionAgeSec",
  "lastPingAgoSec",
] as const;

/** POST endpoints: the page's actions. A GET on them is refused (405): nothing changes on a GET. */
export const ACTIONS = ["approve", "deny", "stop-all", "resume", "tools-accept"] as const;
export type Action = (typeof ACTIONS)[number];

/** Audit filter of the page: `refused` = denied, rate-limited or emergency-stop (as `--denied`). */
const DECISIONS = ["any", "allowed", "confirmed", "held", "refused"] as const;

export class PageApi {
  constructor(
    private readonly controls: ControlDispatcher,
    private readonly status: () => J,
  ) {}

  private identity(session: PageSession | undefined): Principal {
    return makePrincipal({
      connId: session?.name ?? "page",
      name: PAGE_CLIENT_NAME,
      role: "control",
      connectedAt: session?.createdAt ?? Date.now(),
    });
  }

  private async call(method: `loxmcp/${string}`, params: J, session?: PageSession): Promise<J> {
    try {
      const r = await this.controls.dispatch(method, params, this.identity(session));
      return isRecord(r) ? r : {};
    } catch (err) {
      throw pageError(err, method);
    }
  }

  /** Everything the page draws, and a digest that changes when it should redraw. */
  async state(): Promise<LiveState> {
    const st = this.status();
    const pending = ((await this.call("loxmcp/approve", { list: true })).pending ?? []) as J[];
    const daemon: J = {};
    for (const k of DAEMON_FIELDS) if (st[k] !== undefined) daemon[k] = st[k];
    const policy = (isRecord(st.policy) ? st.policy : {}) as J;
    const counters = (isRecord(st.counters) ? st.counters : {}) as J;
    const storage = isRecord(st.storage) ? st.storage : undefined;
    const pin = (isRecord(policy.pin) ? policy.pin : {}) as J;
    const data = {
      now: Date.now(),
      daemon,
      policy,
      clients: st.clients ?? [],
      counters,
      ...(storage ? { storage } : {}),
      pending,
      page: st.page,
    };
    const digest = JSON.stringify([
      daemon.state,
      daemon.reason,
      daemon.entry,
      policy.mode,
      policy.emergencyStop ?? null,
      [pin.set, pin.failures, pin.lockedForSec !== undefined],
      policy.toolChanges ?? [],
      (policy.structure as J | undefined)?.id ?? null,
      policy.structureError ?? null,
      ((st.clients ?? []) as J[]).map((c) => c.connId),
      pending.map((p) => [p.code, p.approved]),
      counters.toolCalls,
      storage?.ok ?? null,
    ]);
    return { data, digest };
  }

  /** `GET /api/<what>`: what the page reads. */
  async read(what: string, query: URLSearchParams, session: PageSession): Promise<unknown> {
    if (what === "state") return (await this.state()).data;
    if (what === "audit") return this.audit(query, session);
    if (what === "house") return this.house(session);
    if (what === "tools") return this.tools(session);
    throw new PageApiError(404, `no such page: /api/${what}`);
  }

  /** `POST /api/<action>`: what the page does. */
  async act(action: Action, body: J, session: PageSession): Promise<J> {
    if (action === "approve") return this.approve(body, session);
    if (action === "deny") return this.deny(body, session);
    if (action === "stop-all") return this.stopAll(body, session);
    if (action === "resume") return this.resume(body, session);
    return this.acceptTools(body, session);
  }

  async audit(query: URLSearchParams, session: PageSession): Promise<J> {
    const params: J = {};
    const decision = query.get("decision") ?? "any";
    if (!(DECISIONS as readonly string[]).includes(decision))
      throw new PageApiError(400, `decision must be one of ${DECISIONS.join(", ")}`);
    const client = query.get("client")?.trim();
    if (client) params.client = client.slice(0, 100);
    const since = query.get("since")?.trim();
    if (since) params.since = since.slice(0, 40);
    const limit = Math.min(1000, Math.max(1, Number(query.get("limit") ?? 200) || 200));
    if (decision === "held") params.held = true;
    if (decision === "refused") params.denied = true;
    // allowed / confirmed: filtered here, from a larger window
    params.limit = decision === "allowed" || decision === "confirmed" ? 1000 : limit;
    const r = await this.call("loxmcp/audit", params, session);
    let events = (Array.isArray(r.events) ? r.events : []) as J[];
    if (decision === "allowed" || decision === "confirmed")
      events = events.filter((e) => e.decision === decision).slice(-limit);
    return { events };
  }

  house(session: PageSession): Promise<J> {
    return this.call("loxmcp/structure", { action: "show" }, session);
  }

  tools(session: PageSession): Promise<J> {
    return this.call("loxmcp/tools", { action: "diff" }, session);
  }

  approve(body: J, session: PageSession): Promise<J> {
    return this.call("loxmcp/approve", { code: codeOf(body), pin: pinOf(body) }, session);
  }

  deny(body: J, session: PageSession): Promise<J> {
    return this.call("loxmcp/deny", { code: codeOf(body) }, session);
  }

  stopAll(body: J, session: PageSession): Promise<J> {
    const reason = typeof body.reason === "string" && body.reason.trim() ? body.reason.slice(0, 200) : "";
    return this.call("loxmcp/stop-all", { reason: reason || "emergency stop on the page" }, session);
  }

  resume(body: J, session: PageSession): Promise<J> {
    return this.call("loxmcp/resume", { pin: pinOf(body) }, session);
  }

  acceptTools(body: J, session: PageSession): Promise<J> {
    if (typeof body.digest !== "string" || !/^[0-9a-f]{1,64}$/.test(body.digest))
      throw new PageApiError(400, "accept needs the digest of the changes you looked at; reload the list");
    return this.call("loxmcp/tools", { action: "accept", digest: body.digest, pin: pinOf(body) }, session);
  }
}

function codeOf(body: J): string {
  const code = body.code;
  if (typeof code !== "string" || !/^[A-Za-z0-9]{4,12}$/.test(code))
    throw new PageApiError(400, "which held action? (its 6-character code is missing)");
  return code.toUpperCase();
}

/** The PIN as typed (the person check says when it is missing or wrong). */
function pinOf(body: J): string {
  const pin = body.pin;
  if (pin === undefined || pin === null) return "";
  if (typeof pin !== "string" || pin.length > 256) throw new PageApiError(400, "the PIN must be text");
  return pin;
}

const WHAT: Record<string, string> = {
  "loxmcp/approve": "approving",
  "loxmcp/resume": "lifting the emergency stop",
  "loxmcp/tools": "accepting tool changes",
};

/** A control method's refusal, worded for the page (the CLI's own hints name CLI flags). */
export function pageError(err: unknown, method: string): PageApiError {
  if (err instanceof PageApiError) return err;
  if (!(err instanceof ControlError)) {
    return new PageApiError(500, `the daemon failed: ${(err as Error)?.message ?? String(err)}`);
  }
  const reason = isRecord(err.data) && typeof err.data.reason === "string" ? err.data.reason : undefined;
  if (err.code === ErrorCodes.PersonRequired) {
    const what = WHAT[method] ?? "this";
    if (reason === "terminal-required")
      return new PageApiError(
        403,
        `no approval PIN is set, so ${what} is not possible on this page (without a PIN it needs you at a terminal). Set a PIN with \`loxmcp pin set\` in a terminal, or do it there (e.g. \`loxmcp approve CODE\`)`,
        reason,
      );
    if (reason === "pin-required")
      return new PageApiError(403, `${what} needs your approval PIN: type it and try again`, reason);
    return new PageApiError(403, err.message, reason);
  }
  if (err.code === ErrorCodes.InvalidParams) return new PageApiError(400, err.message, reason);
  if (err.code === ErrorCodes.UpstreamUnavailable) return new PageApiError(503, err.message, reason);
  return new PageApiError(500, err.message, reason);
}
