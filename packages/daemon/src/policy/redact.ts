/** Redaction of tool arguments before they reach the audit trail or a log line. */

const SECRET_KEY =
  /(pass(word|wd|phrase|code)?|^pin$|pin_?code|^code$|codes?$|_code|token|secret|cookie|auth|api_?key|credential|private)/i;
const JWT = /^ey[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\./;
const BEARER = /bearer\s+\S+/gi;
export const REDACTED = "[redacted]";

/**
 * Returns a copy with secret-looking keys replaced, bearer tokens / JWTs masked and, when
 * `nfc` is set (NfcCodeTouch targets), digit runs of 4+ masked (access codes).
 */
export function redactArgs(v: unknown, opts: { nfc?: boolean } = {}, depth = 0): unknown {
  if (depth > 10) return REDACTED;
  if (typeof v === "string") {
    if (JWT.test(v)) return REDACTED;
    let s = v.replace(BEARER, `Bearer ${REDACTED}`);
    if (opts.nfc) s = s.replace(/\d{4,}/g, REDACTED);
    return s;
  }
  if (Array.isArray(v)) return v.map((x) => redactArgs(x, opts, depth + 1));
  if (v && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) {
      out[k] = SECRET_KEY.test(k) ? REDACTED : redactArgs(val, opts, depth + 1);
    }
    return out;
  }
  return v;
}
