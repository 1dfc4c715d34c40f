/** Small formatting helpers for human output. */

/** 3725 → "1h 2m", 45 → "45s", 90061 → "1d 1h". */
export function formatDuration(totalSec: number): string {
  const s = Math.max(0, Math.round(totalSec));
  if (s < 60) return `${s}s`;
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) return h > 0 ? `${d}d ${h}h` : `${d}d`;
  if (h > 0) return m > 0 ? `${h}h ${m}m` : `${h}h`;
  return sec > 0 ? `${m}m ${sec}s` : `${m}m`;
}

/** Local time "2026-11-23 10:51:53" (with ".123" when `ms`). */
export function formatLocalTime(t: Date, ms = false): string {
  const p = (n: number, w = 2) => String(n).padStart(w, "0");
  const base = `${t.getFullYear()}-${p(t.getMonth() + 1)}-${p(t.getDate())} ${p(t.getHours())}:${p(t.getMinutes())}:${p(t.getSeconds())}`;
  return ms ? `${base}.${p(t.getMilliseconds(), 3)}` : base;
}

/** Accepts epoch ms, epoch s, or an ISO string; undefined when unparseable. */
export function toDate(v: unknown): Date | undefined {
  if (typeof v === "number" && Number.isFinite(v)) return new Date(v < 1e11 ? v * 1000 : v);
  if (typeof v === "string") {
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : new Date(t);
  }
  return undefined;
}

/** A file mode as octal with its leading 0 (`0600`). */
export const octal = (m: number) => `0${m.toString(8).padStart(3, "0")}`;

/** Quotes a word for a POSIX shell only when needed. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Key names whose values are never printed (defence in depth; the daemon redacts too). */
export const SECRET_KEY =
  /pass(word)?|secret|token|authori[sz]ation|cookie|bearer|^code$|code_?verifier|api_?key/i;

export function useColor(isTTY: boolean, env: Record<string, string | undefined>): boolean {
  return isTTY && !env.NO_COLOR && env.TERM !== "dumb";
}

/**
 * Text that came from an MCP client or the Miniserver (client names, tool names, reasons), made
 * safe for the person's terminal: control characters (C0, DEL, C1 — escape sequences that could
 * move the cursor, hide text or set the title) are shown as visible escapes instead.
 */
export function printable(s: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these are exactly what is escaped
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}
