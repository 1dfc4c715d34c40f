/** Debug log to stderr, only with LOXMCP_SIM_DEBUG=1. Never pass secrets here. */
export function debug(msg: string): void {
  if (process.env.LOXMCP_SIM_DEBUG === "1") process.stderr.write(`[loxmcp-sim] ${msg}\n`);
}
