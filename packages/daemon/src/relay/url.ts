/** URL rules shared by the resolver and the upstream: TLS everywhere except loopback. */

import { isLoopbackHost } from "@loxmcp/common";

export class InsecureUrlError extends Error {
  readonly code = "INSECURE_URL";
  constructor(what: string, url: string) {
    super(
      `${what} ${safeUrl(url)} uses plain http:// on a host that is not loopback; use https:// (http:// is only accepted for 127.0.0.1, ::1 or localhost)`,
    );
    this.name = "InsecureUrlError";
  }
}

export class InvalidUrlError extends Error {
  readonly code = "INVALID_URL";
  constructor(what: string, url: string) {
    super(`${what} ${JSON.stringify(safeUrl(url))} is not a valid http(s) URL; fix it in the configuration`);
    this.name = "InvalidUrlError";
  }
}

/** Parses `url` and refuses anything but https, or http to a loopback host. */
export function requireSecureUrl(what: string, url: string | URL): URL {
  let u: URL;
  try {
    u = new URL(String(url));
  } catch {
    throw new InvalidUrlError(what, String(url));
  }
  if (u.protocol === "https:") return u;
  if (u.protocol === "http:") {
    if (isLoopbackHost(u.hostname)) return u;
    throw new InsecureUrlError(what, u.href);
  }
  throw new InvalidUrlError(what, u.href);
}

/** A URL without user info, query or fragment: safe to put in logs and errors. */
export function safeUrl(url: string | URL): string {
  try {
    const u = new URL(String(url));
    u.username = "";
    u.password = "";
    u.search = "";
    u.hash = "";
    return u.href;
  } catch {
    return "<invalid URL>";
  }
}
