/** macOS: a LaunchAgent `~/Library/LaunchAgents/com.loxmcp.daemon.plist`, managed with `launchctl`. */
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { DAEMON_NODE_FLAGS, ensurePrivateDir } from "@loxmcp/common";
import { templatePath } from "../locate.js";
import {
  mustRun,
  renderTemplate,
  runTool,
  type ServiceOptions,
  type ServicePlatform,
  type ServiceState,
  writeThenEnable,
} from "./index.js";

export const LAUNCHD_LABEL = "com.loxmcp.daemon";

/** Escapes text for XML character data. */
export function xmlEscape(s: string): string {
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

export class LaunchdService implements ServicePlatform {
  readonly kind = "launchd";
  readonly file: string;

  constructor(private readonly o: ServiceOptions) {
    this.file = join(o.home, "Library", "LaunchAgents", `${LAUNCHD_LABEL}.plist`);
  }

  private get domain(): string {
    return `gui/${this.o.uid}`;
  }

  private get target(): string {
    return `${this.domain}/${LAUNCHD_LABEL}`;
  }

  render(): string {
    const env = this.o.env;
    const vars: string[] = [];
    for (const key of ["LOXMCP_HOME", "LOXMCP_SOCKET"]) {
      const v = env[key];
      if (v) vars.push(`    <key>${key}</key>\n    <string>${xmlEscape(v)}</string>`);
    }
    const envBlock = vars.length
      ? `  <key>EnvironmentVariables</key>\n  <dict>\n${vars.join("\n")}\n  </dict>`
      : "";
    return renderTemplate(templatePath(env, "launchd/com.loxmcp.daemon.plist.in"), {
      LABEL: LAUNCHD_LABEL,
      NODE: xmlEscape(this.o.nodePath),
      NODE_FLAGS: DAEMON_NODE_FLAGS.map((f) => `\n    <string>${xmlEscape(f)}</string>`).join(""),
      DAEMON_BIN: xmlEscape(this.o.daemonBin),
      STDOUT_PATH: xmlEscape(join(this.o.paths.log, "launchd.stdout.log")),
      STDERR_PATH: xmlEscape(join(this.o.paths.log, "launchd.stderr.log")),
      ENVIRONMENT_VARIABLES: envBlock,
    });
  }

  isInstalled(): boolean {
    return existsSync(this.file);
  }

  private loaded(): boolean {
    return runTool("launchctl", ["print", this.target]).status === 0;
  }

  install(step: (what: string) => void = () => {}): string[] {
    const content = this.render();
    const p = this.o.paths;
    for (const d of [p.config, p.state, p.log]) ensurePrivateDir(d);
    const lines = [`wrote ${this.file}`];
    const hadPrevious = this.isInstalled();
    step(`writing ${this.file}`);
    writeThenEnable(
      this.file,
      content,
      () => {
        if (this.loaded()) {
          step(`launchctl bootout ${this.target}`);
          runTool("launchctl", ["bootout", this.target]);
          lines.push(`unloaded the previous ${LAUNCHD_LABEL}`);
        }
        step(`launchctl bootstrap ${this.domain}`);
        mustRun("launchctl", ["bootstrap", this.domain, this.file], "run it from a logged-in GUI session");
      },
      // the previous plist is back in place: load it again as it was (best effort)
      () => {
        if (hadPrevious) runTool("launchctl", ["bootstrap", this.domain, this.file]);
      },
    );
    lines.push(`loaded ${LAUNCHD_LABEL} (launchctl bootstrap ${this.domain}); it starts at login`);
    return lines;
  }

  uninstall(): string[] {
    const lines: string[] = [];
    if (this.loaded()) {
      runTool("launchctl", ["bootout", this.target]);
      lines.push(`unloaded ${LAUNCHD_LABEL}`);
    }
    if (this.isInstalled()) {
      rmSync(this.file, { force: true });
      lines.push(`removed ${this.file}`);
    } else {
      lines.push(`${LAUNCHD_LABEL} is not installed (${this.file} does not exist)`);
    }
    return lines;
  }

  start(): string[] {
    if (!this.loaded()) {
      mustRun("launchctl", ["bootstrap", this.domain, this.file], "run `loxmcp service install` first");
      return [`loaded and started ${LAUNCHD_LABEL}`];
    }
    mustRun("launchctl", ["kickstart", this.target], `see \`launchctl print ${this.target}\``);
    return [`started ${LAUNCHD_LABEL}`];
  }

  stop(): string[] {
    // SIGTERM: the daemon exits 0, and KeepAlive{SuccessfulExit=false} leaves it stopped.
    mustRun("launchctl", ["kill", "SIGTERM", this.target], `see \`launchctl print ${this.target}\``);
    return [`stopped ${LAUNCHD_LABEL}`];
  }

  state(): ServiceState {
    const installed = this.isInstalled();
    try {
      const r = runTool("launchctl", ["print", this.target]);
      if (r.status !== 0)
        return { installed, active: false, detail: installed ? "installed, not loaded" : "not installed" };
      const st = /^\s*state = (.+)$/m.exec(r.stdout)?.[1]?.trim() ?? "loaded";
      return { installed, active: st === "running", detail: `loaded, ${st}` };
    } catch {
      return {
        installed,
        active: undefined,
        detail: `${installed ? "installed" : "not installed"} (launchctl not available)`,
      };
    }
  }
}
