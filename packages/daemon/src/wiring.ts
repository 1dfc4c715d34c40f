/**
 * Builds the real upstream (relay/) for the controller. Kept apart from main.ts so tests, the
 * probe and bench can build the same upstream in-process.
 */
import type { Upstream } from "./contracts.js";
import type { UpstreamFactoryContext } from "./daemon.js";
import { UpstreamSession, type UpstreamSessionOptions } from "./relay/upstream.js";
import { TokenStore } from "./store/tokens.js";

export function createUpstreamSession(ctx: UpstreamFactoryContext): Upstream {
  const { config } = ctx;
  const store = new TokenStore(ctx.db);
  const key = config.upstreamUrl ?? config.serial;
  // Whatever the store holds (tokens, client secret, PKCE verifier) is scrubbed from every log line.
  ctx.secrets.addProvider(() => {
    const t = store.getTokens(key)?.tokens;
    const client = store.getClient(key) as { client_secret?: string } | undefined;
    return [
      t?.access_token,
      t?.refresh_token,
      t?.id_token as string | undefined,
      client?.client_secret,
      store.getCodeVerifier(key),
    ];
  });
  const opts: UpstreamSessionOptions = {
    connectUrl: config.connectUrl,
    serial: config.serial,
    // Read at each login: `loxmcp relogin` may have re-read the credentials into this config.
    user: () => config.user,
    password: ctx.password,
    allowedResources: config.allowedResources,
    pingIntervalMs: config.pingIntervalMs,
    idleCheckMs: config.idleCheckMs,
    requestTimeoutMs: config.requestTimeoutMs,
    logger: ctx.logger,
  };
  if (config.upstreamUrl !== undefined) opts.upstreamUrl = config.upstreamUrl;
  if (ctx.fetch) opts.fetch = ctx.fetch;
  if (ctx.clientInformation) opts.preRegisteredClient = ctx.clientInformation;
  if (ctx.oauthChild) opts.oauthChild = ctx.oauthChild;
  return new UpstreamSession(opts, store);
}
