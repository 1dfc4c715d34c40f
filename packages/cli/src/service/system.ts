/**
 * Hardened mode: `sudo loxmcp service install|uninstall|start|stop|status --system`. The daemon
 * runs as its own system user (`loxmcp`), so the person's account — and any agent with a shell
 * running as the person — can use the socket but cannot read the credentials, the tokens or the
 * policy (layout in @loxmcp/common's system.ts).
 *
 * Installing is a list of steps (`installSteps`): create the user and group, put the person into
 * the group, lay out the directories, move the per-user config and tokens over (`--migrate`),
 * write the unit (or LaunchDaemon plist) and enable it. `--print` renders the same steps as the
 * shell script they amount to (`renderScript`); `runSteps` carries them out. `--root PREFIX`
 * lays everything out under PREFIX (tests, packagers) and never starts anything.
 *
 * Here: the service itself (its unit or plist, the checks before a change, install, uninstall,
 * start, stop, state). The steps are planned in system/plan.ts, printed by system/script.ts and
 * carried out by system/run.ts; users and groups are looked up in system/accounts.ts.
 */
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  DAEMON_NODE_FLAGS,
  pidAlive,
  SYSTEM_LAUNCHD_LABEL,
  SYSTEM_UNIT,
  type SystemLayout,
  systemLayout,
  systemStartHint,
  systemStopHint,
} from "@loxmcp/common";
import { CliError } from "../command.js";
import { templatePath } from "../locate.js";
import { mustRun, renderTemplate, runTool, type ServiceState } from "./index.js";
import { xmlEscape } from "./launchd.js";
import { passwdEntry } from "./system/accounts.js";
import {
  installSteps,
  isPrefixed,
  migrations,
  personDirs,
  runnableProblem,
  type Step,
  type SystemServiceOptions,
  uninstallSteps,
} from "./system/plan.js";
import { runSteps } from "./system/run.js";
import { renderScript } from "./system/script.js";
import { systemdQuote } from "./systemd.js";

export class SystemService {
  readonly kind: string;
  /** Where files go (under --root). */
  readonly layout: SystemLayout;
  /** The paths the service runs with once the prefix is "/" (what goes into the unit / plist). */
  readonly live: SystemLayout;
  readonly file: string;

  constructor(private readonly o: SystemServiceOptions) {
    this.kind = o.platform === "darwin" ? "launchd (LaunchDaemon)" : "systemd (system unit)";
    this.layout = systemLayout(o.env, o.platform);
    this.live = systemLayout({}, o.platform);
    this.file = this.layout.serviceFile;
  }

  private get prefixed(): boolean {
    return isPrefixed(this.layout);
  }

  /** The unit (Linux) or LaunchDaemon plist (macOS) for this installation. */
  render(): string {
    const u = this.o.daemonUser;
    if (this.o.platform === "darwin") {
      return renderTemplate(templatePath(this.o.env, "launchd/com.loxmcp.daemon.system.plist.in"), {
        LABEL: SYSTEM_LAUNCHD_LABEL,
        USER: xmlEscape(u),
        GROUP: xmlEscape(u),
        NODE: xmlEscape(this.o.nodePath),
        NODE_FLAGS: DAEMON_NODE_FLAGS.map((f) => `\n    <string>${xmlEscape(f)}</string>`).join(""),
        DAEMON_BIN: xmlEscape(this.o.daemonBin),
        STDOUT_PATH: xmlEscape(join(this.live.log, "launchd.stdout.log")),
        STDERR_PATH: xmlEscape(join(this.live.log, "launchd.stderr.log")),
      });
    }
    return renderTemplate(templatePath(this.o.env, "systemd/loxmcpd-system.service.in"), {
      USER: systemdQuote(u),
      GROUP: systemdQuote(u),
      EXEC_START: [this.o.nodePath, ...DAEMON_NODE_FLAGS, this.o.daemonBin]
        .map((w) => systemdQuote(w, { dollar: true }))
        .join(" "),
    });
  }

  isInstalled(): boolean {
    return existsSync(this.file);
  }

  /** The steps of `install --system` (also what --print shows). */
  installSteps(): Step[] {
    return installSteps(this.o, this.layout, () => this.render());
  }

  /** The steps of `uninstall --system`. */
  uninstallSteps(): Step[] {
    return uninstallSteps(this.o, this.layout);
  }

  // ---------------------------------------------------------------- --print

  /** The steps as the shell script they amount to (`--print`): every file, mode and command. */
  renderScript(steps: Step[], action: "install" | "uninstall"): string {
    return renderScript(steps, action, this.o, this.layout);
  }

  // ---------------------------------------------------------------- doing it

  /** Checks what must hold before anything is changed; throws a CliError naming the fix. */
  preflight(action: "install" | "uninstall"): void {
    if (typeof process.getuid === "function" && process.getuid() !== 0) {
      throw new CliError(
        "ROOT_REQUIRED",
        `\`loxmcp service ${action} --system\` changes users and system directories: run it with sudo (\`--print\` shows what it does without changing anything)`,
      );
    }
    const { person, daemonUser: u } = this.o;
    if (u === "root" || (person !== undefined && u === person)) {
      throw new CliError(
        "BAD_USER",
        `the daemon needs a user of its own, not ${u}: leave out --daemon-user`,
        2,
      );
    }
    if (action === "uninstall") {
      if ((this.o.migrate || this.o.purge) && person && !passwdEntry(person))
        throw new CliError("NO_SUCH_USER", `there is no user ${person}`, 2);
      if (this.o.migrate && !person)
        throw new CliError(
          "PERSON_REQUIRED",
          "--migrate moves the files back to a person: name them with --user NAME",
          2,
        );
      return;
    }
    if (!person || person === "root") {
      throw new CliError(
        "PERSON_REQUIRED",
        "name the person whose MCP clients use the daemon with --user NAME (sudo sets SUDO_USER when run from their account): only members of its group may reach the socket",
        2,
      );
    }
    if (!passwdEntry(person))
      throw new CliError("NO_SUCH_USER", `there is no user ${person}: check --user`, 2);
    const hidden = runnableProblem(this.o);
    if (hidden && !this.prefixed) throw new CliError("NOT_RUNNABLE", hidden);
    if (this.o.migrate) {
      const pp = personDirs(this.o);
      const lock = pp ? readLock(pp.runtimeLock) : undefined;
      if (lock !== undefined && pidAlive(lock)) {
        throw new CliError(
          "PER_USER_DAEMON_RUNNING",
          `${person}'s per-user daemon is running (pid ${lock}) and holds the database: as ${person}, run \`loxmcp stop\` (and \`loxmcp service uninstall\` if it is a service), then this again`,
        );
      }
      for (const m of migrations(this.o, this.layout)) {
        if (existsSync(m.to))
          throw new CliError(
            "ALREADY_THERE",
            `--migrate would replace ${m.to}, which exists: move it away first (or leave out --migrate)`,
          );
      }
    }
  }

  /** Carries out `steps`; returns what was done, one line each. */
  runSteps(steps: Step[], step: (what: string) => void = () => {}): string[] {
    return runSteps(steps, this.o.platform, step);
  }

  /** `install --system`: preflight, then every step; the unit is removed again if enabling fails. */
  install(step: (what: string) => void = () => {}): string[] {
    this.preflight("install");
    const steps = this.installSteps();
    const enable = steps.filter((s) => s.kind === "run");
    const lay = steps.filter((s) => s.kind !== "run");
    const done = this.runSteps(lay, step);
    try {
      done.push(...this.runSteps(enable, step));
    } catch (err) {
      rmSync(this.file, { force: true });
      if (this.o.platform === "linux" && !this.prefixed) runTool("systemctl", ["daemon-reload"]);
      throw err;
    }
    const u = this.o.daemonUser;
    if (!this.prefixed) {
      done.push(
        `next: \`sudo loxmcp init --system\` (credentials, unless --migrate brought them), \`sudo loxmcp pin set\` (the approval PIN), then ${this.o.person} logs in again (group ${u}) and \`loxmcp status\` says "hardened"`,
      );
    }
    return done;
  }

  uninstall(step: (what: string) => void = () => {}): string[] {
    this.preflight("uninstall");
    const done = this.runSteps(this.uninstallSteps(), step);
    if (!this.o.migrate && !this.o.purge) {
      done.push(
        `kept ${this.layout.config}, ${this.layout.state}, ${this.layout.log} and the user ${this.o.daemonUser}: \`--migrate --user NAME\` moves the config and tokens back to that person, \`--purge\` removes them and the user`,
      );
    }
    return done;
  }

  start(): string[] {
    if (this.o.platform === "darwin") {
      mustRun(
        "launchctl",
        ["kickstart", `system/${SYSTEM_LAUNCHD_LABEL}`],
        "is it installed? `sudo loxmcp service install --system`",
      );
    } else mustRun("systemctl", ["start", SYSTEM_UNIT], "see `systemctl status loxmcpd`");
    return [`started the system daemon (${systemStartHint(this.o.platform).replace(/^sudo /, "")})`];
  }

  stop(): string[] {
    if (this.o.platform === "darwin") {
      mustRun("launchctl", ["kill", "SIGTERM", `system/${SYSTEM_LAUNCHD_LABEL}`], "is it loaded?");
    } else mustRun("systemctl", ["stop", SYSTEM_UNIT], "see `systemctl status loxmcpd`");
    return [`stopped the system daemon (${systemStopHint(this.o.platform).replace(/^sudo /, "")})`];
  }

  state(): ServiceState {
    const installed = this.isInstalled();
    try {
      if (this.o.platform === "darwin") {
        const r = runTool("launchctl", ["print", `system/${SYSTEM_LAUNCHD_LABEL}`]);
        if (r.status !== 0)
          return { installed, active: false, detail: installed ? "installed, not loaded" : "not installed" };
        const st = /^\s*state = (.+)$/m.exec(r.stdout)?.[1]?.trim() ?? "loaded";
        return { installed, active: st === "running", detail: `loaded, ${st}` };
      }
      const a = runTool("systemctl", ["is-active", SYSTEM_UNIT]);
      const e = runTool("systemctl", ["is-enabled", SYSTEM_UNIT]);
      const act = a.stdout.trim();
      if (act && !/failed to connect|not been booted|no such/i.test(a.stderr)) {
        return { installed, active: act === "active", detail: `${e.stdout.trim() || "unknown"}, ${act}` };
      }
      return {
        installed,
        active: undefined,
        detail: `${installed ? "installed" : "not installed"} (systemd not reachable)`,
      };
    } catch {
      return {
        installed,
        active: undefined,
        detail: `${installed ? "installed" : "not installed"} (no service manager)`,
      };
    }
  }
}

function readLock(file: string): number | undefined {
  try {
    const v = Number(readFileSync(file, "utf8").trim());
    return Number.isInteger(v) && v > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}
