/**
 * Miniserver serials and connect URLs, checked the same way by the daemon's config and by
 * `loxmcp init`. A serial is exactly 12 hex digits (e.g. 504F94A0C0DE); Loxone Config and the
 * Miniserver's sticker also show it MAC style (50:4F:94:A0:C0:DE), which is accepted and
 * normalised. A connect URL that already holds `/<serial>/mcp` (copied from a browser or the
 * Loxone docs) is split into its base and the serial.
 */

export type SerialCheck = { ok: true; serial: string } | { ok: false; problem: string };

const MAC_STYLE = /^[0-9A-Za-z]{2}([:-])[0-9A-Za-z]{2}(\1[0-9A-Za-z]{2}){4}$/;

/** What a serial looks like, for messages. */
export const SERIAL_FORMAT = "12 hex characters, e.g. 504F94A0C0DE or 50:4F:94:A0:C0:DE";

/**
 * Normalises a serial (upper case, MAC-style separators removed) or says precisely what is wrong
 * with it: the first character that is not a hex digit, or how many digits there are.
 */
export function checkSerial(raw: string): SerialCheck {
  const trimmed = raw.trim();
  const compact = MAC_STYLE.test(trimmed) ? trimmed.replace(/[:-]/g, "") : trimmed;
  const upper = compact.toUpperCase();
  if (upper === "") return { ok: false, problem: `it is empty; a serial is ${SERIAL_FORMAT}` };
  const chars = [...upper];
  const bad = chars.findIndex((c) => !/[0-9A-F]/.test(c));
  if (bad !== -1) {
    const c = [...compact][bad] ?? "";
    const hint = /^o$/i.test(c)
      ? " (the letter O: the digit 0 is meant)"
      : /^[il]$/i.test(c)
        ? " (the letter I or l: the digit 1 is meant)"
        : "";
    return {
      ok: false,
      problem: `the character ${JSON.stringify(c)} at position ${bad + 1} is not a hex digit (0-9, A-F)${hint}; a serial is ${SERIAL_FORMAT}`,
    };
  }
  if (chars.length !== 12) {
    return {
      ok: false,
      problem: `it has ${chars.length} hex digits, a serial has exactly 12 (${SERIAL_FORMAT})`,
    };
  }
  return { ok: true, serial: upper };
}

export type ConnectUrlSplit = { ok: true; base: string; serial?: string } | { ok: false; problem: string };

/**
 * Splits a connect URL that names a Miniserver (`…/<serial>/mcp` or `…/<serial>`) into the base
 * the daemon asks (`https://connect.loxonecloud.com`) and the normalised serial. A URL without one
 * comes back as it is (without a trailing slash). Only the path is looked at: checking the
 * scheme and host is the caller's job.
 */
export function splitConnectUrl(url: string): ConnectUrlSplit {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { ok: true, base: url.replace(/\/+$/, "") };
  }
  const parts = u.pathname.split("/").filter(Boolean);
  const endsInMcp = parts.length > 0 && parts[parts.length - 1]?.toLowerCase() === "mcp";
  const candidate = endsInMcp ? parts[parts.length - 2] : parts[parts.length - 1];
  const plain = () => ({ ok: true as const, base: url.trim().replace(/\/+$/, "") });
  if (candidate === undefined) {
    if (endsInMcp) {
      return {
        ok: false,
        problem: `it ends in /mcp but names no Miniserver serial before it; use the base https://connect.loxonecloud.com (the daemon adds /<serial>/mcp itself)`,
      };
    }
    return plain();
  }
  const check = checkSerial(decodeURIComponent(candidate));
  if (!check.ok) {
    // A path that is not a serial is a proxy prefix unless it ends in /mcp, which only the
    // Miniserver's own entry does.
    if (!endsInMcp) return plain();
    return {
      ok: false,
      problem: `it ends in /${candidate}/mcp, a Miniserver's entry, but ${JSON.stringify(candidate)} is not a serial: ${check.problem}. Use the base https://connect.loxonecloud.com and set the serial on its own`,
    };
  }
  if (u.search || u.hash) {
    return {
      ok: false,
      problem: `it names serial ${check.serial} but also has a query or fragment; use the base https://connect.loxonecloud.com`,
    };
  }
  const keep = parts.slice(0, parts.length - (endsInMcp ? 2 : 1));
  u.pathname = keep.length > 0 ? `/${keep.join("/")}` : "/";
  return { ok: true, base: u.href.replace(/\/+$/, ""), serial: check.serial };
}
