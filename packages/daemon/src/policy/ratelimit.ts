/**
 * Rate limits for writes: per motor (Jalousie/Gate) commands per minute and a cooldown
 * before reversing direction, plus a global write budget. `check` only looks; `record` counts a
 * write that was actually sent, so a refused or unconfirmed call costs nothing.
 */
import type { RateLimitConfig } from "./types.js";

const WINDOW_MS = 60_000;

export interface RateVerdict {
  ok: boolean;
  message?: string;
  retryAfterMs?: number;
}

export class RateLimiter {
  private readonly global: number[] = [];
  private readonly motors = new Map<string, { times: number[]; lastDir?: "up" | "down"; lastAt?: number }>();

  constructor(
    private readonly cfg: RateLimitConfig,
    private readonly now: () => number = Date.now,
  ) {}

  private trim(times: number[], t: number): void {
    while (times.length > 0 && (times[0] ?? 0) <= t - WINDOW_MS) times.shift();
  }

  check(w: { device?: string; motor?: boolean; direction?: "up" | "down"; exempt?: boolean }): RateVerdict {
    if (w.exempt) return { ok: true };
    const t = this.now();
    this.trim(this.global, t);
    if (this.global.length >= this.cfg.globalPerMinute) {
      const retry = (this.global[0] ?? t) + WINDOW_MS - t;
      return deny(`more than ${this.cfg.globalPerMinute} writes in the last minute`, retry);
    }
    if (w.motor && w.device) {
      const m = this.motors.get(w.device);
      if (m) {
        this.trim(m.times, t);
        if (m.times.length >= this.cfg.motorPerMinute) {
          const retry = (m.times[0] ?? t) + WINDOW_MS - t;
          return deny(`this motor got ${this.cfg.motorPerMinute} commands in the last minute`, retry);
        }
        if (w.direction && m.lastDir && m.lastDir !== w.direction && m.lastAt !== undefined) {
          const since = t - m.lastAt;
          if (since < this.cfg.reversalCooldownMs) {
            return deny(
              `reversing a motor (${m.lastDir} → ${w.direction}) needs ${this.cfg.reversalCooldownMs} ms between commands`,
              this.cfg.reversalCooldownMs - since,
            );
          }
        }
      }
    }
    return { ok: true };
  }

  /** How many OTHER motors were moved (not stopped) within the last minute. */
  otherMotorsMoved(device: string): number {
    const t = this.now();
    let n = 0;
    for (const [id, m] of this.motors) {
      if (id === device) continue;
      this.trim(m.times, t);
      if (m.times.length > 0) n++;
    }
    return n;
  }

  record(w: { device?: string; motor?: boolean; direction?: "up" | "down"; exempt?: boolean }): void {
    if (w.exempt) return;
    const t = this.now();
    this.global.push(t);
    if (w.motor && w.device) {
      let m = this.motors.get(w.device);
      if (!m) {
        m = { times: [] };
        this.motors.set(w.device, m);
      }
      m.times.push(t);
      if (w.direction) {
        m.lastDir = w.direction;
        m.lastAt = t;
      }
    }
  }
}

function deny(reason: string, retryMs: number): RateVerdict {
  const ms = Math.max(1, Math.ceil(retryMs));
  return {
    ok: false,
    retryAfterMs: ms,
    message: `${reason}; retry in ${Math.ceil(ms / 1000)} s`,
  };
}
