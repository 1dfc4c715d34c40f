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
export { createLogger, REDACT_PATHS, SecretRegistry, scrub, secrets } from "./log.js";
export { buildStatus, Controls, type StatusExtension } from "./mux/control.js";
export { acquireInstance, probeSocket } from "./mux/instance.js";
export { MuxServer } from "./mux/server.js";
export { ClientSession, type MuxCounters } from "./mux/session.js";
