/** Command-line flags of `loxmcp-shim` (hand-parsed: the shim has no dependencies). */

export type ParsedArgs =
  | { kind: "run"; name: string | null; socket: string | undefined }
  | { kind: "version" }
  | { kind: "help" }
  | { kind: "error"; message: string };

export const USAGE = `Usage: loxmcp-shim [--name <client name>] [--socket <path>]

Bridges one MCP client over stdio to the shared loxmcp daemon (starting it when needed).
Put it in your MCP client's config, e.g. for Claude Code:
  claude mcp add loxone -- node /abs/path/packages/shim/bin/loxmcp-shim.js --name claude-code

Options:
  --name <name>    client name shown by \`loxmcp status\` and in the audit (default: the
                   client's clientInfo.name)
  --socket <path>  daemon socket (default: as the daemon resolves it; env LOXMCP_SOCKET)
  --version        print the version and exit
  --help           print this help and exit

Environment: LOXMCP_HOME, LOXMCP_SOCKET, LOXMCP_DEBUG=1 (diagnostics on stderr),
LOXMCP_DAEMON_BIN, LOXMCP_START_TIMEOUT_MS (15000), LOXMCP_RECONNECT_TIMEOUT_MS (20000),
LOXMCP_NOTIFY=0 (no desktop notification when a call is held for your approval).
`;

export function parseArgs(argv: readonly string[]): ParsedArgs {
  let name: string | null = null;
  let socket: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const eq = arg.indexOf("=");
    const flag = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    const inline = arg.startsWith("--") && eq > 0 ? arg.slice(eq + 1) : undefined;
    const value = (): string | undefined => {
      if (inline !== undefined) return inline;
      const next = argv[i + 1];
      if (next === undefined || next.startsWith("--")) return undefined;
      i++;
      return next;
    };
    switch (flag) {
      case "--version":
      case "-v":
        return { kind: "version" };
      case "--help":
      case "-h":
        return { kind: "help" };
      case "--name": {
        const v = value();
        if (!v) return { kind: "error", message: "--name needs a value, e.g. --name claude-desktop" };
        name = v;
        break;
      }
      case "--socket": {
        const v = value();
        if (!v) return { kind: "error", message: "--socket needs a path" };
        socket = v;
        break;
      }
      default:
        return { kind: "error", message: `unknown argument ${JSON.stringify(arg)}` };
    }
  }
  return { kind: "run", name, socket };
}
