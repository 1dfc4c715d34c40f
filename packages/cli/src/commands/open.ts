/**
 * `loxmcp open`: the person's local page. Asks the daemon for a one-time sign-in link (the daemon
 * serves the page on 127.0.0.1; the port is never guessed, so a program squatting a port cannot
 * pose as the page), prints it and opens it in the browser. The link works once, within 5 minutes.
 */
import { spawn } from "node:child_process";
import { type CommandSpec, optBool } from "../command.js";
import { callDaemon } from "../daemon-client.js";
import { isRecord } from "../format.js";

/** Opens `url` in the default browser: xdg-open (Linux), open (macOS). False when there is none. */
function openBrowser(url: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  const cmd = process.platform === "darwin" ? "open" : "xdg-open";
  return new Promise((resolve) => {
    try {
      const child = spawn(cmd, [url], { stdio: "ignore", detached: true, env });
      child.once("error", () => resolve(false));
      child.once("spawn", () => {
        child.unref();
        resolve(true);
      });
    } catch {
      resolve(false);
    }
  });
}

export const openCommand: CommandSpec = {
  name: "open",
  description: "open the local page (approvals, emergency stop, audit, house) with a one-time sign-in link",
  options: [
    { flags: "--no-browser", description: "only print the link" },
    { flags: "--json", description: "print { url, page, expiresInSec } as JSON" },
  ],
  helpAfter: `
The link signs this browser in once (within 5 minutes) and is then worthless; run
\`loxmcp open\` again for a new one. Approving on the page needs your approval PIN
(\`loxmcp pin set\`); deny and the emergency stop do not. See docs/page.md.`,
  async run(ctx, { opts }) {
    const r = await callDaemon(ctx.paths.socket, "loxmcp/page", { action: "link" });
    const url = isRecord(r) && typeof r.url === "string" ? r.url : undefined;
    if (!url) {
      ctx.err("loxmcp: the daemon gave no page link; is it older than this CLI? run `loxmcp restart`");
      return 1;
    }
    if (optBool(opts, "json")) ctx.out(JSON.stringify(r));
    else ctx.out(url);
    // commander turns --no-browser into browser: false
    if (opts.browser === false) return 0;
    const opened = await openBrowser(url, ctx.env as NodeJS.ProcessEnv);
    if (!opened && !optBool(opts, "json"))
      ctx.err("no browser could be started here: open the link above in one (it works once, for 5 minutes)");
    return 0;
  },
};
