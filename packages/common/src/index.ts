export * from "./daemon-spawn.js";
export * from "./framing.js";
export * from "./jsonrpc.js";
export * from "./paths.js";
export * from "./private-file.js";
export * from "./serial.js";
export * from "./start-error.js";
export * from "./system.js";
