/**
 * `loxmcp service install|uninstall|start|stop|status [--print] [--platform linux|darwin]`:
 * the daemon as a systemd user unit (Linux) or a launchd LaunchAgent (macOS). Never needs root.
 * With `--system` (hardened mode, as root): the daemon as a system service running as its own
 * user (service/system.ts).
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { SYSTEM_USER } from "@loxmcp/common";
import { CliError, type CommandContext, type CommandSpec, optBool, optString } from "../command.js";
import { daemonBin } from "../locate.js";
import {
  currentPlatform,
  defaultServiceOptions,
  type ServicePlatform,
  servicePlatform,
} from "../service/index.js";
import { SystemService } from "../service/system.js";
import { fetchStatus } from "./status.js";
import { stopDaemon } from "./stop.js";

const ACTIONS = ["install", "uninstall", "start", "stop", "status"] as const;

/** Options that only mean something with --system. */
const SYSTEM_ONLY = ["user", "daemonUser", "migrate", "purge", "root"] as const;

/** The system daemon's service (hardened mode) for these options. */
export function systemServiceFor(ctx: CommandContext, opts: Record<string, unknown>): SystemService {
  const root = optString(opts, "root");
  const env = root ? { ...ctx.env, LOXMCP_SYSTEM_ROOT: resolve(root) } : ctx.env;
  return new SystemService({
    env,
    platform: currentPlatform(optString(opts, "platform")),
    daemonUser: optString(opts, "daemonUser") ?? SYSTEM_USER,
    person: optString(opts, "user") ?? (ctx.env.SUDO_USER || undefined),
    migrate: optBool(opts, "migrate"),
    purge: optBool(opts, "purge"),
    nodePath: process.execPath,
    daemonBin: daemonBin(ctx.env),
  });
}

async function runSystem(
  ctx: CommandContext,
  action: (typeof ACTIONS)[number],
  opts: Record<string, unknown>,
): Promise<number> {
  const svc = systemServiceFor(ctx, opts);
  if (optBool(opts, "print")) {
    const text =
      action === "install"
        ? svc.renderScript(svc.installSteps(), "install")
        : action === "uninstall"
          ? svc.renderScript(svc.uninstallSteps(), "uninstall")
          : svc.render();
    ctx.out(text.replace(/\n$/, ""));
    return 0;
  }
  refuseForeignPlatform(opts);
  switch (action) {
    case "install":
    case "uninstall": {
      const progress = ctx.progress();
      try {
        const lines =
          action === "install"
            ? svc.install((w) => progress.step(w))
            : svc.uninstall((w) => progress.step(w));
        for (const l of lines) ctx.out(l);
      } finally {
        progress.stop();
      }
      return 0;
    }
    case "start":
    case "stop":
      if (!svc.isInstalled())
        throw new CliError(
          "NOT_INSTALLED",
          `the system daemon is not installed (${svc.file}); \`sudo loxmcp service install --system\` installs it`,
        );
      for (const l of action === "start" ? svc.start() : svc.stop()) ctx.out(l);
      return 0;
    case "status": {
      const st = svc.state();
      ctx.out(`${svc.kind}: ${st.detail}`);
      ctx.out(`file: ${svc.file}${st.installed ? "" : " (absent)"}`);
      return st.installed && st.active ? 0 : 1;
    }
  }
  return 2;
}

export function platformFor(ctx: CommandContext, override?: string, sandbox = true): ServicePlatform {
  const platform = currentPlatform(override);
  return servicePlatform(platform, {
    ...defaultServiceOptions(ctx.env, ctx.paths, daemonBin(ctx.env)),
    sandbox,
  });
}

/** `--platform` other than this machine's only renders files (`--print`); it never installs. */
function refuseForeignPlatform(opts: Record<string, unknown>): void {
  const platform = optString(opts, "platform");
  if (platform && platform !== process.platform) {
    throw new CliError(
      "WRONG_PLATFORM",
      `--platform ${platform} only works with --print on this ${process.platform} machine`,
      2,
    );
  }
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
    {
      flags: "--system",
      description:
        "hardened mode (as root): the daemon as a system service running as its own user, which the person's account cannot read (docs/hardened.md)",
    },
    {
      flags: "--user <name>",
      description:
        "--system: the person whose MCP clients use the daemon (joins its group; default: sudo's SUDO_USER)",
    },
    {
      flags: "--daemon-user <name>",
      description: "--system: the system user and group the daemon runs as (default loxmcp)",
    },
    {
      flags: "--migrate",
      description:
        "--system: install moves the person's per-user config and tokens over; uninstall moves them back",
    },
    {
      flags: "--purge",
      description: "--system uninstall: also remove the config, the data, the user and the group",
    },
    {
      flags: "--root <prefix>",
      description:
        "--system: lay everything out under this directory instead of / (tests, packagers); starts nothing",
    },
  ],
  helpAfter: `
Linux: ~/.config/systemd/user/loxmcpd.service, then systemctl --user enable --now.
macOS: ~/Library/LaunchAgents/com.loxmcp.daemon.plist, then launchctl bootstrap gui/$UID.
Hardened mode: sudo loxmcp service install --system [--user NAME] [--migrate] (--print shows
every file, mode and command first): /etc/loxmcp, /var/lib/loxmcp, /var/log/loxmcp, /run/loxmcp
and /etc/systemd/system/loxmcpd.service (macOS: /Library/LaunchDaemons/com.loxmcp.daemon.plist).`,
  async run(ctx, { args, opts }) {
    const action = args[0] as (typeof ACTIONS)[number];
    if (optBool(opts, "system")) return runSystem(ctx, action, opts);
    const stray = SYSTEM_ONLY.filter((k) => opts[k] !== undefined && opts[k] !== false);
    if (stray.length > 0) {
      const flag = (k: string) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
      throw new CliError(
        "USAGE",
        `${stray.map(flag).join(", ")} only go${stray.length === 1 ? "es" : ""} with --system`,
        2,
      );
    }
    const svc = platformFor(ctx, optString(opts, "platform"), opts.sandbox !== false);
    if (optBool(opts, "print")) {
      ctx.out(svc.render().replace(/\n$/, ""));
      return 0;
    }
    refuseForeignPlatform(opts);
    switch (action) {
      case "install": {
        if (ctx.paths.system) {
          throw new CliError(
            "SYSTEM_INSTALLED",
            `the system daemon (hardened mode) is installed (${ctx.paths.system.serviceFiles.find((f) => existsSync(f)) ?? ctx.paths.socket}): MCP clients use it, and a per-user service would never be used; remove it first with \`sudo loxmcp service uninstall --system\` to go back to per-user mode`,
          );
        }
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
