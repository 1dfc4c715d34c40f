/**
 * The person's desktop notification when an action is held for their approval. Raised here, on the
 * person's side (the shim runs as the person, also when the daemon runs as its own system user),
 * when the daemon's answer to this client says a call is held:
 *
 * - Linux: `notify-send` (the desktop's D-Bus notification service) with a one-time sign-in link
 *   to the page, asked from the daemon over a separate control connection. The AI never sees the
 *   link: it goes to the notification only, never to stdout.
 * - macOS: `osascript` `display notification` (it cannot carry a link): it names the action and
 *   says to open the page with `loxmcp open`.
 * - Anywhere else, or without those commands, or with LOXMCP_NOTIFY=0: nothing, silently.
 *
 * One notification per held call (its code); the commands run with stdin/stdout/stderr ignored.
 */
import { accessSync, constants } from "node:fs";
import { createRequire } from "node:module";
import { connect } from "node:net";
import { delimiter, join } from "node:path";
import { checkSocketPath, type Env, encodeFrame, LineDecoder, type LoxmcpPaths } from "@loxmcp/common";
import { VERSION } from "./version.js";

export interface HeldCall {
  code: string;
  /** What would happen, e.g. `send "open" to Intercom "Front Door Intercom" in Hall`. */
  what: string;
}

export interface NotifierOptions {
  env: Env;
  paths: LoxmcpPaths;
  /** The shim's --name (the client the person configured), if any. */
  name: string | null;
  log: { debug(msg: string): void };
  platform?: NodeJS.Platform;
}

/**
 * `node:child_process`, loaded on the first notification: compiling it costs every MCP client start
 * ~0.8 ms (bench start), and most clients never have a call held.
 */
let childProcess: typeof import("node:child_process") | undefined;
function spawn(...args: Parameters<typeof import("node:child_process").spawn>) {
  childProcess ??= createRequire(import.meta.url)(
    "node:child_process",
  ) as typeof import("node:child_process");
  return childProcess.spawn(...args);
}

const LINK_TIMEOUT_MS = 3_000;
const RUN_TIMEOUT_MS = 10_000;
const REMEMBERED = 64;

/** Finds an executable on PATH. */
export function which(cmd: string, env: Env): string | undefined {
  for (const dir of (env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** notify-send bodies may hold markup: names from the Miniserver must stay text. */
function escapeMarkup(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** A one-time sign-in link to the page, from the daemon (undefined when there is none). */
export function pageLink(paths: LoxmcpPaths, env: Env): Promise<string | undefined> {
  try {
    checkSocketPath(paths, env);
  } catch {
    return Promise.resolve(undefined);
  }
  return new Promise((resolve) => {
    const sock = connect(paths.socket);
    const decoder = new LineDecoder();
    const done = (v: string | undefined) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(undefined), LINK_TIMEOUT_MS);
    sock.on("error", () => done(undefined));
    sock.on("close", () => done(undefined));
    sock.on("data", (chunk: Buffer) => {
      for (const line of decoder.push(chunk).lines) {
        try {
          const m = JSON.parse(line) as { id?: unknown; result?: { url?: unknown } };
          if (m.id !== 1) continue;
          done(typeof m.result?.url === "string" ? m.result.url : undefined);
        } catch {
          // not for us
        }
      }
    });
    sock.on("connect", () => {
      sock.write(
        encodeFrame({
          jsonrpc: "2.0",
          method: "loxmcp/hello",
          params: { kind: "cli", name: "loxmcp-shim", pid: process.pid, version: VERSION },
        }),
      );
      sock.write(
        encodeFrame({
          jsonrpc: "2.0",
          id: 1,
          method: "loxmcp/page",
          params: { action: "link", for: "desktop notification" },
        }),
      );
    });
  });
}

export class HeldNotifier {
  private readonly notified = new Set<string>();
  private readonly platform: NodeJS.Platform;

  constructor(private readonly opts: NotifierOptions) {
    this.platform = opts.platform ?? process.platform;
  }

  /** Raises the notification for a held call (once per code). Never throws, never waits. */
  held(call: HeldCall): void {
    if (this.notified.has(call.code)) return;
    this.notified.add(call.code);
    if (this.notified.size > REMEMBERED) this.notified.delete(this.notified.values().next().value as string);
    this.run(call).catch((err: unknown) =>
      this.opts.log.debug(`desktop notification failed: ${(err as Error).message}`),
    );
  }

  private async run(call: HeldCall): Promise<void> {
    const env = this.opts.env;
    const off = env.LOXMCP_NOTIFY;
    if (off !== undefined && /^(0|false|no|off)$/i.test(off)) return;
    const who = this.opts.name ?? "An AI client";
    const what = call.what.length > 300 ? `${call.what.slice(0, 297)}...` : call.what;
    if (this.platform === "darwin") {
      const osascript = which("osascript", env) ?? "/usr/bin/osascript";
      // The texts go in as arguments, never into the script itself.
      this.exec(osascript, [
        "-e",
        "on run argv",
        "-e",
        "display notification (item 2 of argv) with title (item 1 of argv)",
        "-e",
        "end run",
        "loxmcp: approval needed",
        `${who} asks to ${what}. Approve or deny on the loxmcp page (loxmcp open) or in a terminal.`,
      ]);
      return;
    }
    if (this.platform !== "linux" && this.platform !== "freebsd" && this.platform !== "openbsd") return;
    const notifySend = which("notify-send", env);
    if (!notifySend) {
      this.opts.log.debug("no notify-send on PATH: no desktop notification");
      return;
    }
    const link = await pageLink(this.opts.paths, env);
    const where = link
      ? `Approve (PIN) or deny on the page: ${link}`
      : "Approve or deny on the loxmcp page (`loxmcp open`) or in a terminal.";
    this.exec(notifySend, [
      "--app-name=loxmcp",
      "--urgency=critical",
      "--icon=dialog-warning",
      "loxmcp: approval needed",
      escapeMarkup(`${who} asks to ${what}.\n${where}`),
    ]);
  }

  private exec(cmd: string, args: string[]): void {
    const child = spawn(cmd, args, { stdio: "ignore", env: this.opts.env as NodeJS.ProcessEnv });
    child.on("error", (err) => this.opts.log.debug(`${cmd}: ${err.message}`));
    const timer = setTimeout(() => child.kill("SIGKILL"), RUN_TIMEOUT_MS);
    timer.unref();
    child.on("exit", () => clearTimeout(timer));
    child.unref();
  }
}
