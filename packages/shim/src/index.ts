export { type ParsedArgs, parseArgs, USAGE } from "./args.js";
export { ABORTED_MESSAGE, Bridge, type BridgeOptions, type Logger, UNREACHABLE_MESSAGE } from "./bridge.js";
export { VERSION } from "./version.js";
