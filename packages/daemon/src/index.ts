/** Public API of @loxmcp/daemon (for tests, bench and in-process use). */
export * from "./config.js";
export * from "./contracts.js";
export {
  Daemon,
  type DaemonOptions,
  type DaemonPlugin,
  type StartResult,
  type UpstreamFactory,
  type UpstreamFactoryContext,
  VERSION,
} from "./daemon.js";
export { isReadOnlyTool, PassThroughGate } from "./gate.js";
export { acquireInstance, probeSocket } from "./instance.js";
export { createLogger, REDACT_PATHS, SecretRegistry, scrub } from "./log.js";
export { buildStatus, Controls, type StatusSection } from "./mux/control.js";
export { MuxServer } from "./mux/server.js";
export { ClientSession, type MuxCounters } from "./mux/session.js";
// relay/ + store/ (daemon-relay engineer)
export {
  AuthError,
  AuthFailedError,
  AuthorizationDeniedError,
  LoginFormError,
  LoginRejectedError,
  ResourceMismatchError,
} from "./relay/auth/errors.js";
export { headlessAuthorize } from "./relay/auth/login-form.js";
export { type AuthChallenge, AuthManager, type AuthManagerOptions } from "./relay/auth/manager.js";
export { DEFAULT_REDIRECT_URI, StoreOAuthProvider } from "./relay/auth/provider.js";
export { isLoxoneHostOf, type ResourcePolicy, validateResource } from "./relay/auth/resource.js";
export {
  parseRetryAfter,
  RelayResolver,
  RelayUnavailableError,
  type ResolverOptions,
} from "./relay/resolver.js";
export { UpstreamSession, type UpstreamSessionOptions } from "./relay/upstream.js";
export { requireSecureUrl, safeUrl } from "./relay/url.js";
export { openDatabase, StoreError } from "./store/db.js";
export { type Migration, migrations } from "./store/migrations.js";
export { type RelayEntry, type StoredTokens, TokenStore } from "./store/tokens.js";
export { createUpstreamSession } from "./wiring.js";
