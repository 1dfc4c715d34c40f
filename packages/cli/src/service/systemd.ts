/** Linux: a systemd USER unit `~/.config/systemd/user/loxmcpd.service`, managed with `systemctl --user`. */
import { existsSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
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

export const UNIT_NAME = "loxmcpd.service";

/** Quotes one word for a unit file (systemd's shell-like splitting), `%` escaped as a specifier. */
export function systemdQuote(word: string, opts: { dollar?: boolean } = {}): string {
  let w = word.replace(/%/g, "%%");
  if (opts.dollar) w = w.replace(/\$/g, "$$$$");
  if (/^[A-Za-z0-9_@+=:,./%$-]+$/.test(w)) return w;
  return `"${w.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}

function underTmp(p: string): boolean {
  return p === "/tmp" || p.startsWith("/tmp/") || p === "/var/tmp" || p.startsWith("/var/tmp/");
}

export class SystemdService implements ServicePlatform {
  readonly kind = "systemd";
  readonly file: string;

  constructor(private readonly o: ServiceOptions) {
    const configHome = o.env.XDG_CONFIG_HOME || join(o.home, ".config");
    this.file = join(configHome, "systemd", "user", UNIT_NAME);
  }

  /** The runtime dir is `$XDG_RUNTIME_DIR/loxmcp`: let systemd create it (RuntimeDirectory=). */
  private runtimeIsXdg(): boolean {
    const xdg = this.o.env.XDG_RUNTIME_DIR;
    return !this.o.env.LOXMCP_HOME && !!xdg && this.o.paths.runtime === join(xdg, "loxmcp");
  }

  private writablePaths(): string[] {
    const p = this.o.paths;
    const dirs = [p.config, p.state, p.log];
    if (!this.runtimeIsXdg()) dirs.push(p.runtime);
    const socketDir = dirname(p.socket);
    if (!dirs.includes(socketDir) && !(this.runtimeIsXdg() && socketDir === p.runtime)) dirs.push(socketDir);
    return [...new Set(dirs)];
  }

  render(): string {
    const env = this.o.env;
    const envLines: string[] = [];
    for (const key of ["LOXMCP_HOME", "LOXMCP_SOCKET"]) {
      const v = env[key];
      if (v) envLines.push(`Environment=${systemdQuote(`${key}=${v}`)}`);
    }
    const writable = this.writablePaths();
    const privateTmp = writable.some(underTmp)
      ? "# PrivateTmp=yes left out: loxmcp's files live under /tmp, which clients must see."
      : "PrivateTmp=yes";
    const text = renderTemplate(templatePath(env, "systemd/loxmcpd.service.in"), {
      EXEC_START: [this.o.nodePath, ...DAEMON_NODE_FLAGS, this.o.daemonBin]
        .map((w) => systemdQuote(w, { dollar: true }))
        .join(" "),
      ENVIRONMENT: envLines.join("\n"),
      PRIVATE_TMP: privateTmp,
      // "-": a missing directory is not an error (install creates them first anyway)
      READ_WRITE_PATHS: `ReadWritePaths=${writable.map((d) => systemdQuote(`-${d}`)).join(" ")}`,
      RUNTIME_DIRECTORY: this.runtimeIsXdg() ? "RuntimeDirectory=loxmcp\nRuntimeDirectoryMode=0700" : "",
    });
    if (this.o.sandbox !== false) return text;
    // --no-sandbox: for systems where user units cannot use namespaces (status=226/NAMESPACE)
    return text.replace(
      /^(PrivateUsers|PrivateTmp|ProtectSystem|ProtectHome|ReadWritePaths)=/gm,
      "# (left out by --no-sandbox) $1=",
    );
  }

  isInstalled(): boolean {
    return existsSync(this.file);
  }

  install(step: (what: string) => void = () => {}): string[] {
    const content = this.render();
    for (const d of this.writablePaths()) ensurePrivateDir(d);
    const hint =
      "is the systemd user manager running (`systemctl --user status`)? Without it use `loxmcp start`";
    const hadPrevious = this.isInstalled();
    step(`writing ${this.file}`);
    writeThenEnable(
      this.file,
      content,
      () => {
        step("systemctl --user daemon-reload");
        mustRun("systemctl", ["--user", "daemon-reload"], hint);
        step(`systemctl --user enable --now ${UNIT_NAME}`);
        mustRun("systemctl", ["--user", "enable", "--now", UNIT_NAME], hint);
      },
      // a new unit: enable may have linked it before --now failed; then forget it (a previous
      // unit is back in place as it was, enabled or not)
      () => {
        if (!hadPrevious) runTool("systemctl", ["--user", "disable", UNIT_NAME]);
        runTool("systemctl", ["--user", "daemon-reload"]);
      },
    );
    return [
      `wrote ${this.file}`,
      `enabled and started ${UNIT_NAME} (systemctl --user enable --now ${UNIT_NAME})`,
      "to keep it running while you are logged out: loginctl enable-linger",
    ];
  }

  uninstall(): string[] {
    const lines: string[] = [];
    if (this.isInstalled()) {
      const r = runTool("systemctl", ["--user", "disable", "--now", UNIT_NAME]);
      lines.push(r.status === 0 ? `stopped and disabled ${UNIT_NAME}` : `${UNIT_NAME} was not enabled`);
      rmSync(this.file, { force: true });
      lines.push(`removed ${this.file}`);
      runTool("systemctl", ["--user", "daemon-reload"]);
    } else {
      lines.push(`${UNIT_NAME} is not installed (${this.file} does not exist)`);
    }
    return lines;
  }

  start(): string[] {
    mustRun("systemctl", ["--user", "start", UNIT_NAME], `see \`systemctl --user status ${UNIT_NAME}\``);
    return [`started ${UNIT_NAME}`];
  }

  stop(): string[] {
    mustRun("systemctl", ["--user", "stop", UNIT_NAME], `see \`systemctl --user status ${UNIT_NAME}\``);
    return [`stopped ${UNIT_NAME}`];
  }

  state(): ServiceState {
    const installed = this.isInstalled();
    let active: boolean | undefined;
    let detail = installed ? "installed" : "not installed";
    try {
      const a = runTool("systemctl", ["--user", "is-active", UNIT_NAME]);
      const e = runTool("systemctl", ["--user", "is-enabled", UNIT_NAME]);
      const act = a.stdout.trim();
      const en = e.stdout.trim();
      if (act && !/failed to connect|no such/i.test(a.stderr)) {
        active = act === "active";
        detail = `${en || "unknown"}, ${act}`;
      } else {
        detail += " (systemd user manager not reachable)";
      }
    } catch {
      detail += " (systemctl not available)";
    }
    return { installed, active, detail };
  }
}
