/**
 * OAuth resource (token audience) policy. Loxone advertises a `resource` naming another relay
 * of the same Miniserver; a malicious server could advertise somebody else's resource to get a
 * token for it. We accept a resource that differs from the URL we talk to only when it belongs
 * to the same Miniserver (same serial under the Loxone relay/connect domains) or is allow-listed.
 */
import {
  checkResourceAllowed,
  resourceUrlFromServerUrl,
} from "@modelcontextprotocol/sdk/shared/auth-utils.js";
import { safeUrl } from "../url.js";
import { ResourceMismatchError } from "./errors.js";

export interface ResourcePolicy {
  /** Miniserver serial: resources on `*.<serial>.dyndns.loxonecloud.com` are ours. */
  serial?: string;
  /** Extra resources accepted verbatim (config `allowedResources`). */
  allowedResources?: readonly string[];
}

/**
 * Decides the `resource` to ask a token for. `serverUrl` is the MCP URL we talk to, `resource`
 * what its protected-resource metadata advertises (undefined: none advertised ⇒ none sent).
 * Throws ResourceMismatchError for a foreign resource.
 */
export function validateResource(
  serverUrl: string | URL,
  resource: string | undefined,
  policy: ResourcePolicy,
): URL | undefined {
  if (resource === undefined || resource === "") return undefined;
  let r: URL;
  try {
    r = new URL(resource);
  } catch {
    throw new ResourceMismatchError(
      `the server advertised an OAuth resource that is not a URL (${JSON.stringify(resource.slice(0, 200))}); refusing to log in`,
    );
  }
  const server = resourceUrlFromServerUrl(serverUrl);
  // The resource names the server itself (or a path prefix of it on the same origin).
  if (checkResourceAllowed({ requestedResource: server, configuredResource: r })) return r;
  if (policy.allowedResources?.some((a) => sameUrl(a, r))) return r;
  if (policy.serial && r.protocol === "https:" && isLoxoneHostOf(r.hostname, policy.serial)) return r;
  throw new ResourceMismatchError(
    `the server at ${safeUrl(server)} advertised the OAuth resource ${safeUrl(r)}, which is neither that server${
      policy.serial ? ` nor a Loxone relay of Miniserver ${policy.serial}` : ""
    }; refusing to request a token for it (if it is legitimate, add it to allowedResources in the config)`,
  );
}

/**
 * `*.<serial>.dyndns.loxonecloud.com`, or a host in the connect family `*.loxonecloud.com`
 * that carries the serial as one of its labels.
 */
export function isLoxoneHostOf(hostname: string, serial: string): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, "");
  const s = serial.toLowerCase();
  if (!s || !/^[a-z0-9_-]+$/.test(s)) return false;
  if (host.endsWith(`.${s}.dyndns.loxonecloud.com`)) return true;
  if (host.endsWith(".loxonecloud.com")) {
    const labels = host.slice(0, -".loxonecloud.com".length).split(".");
    return labels.includes(s);
  }
  return false;
}

function sameUrl(a: string, b: URL): boolean {
  try {
    const x = new URL(a);
    const strip = (u: URL) => `${u.origin}${u.pathname.replace(/\/+$/, "")}${u.search}`;
    return strip(x) === strip(b);
  } catch {
    return false;
  }
}
