/** Public API of the CLI package (the `loxmcp` program itself is `main.ts`). */
export { buildProgram, COMMANDS, run, VERSION } from "./cli.js";
export type { ArgumentSpec, CommandContext, CommandInput, CommandSpec, OptionSpec } from "./command.js";
export { CliError } from "./command.js";
export { type DaemonStatus, fetchStatus, hintFor, renderStatus } from "./commands/status.js";
export {
  callDaemon,
  DaemonNotRunningError,
  DaemonRpcError,
  DaemonTimeoutError,
  SocketPermissionError,
  UnsafeSocketError,
} from "./daemon-client.js";
