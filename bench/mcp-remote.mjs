// The peer for benchmarks: mcp-remote (pinned in bench/package.json), the stdio-to-remote proxy
// users configure today in Claude/Cursor for a remote MCP server. Started as users start it, with
// the relay's MCP URL and a bearer header, so it makes no OAuth flow of its own:
//
//   node <mcp-remote>/dist/proxy.js <relay>/mcp --header-file <file> --transport http-only --allow-http
//
// - the header file holds `Authorization: Bearer <token>` (mcp-remote's `--header-file`, the same
//   header as `--header "Authorization:Bearer …"` but not visible in the process list);
// - `--transport http-only`: Streamable HTTP only (the relay has no SSE transport to fall back to);
// - `--allow-http`: the simulator's relay is plain http (loopback is allowed anyway; a non-loopback
//   simulator host needs the flag);
// - no `--silent`: it logs every message to stderr as users run it; stderr is piped and kept apart
//   (only its tail is kept, for error messages) — it never reaches stdout or the results;
// - its own config dir (MCP_REMOTE_CONFIG_DIR and HOME) is a private temp directory, never ~/.mcp-auth;
//   PATH holds only node's directory, so it cannot find a browser opener.
// If the relay does not accept the header, mcp-remote starts its own OAuth sign-in (callback server,
// browser): that is detected on its stderr and fails the benchmark at once with a clear message.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { REPO } from "./lib.mjs";

const PKG_DIR = join(REPO, "bench/node_modules/mcp-remote");

/** Name, version and bin of the installed mcp-remote; a clear error when `pnpm install` was not run. */
export function mcpRemoteInfo() {
  let pkg;
  try {
    pkg = JSON.parse(readFileSync(join(PKG_DIR, "package.json"), "utf8"));
  } catch {
    throw new Error(
      "mcp-remote is not installed in bench/node_modules: run `pnpm install` at the repository root (bench/ is a workspace package with mcp-remote as a dev dependency)",
    );
  }
  const bin = typeof pkg.bin === "string" ? pkg.bin : pkg.bin?.["mcp-remote"];
  if (!bin) throw new Error(`mcp-remote ${pkg.version}: no "mcp-remote" bin in its package.json`);
  return { name: pkg.name, version: pkg.version, bin: join(PKG_DIR, bin) };
}

export const MCP_REMOTE_FLAGS = ["--transport", "http-only", "--allow-http"];

/** What mcp-remote prints once it starts a sign-in of its own (0.15.1's wording, and older ones). */
const AUTH_FLOW =
  /Initializing auth coordination|OAuth callback server running|running the sign-in|Please authorize|Opening browser|Browser opened|authorization URL/i;

/**
 * A private setup for mcp-remote processes: temp config dir + header file with the bearer token.
 * `connect()` starts one mcp-remote and connects an SDK Client over stdio, as Claude would.
 */
export function mcpRemoteSetup({ url, token }) {
  const info = mcpRemoteInfo();
  const dir = mkdtempSync("/tmp/lxb-mcpr-");
  const headerFile = join(dir, "headers.txt");
  writeFileSync(headerFile, `Authorization: Bearer ${token}\n`, { mode: 0o600 });
  const env = {
    PATH: dirname(process.execPath),
    HOME: dir,
    MCP_REMOTE_CONFIG_DIR: join(dir, "mcp-auth"),
    ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}),
    ...(process.env.LANG ? { LANG: process.env.LANG } : {}),
  };
  const args = [info.bin, url, "--header-file", headerFile, ...MCP_REMOTE_FLAGS];

  async function connect(name = "bench-mcp-remote", timeoutMs = 30_000) {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args,
      env,
      stderr: "pipe",
      cwd: dir,
    });
    let tail = "";
    let failure;
    let fail = () => {};
    const failed = new Promise((_, reject) => {
      fail = (e) => {
        if (failure) return;
        failure = e;
        reject(e);
        transport.close().catch(() => {});
      };
    });
    failed.catch(() => {});
    transport.stderr?.on("data", (d) => {
      tail = (tail + d.toString()).slice(-8192);
      const line = AUTH_FLOW.exec(tail);
      if (line)
        fail(
          new Error(
            `mcp-remote started its own OAuth sign-in ("${line[0]}"): the relay did not accept the bearer header. The benchmark never signs in through a browser; check the token and the relay URL (${url}).\n--- mcp-remote stderr (tail) ---\n${tail}`,
          ),
        );
    });
    const timer = setTimeout(
      () =>
        fail(
          new Error(`mcp-remote did not finish initialize within ${timeoutMs} ms\n--- stderr ---\n${tail}`),
        ),
      timeoutMs,
    );
    const client = new Client({ name, version: "1.0.0" });
    try {
      await Promise.race([client.connect(transport), failed]);
    } catch (e) {
      await transport.close().catch(() => {});
      throw failure ?? new Error(`mcp-remote: ${e.message}\n--- stderr (tail) ---\n${tail}`);
    } finally {
      clearTimeout(timer);
    }
    return {
      client,
      pid: transport.pid,
      /** Rejects once mcp-remote starts a sign-in (or the start timed out); never resolves. */
      failed,
      /** The error that stopped it, when one did: use it instead of a bare "Connection closed". */
      failure: () => failure,
      stderrTail: () => tail,
      close: () => client.close(),
    };
  }

  return {
    ...info,
    flags: MCP_REMOTE_FLAGS,
    command: `node ${info.bin.slice(REPO.length + 1)} <relay>/mcp --header-file <file> ${MCP_REMOTE_FLAGS.join(" ")}`,
    connect,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
