/**
 * The person's proof: the approval PIN. Approve, resume and accepting tool changes run only with
 * the right PIN once one is set; without a PIN they need the loxmcp CLI at an interactive terminal
 * (the CLI says so with `interactive: true`: a speed bump against an agent's non-interactive
 * shell, not a proof — docs/policy.md). The PIN is kept only as a salted scrypt hash; wrong PINs
 * are counted in the database and, after 5 in a row, lock every attempt out for 1, 2, 4 … 15
 * minutes, across restarts.
 */
import { randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { ErrorCodes } from "@loxmcp/common";
import { type ControlContext, ControlError } from "../contracts.js";
import type { PinStore } from "../store/person.js";

/** Wrong PINs in a row before attempts are delayed. */
export const PIN_FREE_FAILURES = 5;
const LOCK_BASE_MS = 60_000;
const LOCK_MAX_MS = 15 * 60_000;
const SCRYPT = { N: 1 << 15, r: 8, p: 1, keyLen: 32, maxmem: 96 * 1024 * 1024 };
export const PIN_MIN_LENGTH = 6;
const PIN_MAX_LENGTH = 256;

export type PersonProof = "pin" | "terminal";

export interface PinStatus {
  set: boolean;
  /** When the PIN was set or last changed (epoch ms): a PIN the person did not set shows here. */
  setAt?: number;
  failures: number;
  /** Seconds until attempts are accepted again (absent when not locked). */
  lockedForSec?: number;
}

/** Audit hook: one row per attempt that matters (wrong PIN, lockout, PIN set/changed/removed). */
export type PersonAudit = (
  ctx: ControlContext,
  what: string,
  decision: "allowed" | "denied",
  reason: string,
) => void;

export class PersonAuth {
  /** PIN checks run one at a time: parallel guesses must each be counted (and hit the lockout). */
  private queue: Promise<unknown> = Promise.resolve();
  /** The count and lockout this process has seen (memory, in case the database cannot be written). */
  private seen = { failures: 0, lockedUntil: 0 };

  constructor(
    private readonly store: PinStore,
    private readonly audit: PersonAudit,
    private readonly now: () => number = Date.now,
    /**
     * Hardened mode (the system daemon): the PIN is set, changed, reset and removed by root only,
     * through the admin socket (`ctx.client.admin`), which the person's account cannot open.
     */
    private readonly hardened = false,
  ) {}

  isSet(): boolean {
    return this.store.get().hash !== null;
  }

  status(): PinStatus {
    const r = this.store.get();
    const out: PinStatus = { set: r.hash !== null, failures: r.failures };
    if (r.hash !== null && r.setAt !== null) out.setAt = r.setAt;
    const left = r.lockedUntil - this.now();
    if (left > 0) out.lockedForSec = Math.ceil(left / 1000);
    return out;
  }

  /**
   * Checks the person's proof for `what` (e.g. "approve"): the PIN in `params.pin` when one is
   * set, else `params.interactive === true`. Throws ControlError(PersonRequired) otherwise.
   */
  authorize(params: Record<string, unknown>, ctx: ControlContext, what: string): Promise<PersonProof> {
    return this.serial(() => this.authorizeNow(params, ctx, what));
  }

  /** Sets the first PIN (terminal only), or changes / removes it (old PIN needed). */
  setPin(params: Record<string, unknown>, ctx: ControlContext): Promise<{ set: boolean; changed: boolean }> {
    return this.serial(() => this.setPinNow(params, ctx));
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  private async authorizeNow(
    params: Record<string, unknown>,
    ctx: ControlContext,
    what: string,
  ): Promise<PersonProof> {
    const rec = this.store.get();
    if (rec.hash === null) {
      if (params.interactive === true) return "terminal";
      this.audit(ctx, what, "denied", "no approval PIN is set and the request did not come from a terminal");
      throw new ControlError(
        ErrorCodes.PersonRequired,
        `${what} needs the person: no approval PIN is set, so it is only accepted from the loxmcp CLI at an interactive terminal. Run \`loxmcp ${what}\` in a terminal, or set a PIN with \`loxmcp pin set\``,
        { reason: "terminal-required" },
      );
    }
    await this.checkPin(rec.hash, params.pin, ctx, what);
    return "pin";
  }

  private async setPinNow(
    params: Record<string, unknown>,
    ctx: ControlContext,
  ): Promise<{ set: boolean; changed: boolean }> {
    if (this.hardened) return this.rootSetPinNow(params, ctx);
    if (params.reset === true) {
      throw new ControlError(
        ErrorCodes.InvalidParams,
        "`loxmcp pin reset` is for hardened mode (the system daemon, where root resets a forgotten PIN); this daemon runs as you: change the PIN with `loxmcp pin set`, see docs/policy.md for a forgotten one",
      );
    }
    const rec = this.store.get();
    const next = params.newPin;
    if (rec.hash === null) {
      if (params.interactive !== true) {
        this.audit(ctx, "pin set", "denied", "the first PIN can only be set at a terminal");
        throw new ControlError(
          ErrorCodes.PersonRequired,
          "the first approval PIN can only be set by the person at an interactive terminal: run `loxmcp pin set` in a terminal",
          { reason: "terminal-required" },
        );
      }
    } else {
      await this.checkPin(rec.hash, params.pin, ctx, "pin set");
    }
    if (next === null) {
      if (rec.hash === null) return { set: false, changed: false };
      this.seen = { failures: 0, lockedUntil: 0 };
      this.store.setHash(null, this.now());
      this.audit(ctx, "pin remove", "allowed", "approval PIN removed");
      return { set: false, changed: true };
    }
    const problem = pinProblem(next);
    if (problem) throw new ControlError(ErrorCodes.InvalidParams, problem, { reason: "weak-pin" });
    this.seen = { failures: 0, lockedUntil: 0 };
    this.store.setHash(await hashPin(next as string), this.now());
    this.audit(ctx, "pin set", "allowed", rec.hash === null ? "approval PIN set" : "approval PIN changed");
    return { set: true, changed: true };
  }

  /**
   * Hardened mode: root sets, changes, resets (a forgotten PIN: no current PIN needed) or removes
   * the PIN over the admin socket; anyone else — every process of the person's account, which can
   * reach the ordinary socket — is refused, whatever PIN it knows.
   */
  private async rootSetPinNow(
    params: Record<string, unknown>,
    ctx: ControlContext,
  ): Promise<{ set: boolean; changed: boolean }> {
    const next = params.newPin;
    const what = next === null ? "pin remove" : params.reset === true ? "pin reset" : "pin set";
    if (ctx.client.admin !== true) {
      this.audit(ctx, what, "denied", "hardened mode: only root changes the approval PIN");
      throw new ControlError(
        ErrorCodes.PersonRequired,
        `the system daemon (hardened mode) takes PIN changes from root only: run \`sudo loxmcp ${what}\`; nothing was changed`,
        { reason: "root-required" },
      );
    }
    const rec = this.store.get();
    if (next === null) {
      if (rec.hash === null) return { set: false, changed: false };
      this.seen = { failures: 0, lockedUntil: 0 };
      this.store.setHash(null, this.now());
      this.audit(ctx, what, "allowed", "approval PIN removed by root");
      return { set: false, changed: true };
    }
    const problem = pinProblem(next);
    if (problem) throw new ControlError(ErrorCodes.InvalidParams, problem, { reason: "weak-pin" });
    this.seen = { failures: 0, lockedUntil: 0 };
    this.store.setHash(await hashPin(next as string), this.now());
    this.audit(
      ctx,
      what,
      "allowed",
      `approval PIN ${rec.hash === null ? "set" : params.reset === true ? "reset" : "changed"} by root`,
    );
    return { set: true, changed: true };
  }

  private async checkPin(hash: string, pin: unknown, ctx: ControlContext, what: string): Promise<void> {
    const stored = this.store.get();
    // The stricter of the database and memory: a database that cannot be written (or was rewritten
    // behind our back) never resets the count this process has seen.
    const rec = {
      failures: Math.max(stored.failures, this.seen.failures),
      lockedUntil: Math.max(stored.lockedUntil, this.seen.lockedUntil),
    };
    const now = this.now();
    if (rec.lockedUntil > now) {
      const secs = Math.ceil((rec.lockedUntil - now) / 1000);
      this.audit(ctx, what, "denied", `PIN attempts locked for ${secs} s after ${rec.failures} wrong PINs`);
      throw new ControlError(
        ErrorCodes.PersonRequired,
        `too many wrong PINs (${rec.failures} in a row): ${what} is refused for another ${secs} s; nothing was checked`,
        { reason: "pin-locked", retryAfterSec: secs },
      );
    }
    if (typeof pin !== "string" || pin.length === 0) {
      throw new ControlError(
        ErrorCodes.PersonRequired,
        `${what} needs the approval PIN: run \`loxmcp ${what}\` in a terminal (it asks for the PIN) or pass it with --pin-stdin`,
        { reason: "pin-required" },
      );
    }
    // Count the attempt as wrong BEFORE checking it; only the right PIN clears the count. An
    // attempt that cannot be counted is not checked (no guessing while the disk is full).
    const failures = rec.failures + 1;
    const lockMs =
      failures >= PIN_FREE_FAILURES
        ? Math.min(LOCK_MAX_MS, LOCK_BASE_MS * 2 ** (failures - PIN_FREE_FAILURES))
        : 0;
    this.seen = { failures, lockedUntil: lockMs > 0 ? now + lockMs : 0 };
    try {
      this.store.recordFailure(failures, this.seen.lockedUntil, now);
    } catch (err) {
      this.audit(ctx, what, "denied", "the PIN attempt could not be recorded; it was not checked");
      throw new ControlError(
        ErrorCodes.PersonRequired,
        `${what} refused: the attempt could not be recorded in the database (${(err as Error).message}), so the PIN was not checked; see \`loxmcp status\``,
        { reason: "pin-unrecorded" },
      );
    }
    if (await verifyPin(pin, hash)) {
      this.seen = { failures: 0, lockedUntil: 0 };
      try {
        this.store.clearFailures();
      } catch {
        // The database still counts this attempt: fail closed (a later lockout is possible).
      }
      return;
    }
    this.audit(ctx, what, "denied", `wrong PIN (${failures} in a row)`);
    const more =
      lockMs > 0
        ? `; further attempts are refused for ${Math.round(lockMs / 1000)} s`
        : `; ${PIN_FREE_FAILURES - failures} more before attempts are delayed`;
    throw new ControlError(ErrorCodes.PersonRequired, `wrong PIN: ${what} refused${more}`, {
      reason: "pin-wrong",
      failures,
      ...(lockMs > 0 ? { retryAfterSec: Math.round(lockMs / 1000) } : {}),
    });
  }
}

/** Why a PIN is not acceptable (undefined: fine). */
export function pinProblem(pin: unknown): string | undefined {
  if (typeof pin !== "string") return "the PIN must be text";
  if (pin.trim().length < PIN_MIN_LENGTH)
    return `the PIN is too short: use at least ${PIN_MIN_LENGTH} digits or a passphrase of ${PIN_MIN_LENGTH}+ characters`;
  if (pin.length > PIN_MAX_LENGTH) return `the PIN is too long (at most ${PIN_MAX_LENGTH} characters)`;
  if (/^(.)\1*$/.test(pin)) return "the PIN repeats one character: choose one that is harder to guess";
  if (/^\d+$/.test(pin) && ("01234567890".includes(pin) || "09876543210".includes(pin)))
    return "the PIN is a run of consecutive digits: choose one that is harder to guess";
  return undefined;
}

function scryptAsync(pin: string, salt: Buffer, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(pin, salt, SCRYPT.keyLen, { N, r, p, maxmem: SCRYPT.maxmem }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

export async function hashPin(pin: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(pin.normalize("NFC"), salt, SCRYPT.N, SCRYPT.r, SCRYPT.p);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString("base64")}$${key.toString("base64")}`;
}

export async function verifyPin(pin: string, stored: string): Promise<boolean> {
  const [kind, n, r, p, salt, hash] = stored.split("$");
  if (kind !== "scrypt" || !salt || !hash) return false;
  const want = Buffer.from(hash, "base64");
  const got = await scryptAsync(
    pin.normalize("NFC"),
    Buffer.from(salt, "base64"),
    Number(n),
    Number(r),
    Number(p),
  );
  return got.length === want.length && timingSafeEqual(got, want);
}
