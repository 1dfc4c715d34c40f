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
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import {
  DAEMON_NODE_FLAGS,
  type Env,
  pidAlive,
  SYSTEM_LAUNCHD_LABEL,
  SYSTEM_UNIT,
  type SystemLayout,
  type SystemPlatform,
  systemLayout,
  systemStartHint,
  systemStopHint,
} from "@loxmcp/common";
import { CliError } from "../command.js";
import { templatePath } from "../locate.js";
import { mustRun, renderTemplate, runTool, type ServiceState } from "./index.js";
import { xmlEscape } from "./launchd.js";
import { systemdQuote } from "./systemd.js";

export interface SystemServiceOptions {
  env: Env;
  platform: SystemPlatform;
  /** The daemon's user and group (default `loxmcp`). */
  daemonUser: string;
  /** The person who joins the group (SUDO_USER or --user); undefined: not known (only --print). */
  person: string | undefined;
  /** Move the person's per-user config and tokens over (install) or back (uninstall). */
  migrate: boolean;
  /** uninstall: also remove the data, the user and the group. */
  purge: boolean;
  nodePath: string;
  daemonBin: string;
}

export type Step =
  | { kind: "group"; name: string }
  | { kind: "user"; name: string; group: string; home: string }
  | { kind: "member"; user: string; group: string }
  | { kind: "leave"; user: string; group: string }
  | { kind: "deluser"; name: string }
  | { kind: "delgroup"; name: string }
  | { kind: "dir"; path: string; mode: number; owner: string; group: string; why: string }
  | {
      kind: "file";
      path: string;
      mode: number;
      owner: string;
      group: string;
      content: string;
      why: string;
      /** Written only when missing (a starter config.json). */
      ifMissing?: boolean;
    }
  | { kind: "move"; from: string; to: string; mode: number; owner: string; group: string }
  | { kind: "remove"; path: string; why: string }
  | { kind: "run"; argv: string[]; why: string; mayFail?: boolean };

/** A user's uid, gid and home from /etc/passwd (undefined when not there). */
export function passwdEntry(name: string): { uid: number; gid: number; home: string } | undefined {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f[0] === name && f.length >= 6 && /^\d+$/.test(f[2] ?? "") && /^\d+$/.test(f[3] ?? "")) {
        return { uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? "" };
      }
    }
  } catch {
    // no /etc/passwd
  }
  const id = (flag: string) => {
    const r = spawnSync("id", [flag, name], { encoding: "utf8" });
    return r.status === 0 && /^\d+$/.test(r.stdout.trim()) ? Number(r.stdout.trim()) : undefined;
  };
  const uid = id("-u");
  const gid = id("-g");
  if (uid === undefined || gid === undefined) return undefined;
  return { uid, gid, home: process.platform === "darwin" ? `/Users/${name}` : `/home/${name}` };
}

function groupExists(name: string): boolean {
  try {
    return readFileSync("/etc/group", "utf8")
      .split("\n")
      .some((l) => l.split(":")[0] === name);
  } catch {
    return spawnSync("dscl", [".", "-read", `/Groups/${name}`], { stdio: "ignore" }).status === 0;
  }
}

function groupGid(name: string): number | undefined {
  try {
    for (const l of readFileSync("/etc/group", "utf8").split("\n")) {
      const f = l.split(":");
      if (f[0] === name && /^\d+$/.test(f[2] ?? "")) return Number(f[2]);
    }
  } catch {
    // ask the system below
  }
  const r = spawnSync("getent", ["group", name], { encoding: "utf8" });
  const gid = r.status === 0 ? r.stdout.split(":")[2] : undefined;
  return gid && /^\d+$/.test(gid) ? Number(gid) : undefined;
}

/** The person's per-user directories (env-paths' defaults for their home): what --migrate moves. */
export function personPaths(
  home: string,
  platform: SystemPlatform,
): { config: string; state: string; runtimeLock: string } {
  const config =
    platform === "darwin" ? join(home, "Library", "Preferences", "loxmcp") : join(home, ".config", "loxmcp");
  const state =
    platform === "darwin"
      ? join(home, "Library", "Application Support", "loxmcp")
      : join(home, ".local", "share", "loxmcp");
  return { config, state, runtimeLock: join(state, "daemon.lock") };
}

/** The files --migrate moves: [relative name, which directory] (the database with its WAL). */
const MIGRATED: ReadonlyArray<readonly [string, "config" | "state"]> = [
  [".env", "config"],
  ["config.json", "config"],
  ["loxmcp.db", "state"],
  ["loxmcp.db-wal", "state"],
  ["loxmcp.db-shm", "state"],
];

const STARTER_CONFIG = `${JSON.stringify({ policy: { mode: "confirm" } }, null, 2)}\n`;

/** Quotes one word for sh. */
export function shq(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

const octal = (m: number) => `0${m.toString(8).padStart(3, "0")}`;

function nologinShell(platform: SystemPlatform): string {
  if (platform === "darwin") return "/usr/bin/false";
  return ["/usr/sbin/nologin", "/sbin/nologin"].find((p) => existsSync(p)) ?? "/bin/false";
}

function underHomeOrTmp(p: string): boolean {
  return /^\/(home|root|Users|tmp|var\/tmp|run\/user)(\/|$)/.test(p);
}

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
    return this.layout.root !== "/";
  }

  private get rootGroup(): string {
    return this.o.platform === "darwin" ? "wheel" : "root";
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

  /** Why this installation cannot run as a system service (a path systemd would hide), if it cannot. */
  private runnableProblem(): string | undefined {
    const hidden = [this.o.nodePath, this.o.daemonBin].filter(underHomeOrTmp);
    if (hidden.length === 0) return undefined;
    return `the system daemon cannot run ${hidden.join(" and ")}: a home directory or /tmp is hidden from it (ProtectHome=, PrivateTmp=) and may not be readable by ${this.o.daemonUser}; install Node and loxmcp system-wide (e.g. \`sudo npm install -g loxmcp-<version>.tgz\`) and run this again`;
  }

  /** The steps of `install --system` (also what --print shows). */
  installSteps(): Step[] {
    const { daemonUser: u, person } = this.o;
    const L = this.layout;
    const steps: Step[] = [
      { kind: "group", name: u },
      { kind: "user", name: u, group: u, home: L.state },
    ];
    if (person) steps.push({ kind: "member", user: person, group: u });
    steps.push(
      {
        kind: "dir",
        path: L.config,
        mode: 0o755,
        owner: "root",
        group: this.rootGroup,
        why: `configuration: credentials (.env) and policy (config.json), each 0600 ${u}`,
      },
      {
        kind: "dir",
        path: L.state,
        mode: 0o700,
        owner: u,
        group: u,
        why: "state: database with the tokens, PIN hash, audit",
      },
      {
        kind: "dir",
        path: L.log,
        mode: 0o700,
        owner: u,
        group: u,
        why: "daemon.log (read it with `loxmcp logs`)",
      },
      {
        kind: "dir",
        path: L.runtime,
        mode: 0o750,
        owner: u,
        group: u,
        why: `the socket's directory: the daemon creates daemon.sock 0660 (group ${u} may connect) and admin.sock 0600 (root only)`,
      },
    );
    const moved = new Set<string>();
    if (this.o.migrate) {
      for (const m of this.migrations()) {
        steps.push({ kind: "move", from: m.from, to: m.to, mode: 0o600, owner: u, group: u });
        moved.add(m.to);
      }
    }
    const cfg = join(L.config, "config.json");
    if (!moved.has(cfg)) {
      steps.push({
        kind: "file",
        path: cfg,
        mode: 0o600,
        owner: u,
        group: u,
        content: STARTER_CONFIG,
        why: "the policy (kept when it exists; edit it as root)",
        ifMissing: true,
      });
    }
    steps.push({
      kind: "file",
      path: this.file,
      mode: 0o644,
      owner: "root",
      group: this.rootGroup,
      content: this.render(),
      why: this.o.platform === "darwin" ? "the LaunchDaemon" : "the system unit",
    });
    steps.push(...this.enableSteps());
    return steps;
  }

  /** What --migrate moves: the person's files that exist (only those). */
  private migrations(): Array<{ from: string; to: string }> {
    const pp = this.personDirs();
    if (!pp) return [];
    const out: Array<{ from: string; to: string }> = [];
    for (const [name, where] of MIGRATED) {
      const from = join(where === "config" ? pp.config : pp.state, name);
      if (existsSync(from))
        out.push({ from, to: join(where === "config" ? this.layout.config : this.layout.state, name) });
    }
    return out;
  }

  private personDirs(): ReturnType<typeof personPaths> | undefined {
    const p = this.o.person;
    if (!p) return undefined;
    const e = passwdEntry(p);
    return e ? personPaths(e.home, this.o.platform) : undefined;
  }

  private enableSteps(): Step[] {
    if (this.o.platform === "darwin") {
      return this.prefixed
        ? []
        : [{ kind: "run", argv: ["launchctl", "bootstrap", "system", this.file], why: "load and start it" }];
    }
    if (this.prefixed) {
      return [
        {
          kind: "run",
          argv: ["systemctl", `--root=${this.layout.root}`, "enable", SYSTEM_UNIT],
          why: "enable it in the image (nothing is started under --root)",
        },
      ];
    }
    return [
      { kind: "run", argv: ["systemctl", "daemon-reload"], why: "" },
      { kind: "run", argv: ["systemctl", "enable", "--now", SYSTEM_UNIT], why: "start it now and at boot" },
    ];
  }

  /** The steps of `uninstall --system`. */
  uninstallSteps(): Step[] {
    const { daemonUser: u, person } = this.o;
    const L = this.layout;
    const steps: Step[] = [];
    if (this.o.platform === "darwin") {
      if (!this.prefixed)
        steps.push({
          kind: "run",
          argv: ["launchctl", "bootout", `system/${SYSTEM_LAUNCHD_LABEL}`],
          why: "stop and unload it",
          mayFail: true,
        });
    } else if (this.prefixed) {
      steps.push({
        kind: "run",
        argv: ["systemctl", `--root=${L.root}`, "disable", SYSTEM_UNIT],
        why: "",
        mayFail: true,
      });
    } else {
      steps.push({
        kind: "run",
        argv: ["systemctl", "disable", "--now", SYSTEM_UNIT],
        why: "stop it",
        mayFail: true,
      });
    }
    steps.push({ kind: "remove", path: this.file, why: "the service file" });
    if (this.o.platform === "linux" && !this.prefixed)
      steps.push({ kind: "run", argv: ["systemctl", "daemon-reload"], why: "", mayFail: true });
    steps.push({ kind: "remove", path: L.runtime, why: "the socket's directory" });
    if (this.o.migrate) {
      const pp = this.personDirs();
      const who = person ?? "";
      if (pp) {
        for (const [name, where] of MIGRATED) {
          const from = join(where === "config" ? L.config : L.state, name);
          if (!existsSync(from)) continue;
          steps.push({
            kind: "move",
            from,
            to: join(where === "config" ? pp.config : pp.state, name),
            mode: 0o600,
            owner: who,
            group: who,
          });
        }
      }
    }
    if (this.o.migrate || this.o.purge) {
      for (const [path, why] of [
        [L.config, "configuration"],
        [L.state, "state (database)"],
        [L.log, "logs"],
      ] as const) {
        steps.push({ kind: "remove", path, why });
      }
    }
    if (this.o.purge) {
      if (person) steps.push({ kind: "leave", user: person, group: u });
      steps.push({ kind: "deluser", name: u }, { kind: "delgroup", name: u });
    }
    return steps;
  }

  // ---------------------------------------------------------------- --print

  /** The steps as the shell script they amount to (`--print`): every file, mode and command. */
  renderScript(steps: Step[], action: "install" | "uninstall"): string {
    const u = this.o.daemonUser;
    const lines = [
      "#!/bin/sh",
      `# loxmcp hardened mode: what \`sudo loxmcp service ${action} --system\` does, as the shell commands it`,
      `# amounts to. Nothing was changed (--print).${this.prefixed ? ` Everything is under --root ${this.layout.root}.` : ""}`,
      action === "install"
        ? `# The daemon runs as user ${u}; ${this.o.person ?? "the person (--user NAME, or sudo's SUDO_USER)"} joins group ${u} to reach its socket.`
        : "# The daemon's service and socket go away; MCP clients then start a per-user daemon again.",
      "set -e",
    ];
    for (const s of steps) lines.push(...this.scriptOf(s));
    if (action === "install") {
      lines.push(
        `# then the daemon creates ${this.layout.socket} (0660 ${u}:${u}) and ${this.layout.adminSocket} (0600 ${u}:${u})`,
      );
      if (!this.o.person)
        lines.push(`# usermod -a -G ${u} <person>   (pass --user NAME: nobody else may reach the socket)`);
      const hidden = this.runnableProblem();
      if (hidden) lines.push(`# WARNING: ${hidden}`);
    }
    return lines.join("\n");
  }

  private scriptOf(s: Step): string[] {
    const darwin = this.o.platform === "darwin";
    switch (s.kind) {
      case "group":
        return darwin
          ? [
              `dscl . -read /Groups/${shq(s.name)} >/dev/null 2>&1 || { gid=$(dscl . -list /Groups PrimaryGroupID | awk '$2>=300&&$2<400{u[$2]=1} END{for(i=300;i<400;i++) if(!(i in u)){print i; exit}}'); dscl . -create /Groups/${shq(s.name)} PrimaryGroupID "$gid"; }`,
            ]
          : [`getent group ${shq(s.name)} >/dev/null || groupadd --system ${shq(s.name)}`];
      case "user":
        return darwin
          ? [
              `id -u ${shq(s.name)} >/dev/null 2>&1 || { uid=$(dscl . -list /Users UniqueID | awk '$2>=300&&$2<400{u[$2]=1} END{for(i=300;i<400;i++) if(!(i in u)){print i; exit}}'); dscl . -create /Users/${shq(s.name)} UniqueID "$uid"; dscl . -create /Users/${shq(s.name)} PrimaryGroupID "$(dscl . -read /Groups/${shq(s.group)} PrimaryGroupID | awk '{print $2}')"; dscl . -create /Users/${shq(s.name)} UserShell /usr/bin/false; dscl . -create /Users/${shq(s.name)} NFSHomeDirectory ${shq(s.home)}; dscl . -create /Users/${shq(s.name)} IsHidden 1; }`,
            ]
          : [`id -u ${shq(s.name)} >/dev/null 2>&1 || ${this.useraddArgv(s).map(shq).join(" ")}`];
      case "member":
        return [
          `${this.memberArgv(s.user, s.group).map(shq).join(" ")}   # ${s.user} may reach the socket (after logging in again)`,
        ];
      case "leave":
        return [`${this.leaveArgv(s.user, s.group).map(shq).join(" ")} || true`];
      case "deluser":
        return darwin ? [`dscl . -delete /Users/${shq(s.name)}`] : [`userdel ${shq(s.name)}`];
      case "delgroup":
        return darwin
          ? [`dscl . -delete /Groups/${shq(s.name)} 2>/dev/null || true`]
          : [`getent group ${shq(s.name)} >/dev/null && groupdel ${shq(s.name)} || true`];
      case "dir":
        return [
          `install -d -m ${octal(s.mode)} -o ${shq(s.owner)} -g ${shq(s.group)} ${shq(s.path)}   # ${s.why}`,
        ];
      case "file": {
        const body = [
          `cat > ${shq(s.path)} <<'LOXMCP_EOF'`,
          ...s.content.replace(/\n$/, "").split("\n"),
          "LOXMCP_EOF",
          `chown ${shq(s.owner)}:${shq(s.group)} ${shq(s.path)} && chmod ${octal(s.mode)} ${shq(s.path)}   # ${s.why}`,
        ];
        if (!s.ifMissing) return [`mkdir -p ${shq(dirname(s.path))}`, ...body];
        return [`if [ ! -e ${shq(s.path)} ]; then`, ...body, "fi"];
      }
      case "move":
        return [
          `install -m ${octal(s.mode)} -o ${shq(s.owner)} -g ${shq(s.group)} ${shq(s.from)} ${shq(s.to)} && rm -f ${shq(s.from)}   # --migrate`,
        ];
      case "remove":
        return [`rm -rf ${shq(s.path)}   # ${s.why}`];
      case "run":
        return [`${s.argv.map(shq).join(" ")}${s.mayFail ? " || true" : ""}${s.why ? `   # ${s.why}` : ""}`];
    }
  }

  private useraddArgv(s: { name: string; group: string; home: string }): string[] {
    return [
      "useradd",
      "--system",
      "--gid",
      s.group,
      "--home-dir",
      s.home,
      "--no-create-home",
      "--shell",
      nologinShell(this.o.platform),
      "--comment",
      "loxmcp daemon (hardened mode)",
      s.name,
    ];
  }

  private memberArgv(user: string, group: string): string[] {
    return this.o.platform === "darwin"
      ? ["dseditgroup", "-o", "edit", "-a", user, "-t", "user", group]
      : ["usermod", "-a", "-G", group, user];
  }

  private leaveArgv(user: string, group: string): string[] {
    return this.o.platform === "darwin"
      ? ["dseditgroup", "-o", "edit", "-d", user, "-t", "user", group]
      : ["gpasswd", "-d", user, group];
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
    const hidden = this.runnableProblem();
    if (hidden && !this.prefixed) throw new CliError("NOT_RUNNABLE", hidden);
    if (this.o.migrate) {
      const pp = this.personDirs();
      const lock = pp ? readLock(pp.runtimeLock) : undefined;
      if (lock !== undefined && pidAlive(lock)) {
        throw new CliError(
          "PER_USER_DAEMON_RUNNING",
          `${person}'s per-user daemon is running (pid ${lock}) and holds the database: as ${person}, run \`loxmcp stop\` (and \`loxmcp service uninstall\` if it is a service), then this again`,
        );
      }
      for (const m of this.migrations()) {
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
    const done: string[] = [];
    const ids = (owner: string, group: string) => {
      const uid = owner === "root" ? 0 : passwdEntry(owner)?.uid;
      const gid = group === "root" || group === "wheel" ? 0 : (groupGid(group) ?? passwdEntry(group)?.gid);
      if (uid === undefined || gid === undefined)
        throw new CliError("NO_SUCH_USER", `cannot find user ${owner} or group ${group}`);
      return { uid, gid };
    };
    for (const s of steps) {
      switch (s.kind) {
        case "group":
          if (groupExists(s.name)) break;
          step(`creating group ${s.name}`);
          this.shOrRun(s);
          done.push(`created the system group ${s.name}`);
          break;
        case "user":
          if (passwdEntry(s.name)) {
            done.push(`the user ${s.name} exists`);
            break;
          }
          step(`creating user ${s.name}`);
          this.shOrRun(s);
          done.push(`created the system user ${s.name} (no login, home ${s.home})`);
          break;
        case "member":
          step(`adding ${s.user} to group ${s.group}`);
          mustRun(
            this.memberArgv(s.user, s.group)[0] as string,
            this.memberArgv(s.user, s.group).slice(1),
            `add ${s.user} to the group ${s.group} by hand`,
          );
          done.push(
            `added ${s.user} to group ${s.group}: ${s.user} must log in again before the socket can be reached`,
          );
          break;
        case "leave":
          runTool(this.leaveArgv(s.user, s.group)[0] as string, this.leaveArgv(s.user, s.group).slice(1));
          done.push(`removed ${s.user} from group ${s.group}`);
          break;
        case "deluser":
          if (!passwdEntry(s.name)) break;
          if (this.o.platform === "darwin")
            mustRun("dscl", [".", "-delete", `/Users/${s.name}`], "remove it by hand");
          else mustRun("userdel", [s.name], "remove it by hand (`userdel`)");
          done.push(`removed the user ${s.name}`);
          break;
        case "delgroup":
          if (!groupExists(s.name)) break;
          if (this.o.platform === "darwin") runTool("dscl", [".", "-delete", `/Groups/${s.name}`]);
          else runTool("groupdel", [s.name]);
          done.push(`removed the group ${s.name}`);
          break;
        case "dir": {
          const { uid, gid } = ids(s.owner, s.group);
          // parents as `install -d` makes them (0755): /var/lib must stay traversable
          mkdirSync(dirname(s.path), { recursive: true, mode: 0o755 });
          mkdirSync(s.path, { recursive: true, mode: s.mode });
          const st = lstatSync(s.path);
          if (st.isSymbolicLink() || !st.isDirectory())
            throw new CliError(
              "NOT_A_DIRECTORY",
              `${s.path} is not a directory: remove it and run this again`,
            );
          chownSync(s.path, uid, gid);
          chmodSync(s.path, s.mode);
          done.push(`${s.path} (${octal(s.mode)} ${s.owner}:${s.group})`);
          break;
        }
        case "file": {
          if (s.ifMissing && existsSync(s.path)) {
            done.push(`kept ${s.path}`);
            break;
          }
          const { uid, gid } = ids(s.owner, s.group);
          mkdirSync(dirname(s.path), { recursive: true });
          const tmp = `${s.path}.tmp-${process.pid}`;
          writeFileSync(tmp, s.content, { mode: 0o600 });
          chownSync(tmp, uid, gid);
          chmodSync(tmp, s.mode);
          renameSync(tmp, s.path);
          done.push(`wrote ${s.path} (${octal(s.mode)} ${s.owner}:${s.group})`);
          break;
        }
        case "move": {
          const { uid, gid } = ids(s.owner, s.group);
          mkdirOwned(dirname(s.to), uid, gid);
          copyFileSync(s.from, s.to);
          chownSync(s.to, uid, gid);
          chmodSync(s.to, s.mode);
          rmSync(s.from, { force: true });
          done.push(`moved ${s.from} to ${s.to}`);
          break;
        }
        case "remove":
          if (!existsSync(s.path)) break;
          rmSync(s.path, { recursive: true, force: true });
          done.push(`removed ${s.path}`);
          break;
        case "run": {
          step(s.argv.join(" "));
          const [cmd, ...args] = s.argv as [string, ...string[]];
          if (s.mayFail) runTool(cmd, args);
          else
            mustRun(
              cmd,
              args,
              `see \`${this.o.platform === "darwin" ? "launchctl print system/com.loxmcp.daemon" : "systemctl status loxmcpd"}\``,
            );
          if (!s.mayFail) done.push(`ran ${s.argv.join(" ")}`);
          break;
        }
      }
    }
    return done;
  }

  /** A user or group step: the command itself (Linux) or its dscl script (macOS). */
  private shOrRun(s: Extract<Step, { kind: "group" } | { kind: "user" }>): void {
    if (this.o.platform === "darwin") {
      const [line] = this.scriptOf(s);
      mustRun("sh", ["-c", line ?? "false"], "create it by hand (see `--print`)");
      return;
    }
    if (s.kind === "group")
      mustRun("groupadd", ["--system", s.name], "create the group by hand (see `--print`)");
    else {
      const [cmd, ...args] = this.useraddArgv(s) as [string, ...string[]];
      mustRun(cmd, args, "create the user by hand (see `--print`)");
    }
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

/** Creates `dir` and its missing parents 0700, each one it creates owned by uid:gid (the person's, on the way back). */
function mkdirOwned(dir: string, uid: number, gid: number): void {
  if (existsSync(dir)) return;
  mkdirOwned(dirname(dir), uid, gid);
  mkdirSync(dir, { mode: 0o700 });
  chownSync(dir, uid, gid);
}
