/**
 * Public API of the simulator (contract shared with tests, demo and benchmarks).
 * The simulator is a separate program: product code never imports it.
 */

export interface SimulatorOptions {
  /** Port of the connect service (0 = pick a free one). */
  port?: number;
  /** Miniserver serial, e.g. "504F94A00001". */
  serial?: string;
  user?: string;
  password?: string;
  /** Access token lifetime in seconds (default 3600). */
  accessTtl?: number;
  /** Refresh token lifetime in seconds (default 30 days). */
  refreshTtl?: number;
  /** How many relay entries to start (default 3). */
  relays?: number;
  /** connect rate limit: requests per minute per client IP (default 10). */
  connectRateLimit?: number;
  /** Override MCP tool names, e.g. { control_command: "control_cmd" }. */
  toolNames?: Partial<Record<ToolKey, string>>;
  /** Idle MCP session expiry in seconds (default: never). */
  sessionTtl?: number;
  /** Give tools MCP annotations (readOnlyHint/destructiveHint). Default true. */
  annotations?: boolean;
}

export type ToolKey =
  | "control_find"
  | "control_describe"
  | "control_command"
  | "system_status"
  | "statistics"
  | "weather_forecast";

/** MCP tool annotations (the hints of the MCP spec's ToolAnnotations). */
export interface ToolAnnotations {
  title?: string;
  readOnlyHint?: boolean;
  destructiveHint?: boolean;
  idempotentHint?: boolean;
  openWorldHint?: boolean;
}

/** A tool that a "firmware update" adds to the catalogue; listed after the built-in tools, in order of adding. */
export interface AddedTool {
  /** Listed name: letters, digits, `_`, `-`, `.`; must not be the name of a built-in tool. */
  name: string;
  title?: string;
  description?: string;
  /**
   * Omitted: like the built-ins of its kind (read `{readOnlyHint: true}`, write
   * `{readOnlyHint: false, destructiveHint: true}`; none when the `annotations` option is false).
   * `null`: no annotations.
   */
  annotations?: ToolAnnotations | null;
  /**
   * true: takes `{uuid, command}` and executes through the house like control_command
   * (executions recorded under this tool's name). false (default): takes no arguments, returns `text`.
   */
  write?: boolean;
  /** What a read tool answers (default: a short JSON text naming the tool). */
  text?: string;
}

/** An extra, optional property of a built-in tool's input schema. */
export interface ExtraInputProperty {
  type: "string" | "number" | "integer" | "boolean";
  description?: string;
}

/**
 * A change of the MCP tool catalogue, as a Miniserver firmware update would make it. Changes
 * accumulate (each applies on top of the previous ones) until `resetTools()`. Built-in tools are
 * addressed by ToolKey, also when renamed through `toolNames`.
 */
export interface ToolCatalogChange {
  /** Adds tools; adding a name again replaces that added tool in place. */
  add?: AddedTool[];
  /** Replaces a built-in tool's annotations with exactly this object (`null`: no annotations). */
  annotations?: Partial<Record<ToolKey, ToolAnnotations | null>>;
  /** Adds optional properties to a built-in tool's input schema (not one it already has). */
  inputProperties?: Partial<Record<ToolKey, Record<string, ExtraInputProperty>>>;
  /** Replaces a built-in tool's description. */
  descriptions?: Partial<Record<ToolKey, string>>;
  /** Takes built-in tools off the list (calling one answers an error result "Tool … disabled"). */
  remove?: ToolKey[];
}

/** Fault knobs, settable at runtime (handle or POST /faults). */
export interface Faults {
  /** Added latency in ms for every MCP POST. */
  latencyMs?: number;
  /** Next N MCP tools/call requests: execute, then destroy the connection without answering. */
  dropAfterExecute?: number;
  /** Next N MCP POSTs answer this HTTP status (e.g. 502/503) without executing. */
  httpErrors?: number;
  httpErrorStatus?: number;
}

export interface ExecutionRecord {
  tool: string;
  arguments: unknown;
  count: number;
}

export interface SimulatorStats {
  connectRequests: number;
  logins: number;
  failedLogins: number;
  refreshes: number;
  registrations: number;
  sessions: number;
  mcpRequests: number;
  executions: ExecutionRecord[];
}

export interface Simulator {
  /** e.g. "http://127.0.0.1:41234" — base of connect; entry is `${connectUrl}/${serial}/mcp`. */
  connectUrl: string;
  serial: string;
  user: string;
  password: string;
  /** Admin API base, e.g. "http://127.0.0.1:41234/__admin". */
  adminUrl: string;
  /** MCP URLs of every relay entry, in order. */
  relayUrls: string[];
  /** Index of the relay that connect currently redirects to. */
  currentRelay(): number;
  /** Points connect at the next relay (wrapping), returns its MCP URL. */
  rotateRelay(): string;
  /** Stops the relay's listener and destroys its sockets (connections refused). Default: current. Also rotates connect to a live relay. */
  killRelay(index?: number): void;
  /** Brings a killed relay back on the same port. */
  reviveRelay(index: number): Promise<void>;
  /** Forgets all MCP sessions: next request with an old Mcp-Session-Id gets 404. */
  expireSessions(): void;
  /** Revokes every access and refresh token: forces a full re-login. */
  revokeTokens(): void;
  /** Makes every current access token expire now (refresh tokens stay valid). */
  expireAccessTokens(): void;
  setFaults(f: Faults): void;
  stats(): SimulatorStats;
  resetStats(): void;
  /** Current house state (for assertions). */
  house(): HouseSnapshot;
  /** Renames a control (structure-diff tests). */
  renameControl(uuid: string, name: string): void;
  /** Adds a control (structure-diff tests); returns its uuid. */
  addControl(c: { name: string; type: string; room: string; category: string }): string;
  /**
   * Changes the MCP tool catalogue (on top of earlier changes): every live session's tool list is
   * updated and gets `notifications/tools/list_changed`; new sessions start with the changed list.
   * Throws SimulatorOptionsError (nothing changed) for an invalid change.
   */
  changeTools(change: ToolCatalogChange): void;
  /** Back to the original catalogue (same tools/list as before any change), notifying live sessions. */
  resetTools(): void;
  /** Names of the currently listed tools, in tools/list order. */
  listedTools(): string[];
  stop(): Promise<void>;
}

export interface HouseControl {
  uuid: string;
  name: string;
  type: string;
  room: string;
  category: string;
  states: Record<string, number | string | boolean>;
  /** Commands this control accepts; `{n}` marks a number placeholder, e.g. "manualPosition/{n}". */
  commands: string[];
}

export interface HouseSnapshot {
  controls: HouseControl[];
  rooms: string[];
  categories: string[];
}
