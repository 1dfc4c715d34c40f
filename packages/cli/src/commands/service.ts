/**
 * `loxmcp service install|uninstall|start|stop|status [--print] [--platform linux|darwin]`:
 * the daemon as a systemd user unit (Linux) or a launchd LaunchAgent (macOS). Never needs root.
 */
import { CliError, type CommandContext, type CommandSpec, optBool, optString } from "../command.js";
import { daemonBin } from "../locate.js";
import {
  currentPlatform,
  defaultServiceOptions,
  type ServicePlatform,
  servicePlatform,
} from "../service/index.js";
import { fetchStatus } from "./status.js";
import { stopDaemon } from "./stop.js";

const ACTIONS = ["install", "uninstall", "start", "stop", "status"] as const;

export function platformFor(ctx: CommandContext, override?: string, sandbox = true): ServicePlatform {
  const platform = currentPlatform(override);
  return servicePlatform(platform, {
    ...defaultServiceOptions(ctx.env, ctx.paths, daemonBin(ctx.env)),
    sandbox,
  });
}

export const serviceCommand: CommandSpec = {
  name: "service",
  description: "install/uninstall/start/stop/status the daemon as a user service (systemd or launchd)",
  arguments: [{ name: "action", description: ACTIONS.join("|"), required: true, choices: ACTIONS }],
  options: [
    {
      flags: "--print",
      description: "print the unit/plist for this installation without touching the system",
    },
    {
      flags: "--platform <platform>",
      description: "render for this platform instead of the current one",
      choices: ["linux", "darwin"],
    },
    {
      flags: "--no-sandbox",
      description:
        "systemd: leave out the file-system sandbox (for systems where user units fail with status=226/NAMESPACE)",
    },
    {
      flags: "--allow-root",
      description: "allow `install` as root (it installs for root's own user manager)",
    },
  ],
  helpAfter: `
Linux: ~/.config/systemd/user/loxmcpd.service, then systemctl --user enable --now.
macOS: ~/Library/LaunchAgents/com.loxmcp.daemon.plist, then launchctl bootstrap gui/$UID.`,
  async run(ctx, { args, opts }) {
    const action = args[0] as (typeof ACTIONS)[number];
    const svc = platformFor(ctx, optString(opts, "platform"), opts.sandbox !== false);
    if (optBool(opts, "print")) {
      ctx.out(svc.render().replace(/\n$/, ""));
      return 0;
    }
    if (optString(opts, "platform") && optString(opts, "platform") !== process.platform) {
      throw new CliError(
        "WRONG_PLATFORM",
        `--platform ${optString(opts, "platform")} only works with --print on this ${process.platform} machine`,
        2,
      );
    }
    switch (action) {
      case "install": {
        if (typeof process.getuid === "function" && process.getuid() === 0 && !optBool(opts, "allowRoot")) {
          throw new CliError(
            "ROOT_REFUSED",
            "refusing to install the service as root: loxmcp is a per-user daemon; run `loxmcp service install` as the user whose MCP clients use it (or pass --allow-root if root really is that user)",
          );
        }
        const progress = ctx.progress();
        try {
          progress.step("looking for a running daemon");
          const s = await fetchStatus(ctx);
          const outside = s.state !== "down" && svc.state().active !== true;
          // install first: if the service manager is unusable, the running daemon is left alone
          for (const l of svc.install((what) => progress.step(what))) ctx.out(l);
          if (outside) {
            // the service's daemon found this one live and stepped aside (exit 0): hand over
            ctx.out(`handing over from the daemon started outside the service (pid ${s.pid ?? "?"})`);
            progress.step(`stopping the daemon started outside the service (pid ${s.pid ?? "?"})`);
            await stopDaemon(ctx, 15_000);
            progress.step(`starting the ${svc.kind} service`);
            for (const l of svc.start()) ctx.out(l);
          }
        } finally {
          progress.stop();
        }
        return 0;
      }
      case "uninstall":
        for (const l of svc.uninstall()) ctx.out(l);
        return 0;
      case "start":
        if (!svc.isInstalled())
          throw new CliError(
            "NOT_INSTALLED",
            `the service is not installed (${svc.file}); run \`loxmcp service install\` (or \`loxmcp start\` without a service)`,
          );
        for (const l of svc.start()) ctx.out(l);
        return 0;
      case "stop":
        if (!svc.isInstalled())
          throw new CliError(
            "NOT_INSTALLED",
            `the service is not installed (${svc.file}); stop a daemon started by a client with \`loxmcp stop\``,
          );
        for (const l of svc.stop()) ctx.out(l);
        return 0;
      case "status": {
        const st = svc.state();
        ctx.out(`${svc.kind}: ${st.detail}`);
        ctx.out(`file: ${svc.file}${st.installed ? "" : " (absent)"}`);
        return st.installed && st.active ? 0 : 1;
      }
      default:
        throw new CliError("USAGE", `unknown action ${String(action)}; use one of ${ACTIONS.join(", ")}`, 2);
    }
  },
};
