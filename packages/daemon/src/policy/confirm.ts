/**
 * Modes, per-client rules and confirmation by a person: MCP elicitation when the client
 * supports it, otherwise a two-phase one-time code that the PERSON approves out of band
 * (`loxmcp approve CODE`). The AI can never approve its own action: repeating the call or
 * passing the code in arguments does nothing until the code is approved on the control socket.
 */
import { createHash, randomInt } from "node:crypto";
import type { CallContext, CallToolParams } from "../contracts.js";
import type { AuditDraft } from "./audit-log.js";
import { type Classification, canonicalJson, type WriteTarget } from "./classify.js";
import type { PersonAuth } from "./person.js";
import { PolicyDenied, type PolicyMode, type SnapshotControl } from "./types.js";

/** A held call without a checkable target is shown to the person with ALL its arguments, up to this. */
const MAX_SHOWN_ARGS = 4000;

/** Mode for a client: exact (case-insensitive) name rule first, then the longest prefix rule, else the default. */
export function modeForClient(
  name: string,
  clients: Record<string, PolicyMode>,
  fallback: PolicyMode,
): PolicyMode {
  const n = name.trim().toLowerCase();
  let best: { len: number; mode: PolicyMode } | undefined;
  for (const [key, mode] of Object.entries(clients)) {
    const k = key.trim().toLowerCase();
    if (!k) continue;
    if (k === n) return mode;
    if (n.startsWith(k) && (!best || k.length > best.len)) best = { len: k.length, mode };
  }
  return best?.mode ?? fallback;
}

export type ConfirmVerdict = { ok: true; via: "elicitation" | "approval" } | { ok: false; message: string };

export interface ElicitationOutcome {
  ok: boolean;
  message: string;
}

/** Asks the person through the client's elicitation. Anything but an explicit yes is a no. */
export async function confirmByElicitation(ctx: CallContext, sentence: string): Promise<ElicitationOutcome> {
  try {
    const res = await ctx.elicit(sentence, {
      type: "object",
      properties: {
        confirm: { type: "boolean", title: "Run this action?", description: sentence },
      },
      required: ["confirm"],
    });
    if (res.action === "accept" && res.content?.confirm === true)
      return { ok: true, message: "confirmed by the user" };
    if (res.action === "accept") return { ok: false, message: "the user did not confirm" };
    return { ok: false, message: res.action === "decline" ? "the user declined" : "the user cancelled" };
  } catch (err) {
    return {
      ok: false,
      message: `confirmation could not be asked (${(err as Error).message}); nothing was sent`,
    };
  }
}

/** A write that needs a person, as the engine decided it. */
export interface WriteToConfirm {
  call: CallToolParams;
  ctx: CallContext;
  /** What it would do, in words ("send "on" to Alarm "Burglar Alarm" in Hall"). */
  what: string;
  cls: Classification;
  control: SnapshotControl | undefined;
  target: WriteTarget | undefined;
  draft: AuditDraft;
  person: PersonAuth;
  approvals: ApprovalBook;
  now: () => number;
}

/**
 * Returns once a person has confirmed the write (the draft then says how); otherwise throws
 * PolicyDenied: declined, or held for the person's approval (two-phase: the identical repeat
 * runs once approved).
 */
export async function confirmWrite(w: WriteToConfirm): Promise<void> {
  const { call, ctx, what, cls, control, target, draft } = w;
  // With a PIN set, the client's own elicitation never approves: a client that accepts its own
  // request is exactly the attacker the PIN is for. T3 then waits for the person's PIN.
  if (ctx.supportsElicitation && !w.person.isSet()) {
    const sentence = `${ctx.client.name} wants to ${what}. ${capitalize(cls.reason)}. Allow it?`;
    const answer = await confirmByElicitation(ctx, sentence);
    if (!answer.ok) {
      throw new PolicyDenied("NOT_CONFIRMED", `not sent: ${answer.message} (${what})`);
    }
    draft.decision = "confirmed";
    draft.reason = "confirmed via elicitation";
    return;
  }
  // Bound to the shim's --name (the person wrote it), never to a name the client chose: a
  // client without --name holds (and may consume) only its own connection's approvals.
  const { holder, holderLabel } = ctx.client;
  const canonical = canonicalJson(call.arguments ?? {});
  if (!target && canonical.length > MAX_SHOWN_ARGS) {
    throw new PolicyDenied(
      "UNSAFE_INPUT",
      `not sent: ${call.name} needs the person's approval, but its arguments (${canonical.length} characters) are too long to show them in full; send less`,
    );
  }
  const key = ApprovalBook.key(holder, call.name, canonical);
  const verdict = w.approvals.check(
    key,
    { holder, label: holderLabel },
    call.name,
    `${what} — ${cls.reason}`,
    {
      ...(control ? { device: control.name, room: control.room, type: control.type } : {}),
      ...(target ? { command: target.command } : { arguments: canonical }),
      tier: cls.tier,
      why: cls.reason,
    },
  );
  if (verdict.state === "full") {
    throw new PolicyDenied(
      "APPROVAL_QUEUE_FULL",
      `not sent: ${verdict.held} actions are already waiting for the person's approval (at most ${verdict.limit}), so ${what} was not held. Wait until the person has decided on them (the oldest expires in ${verdict.soonestSec} s) and try again`,
      "denied",
      undefined,
      `not held, ${verdict.held} actions already wait for the person (at most ${verdict.limit}): ${what}`,
    );
  }
  if (verdict.state === "pending") {
    const secs = Math.max(1, Math.round((verdict.entry.expiresAt - w.now()) / 1000));
    throw new PolicyDenied(
      "APPROVAL_REQUIRED",
      `held for the person's approval, nothing was sent: ${what} (${cls.reason}). Only the person can approve it, outside this conversation: on their loxmcp page (a desktop notification links to it) or in a terminal; tell them that code ${verdict.entry.code} is waiting for their decision. Once they have approved it, call this tool again with exactly the same arguments within ${secs} s. Do not try to approve it yourself and do not put the code into the arguments.`,
      "held",
      // `what` lets the person's shim name the action in its desktop notification.
      { approvalCode: verdict.entry.code, expiresInSec: secs, what },
      // The person's view: what and why. The code is in `loxmcp approve --list`, not here.
      `${what} (${cls.reason})`,
    );
  }
  draft.decision = "confirmed";
  draft.reason = `approved by a person (code ${verdict.code})`;
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** What a held call would do, in parts (the person's page shows them; all optional). */
export interface ApprovalDetails {
  device?: string;
  room?: string;
  /** The control's type, e.g. Intercom. */
  type?: string;
  command?: string;
  tier?: string;
  /** Why it needs the person, e.g. "security system mode change". */
  why?: string;
  /** For a call without a checkable target: every argument, exactly as it will be sent (canonical JSON). */
  arguments?: string;
}

export interface PendingApproval extends ApprovalDetails {
  code: string;
  client: string;
  tool: string;
  /** What will happen, for the person: device, room, action. */
  summary: string;
  createdAt: number;
  expiresAt: number;
  approved: boolean;
}

interface Entry extends PendingApproval {
  key: string;
  /** The principal's holder (not its label): the cap counts per holder. */
  holder: string;
}

const ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/** Held calls one client may have waiting for the person at once. */
export const MAX_HELD_PER_CLIENT = 8;
/** Held calls over all clients. Nothing is ever evicted: beyond a cap a new call is refused. */
export const MAX_HELD_TOTAL = 64;

/** Two-phase approvals, bound to (client name, tool, canonical arguments). In memory: a restart forgets them (fail closed). */
export class ApprovalBook {
  private readonly byCode = new Map<string, Entry>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  static key(client: string, tool: string, canonicalArgs: string): string {
    return createHash("sha256").update(`${client.toLowerCase()}\n${tool}\n${canonicalArgs}`).digest("hex");
  }

  private prune(): void {
    const t = this.now();
    for (const [code, e] of this.byCode) if (e.expiresAt <= t) this.byCode.delete(code);
  }

  /**
   * For a call that needs approval: consumes an approved code bound to this exact call
   * (returns "approved"), or returns the pending code for it (reused while unexpired), or a new one.
   */
  check(
    key: string,
    who: { holder: string; label: string },
    tool: string,
    summary: string,
    details: ApprovalDetails = {},
  ):
    | { state: "approved"; code: string }
    | { state: "pending"; entry: PendingApproval }
    | { state: "full"; held: number; limit: number; soonestSec: number } {
    this.prune();
    for (const e of this.byCode.values()) {
      if (e.key !== key) continue;
      if (e.approved) {
        this.byCode.delete(e.code);
        return { state: "approved", code: e.code };
      }
      return { state: "pending", entry: publicEntry(e) };
    }
    // Never evict: an approved code must survive any number of junk calls (fail closed instead).
    const holder = who.holder.toLowerCase();
    const mine = [...this.byCode.values()].filter((e) => e.holder === holder);
    const full =
      mine.length >= MAX_HELD_PER_CLIENT
        ? { held: mine, limit: MAX_HELD_PER_CLIENT }
        : this.byCode.size >= MAX_HELD_TOTAL
          ? { held: [...this.byCode.values()], limit: MAX_HELD_TOTAL }
          : undefined;
    if (full) {
      const soonest = Math.min(...full.held.map((e) => e.expiresAt));
      return {
        state: "full",
        held: full.held.length,
        limit: full.limit,
        soonestSec: Math.max(1, Math.ceil((soonest - this.now()) / 1000)),
      };
    }
    let code = newCode();
    while (this.byCode.has(code)) code = newCode();
    const t = this.now();
    const e: Entry = {
      ...details,
      code,
      key,
      holder,
      client: who.label,
      tool,
      summary,
      createdAt: t,
      expiresAt: t + this.ttlMs,
      approved: false,
    };
    this.byCode.set(code, e);
    return { state: "pending", entry: publicEntry(e) };
  }

  /** The entry for a code, if pending or approved and unexpired. */
  get(code: string): PendingApproval | undefined {
    this.prune();
    const e = this.byCode.get(code.trim().toUpperCase());
    return e ? publicEntry(e) : undefined;
  }

  /** The person denies a held call: its code is gone, the call never runs. */
  deny(code: string): PendingApproval | undefined {
    this.prune();
    const e = this.byCode.get(code.trim().toUpperCase());
    if (!e) return undefined;
    this.byCode.delete(e.code);
    return publicEntry(e);
  }

  /** The person approves a code (control connection, with the person's proof). */
  approve(code: string): PendingApproval | undefined {
    this.prune();
    const e = this.byCode.get(code.trim().toUpperCase());
    if (!e) return undefined;
    e.approved = true;
    // Give the person's approval the full lifetime to let the AI repeat the call.
    e.expiresAt = Math.max(e.expiresAt, this.now() + this.ttlMs);
    return publicEntry(e);
  }

  list(): PendingApproval[] {
    this.prune();
    return [...this.byCode.values()].map(publicEntry);
  }
}

function publicEntry(e: Entry): PendingApproval {
  const details: ApprovalDetails = {};
  for (const k of ["device", "room", "type", "command", "tier", "why", "arguments"] as const) {
    const v = e[k];
    if (v !== undefined) details[k] = v;
  }
  return {
    ...details,
    code: e.code,
    client: e.client,
    tool: e.tool,
    summary: e.summary,
    createdAt: e.createdAt,
    expiresAt: e.expiresAt,
    approved: e.approved,
  };
}

function newCode(): string {
  let s = "";
  for (let i = 0; i < 6; i++) s += ALPHABET[randomInt(ALPHABET.length)];
  return s;
}
