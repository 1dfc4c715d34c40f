import { isIP } from "node:net";

/**
 * Whether `hostname` (as `URL.hostname` gives it, IPv6 with or without brackets) is certainly this
 * machine: `localhost`, an IPv4 literal in 127.0.0.0/8, or `::1`. The one rule for "plain http://
 * is allowed here" (daemon config, relay URLs, --insecure-tls, `loxmcp init`/`doctor`).
 * Deliberately strict: `*.localhost` is not accepted (the system resolver may send it to DNS), nor
 * is a name that merely starts with "127." (`127.example.com`).
 */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost") return true;
  if (isIP(h) === 4) return h.split(".")[0] === "127";
  if (isIP(h) === 6) return h === "::1" || h === "0:0:0:0:0:0:0:1";
  return false;
}
