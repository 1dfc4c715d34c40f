/**
 * Who may use the person's page: one-time sign-in secrets (minted over the socket by `loxmcp open`
 * or the person's shim for a desktop notification) exchanged once for a session, whose id lives
 * only in an HttpOnly, SameSite=Strict cookie, and a CSRF token per session that every POST must
 * carry. Secrets and session ids are kept as SHA-256 hashes, in memory: a daemon restart signs
 * every page out (fail closed). A session gives what the CLI gives without the PIN; approving,
 * resuming and accepting tool changes still need the PIN (policy/person.ts).
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** How long a sign-in secret may wait to be used (once). */
export const LOGIN_SECRET_TTL_MS = 5 * 60_000;
/** How long a page session lasts after sign-in. */
export const SESSION_TTL_MS = 12 * 60 * 60_000;
/** Unused secrets kept at once (the oldest goes first: a secret is only a way to sign in). */
const MAX_SECRETS = 32;
/** Sessions at once (the oldest is signed out first). */
const MAX_SESSIONS = 16;

export interface PageSession {
  /** Short id for logs and the audit (`page3`); never the cookie's value. */
  name: string;
  csrf: string;
  createdAt: number;
  expiresAt: number;
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const token = () => randomBytes(32).toString("base64url");

/** Equal strings, compared in constant time (for the CSRF token). */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class PageAuth {
  /** sha256(secret) → expiry. */
  private readonly secrets = new Map<string, number>();
  /** sha256(session id) → session. */
  private readonly sessions = new Map<string, PageSession>();
  private seq = 0;

  constructor(private readonly now: () => number = Date.now) {}

  /** A new one-time sign-in secret (base64url, 256 bits). */
  issueSecret(): { secret: string; expiresAt: number } {
    this.prune();
    while (this.secrets.size >= MAX_SECRETS) {
      const oldest = this.secrets.keys().next().value as string;
      this.secrets.delete(oldest);
    }
    const secret = token();
    const expiresAt = this.now() + LOGIN_SECRET_TTL_MS;
    this.secrets.set(sha256(secret), expiresAt);
    return { secret, expiresAt };
  }

  /**
   * Exchanges a sign-in secret for a new session: the secret is gone afterwards, so a secret that
   * was used (or expired, or never issued) gives undefined. Returns the cookie value and the session.
   */
  redeem(secret: unknown): { cookie: string; session: PageSession } | undefined {
    this.prune();
    if (typeof secret !== "string" || secret.length < 16 || secret.length > 128) return undefined;
    const key = sha256(secret);
    if (!this.secrets.has(key)) return undefined;
    this.secrets.delete(key);
    while (this.sessions.size >= MAX_SESSIONS) {
      const oldest = this.sessions.keys().next().value as string;
      this.sessions.delete(oldest);
    }
    const cookie = token();
    const t = this.now();
    const session: PageSession = {
      name: `page${++this.seq}`,
      csrf: token(),
      createdAt: t,
      expiresAt: t + SESSION_TTL_MS,
    };
    this.sessions.set(sha256(cookie), session);
    return { cookie, session };
  }

  /** The session of a cookie value, if it is valid now. */
  session(cookie: string | undefined): PageSession | undefined {
    if (!cookie || cookie.length > 128) return undefined;
    const key = sha256(cookie);
    const s = this.sessions.get(key);
    if (!s) return undefined;
    if (s.expiresAt <= this.now()) {
      this.sessions.delete(key);
      return undefined;
    }
    return s;
  }

  /** Signs a session out (its cookie is worthless afterwards). */
  end(cookie: string | undefined): void {
    if (cookie) this.sessions.delete(sha256(cookie));
  }

  /** Is this session still signed in (live updates stop for one that is not)? */
  alive(s: PageSession): boolean {
    return [...this.sessions.values()].includes(s) && s.expiresAt > this.now();
  }

  counts(): { sessions: number; secrets: number } {
    this.prune();
    return { sessions: this.sessions.size, secrets: this.secrets.size };
  }

  private prune(): void {
    const t = this.now();
    for (const [k, exp] of this.secrets) if (exp <= t) this.secrets.delete(k);
    for (const [k, s] of this.sessions) if (s.expiresAt <= t) this.sessions.delete(k);
  }
}
