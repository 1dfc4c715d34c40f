/**
 * What `service install|uninstall --system` amount to, as a list of steps: the user and group,
 * the directories, the files --migrate moves, the unit (or LaunchDaemon plist) and enabling it.
 * Planning changes nothing; `--print` renders the steps (script.ts), `runSteps` carries them out
 * (run.ts).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  type Env,
  SYSTEM_LAUNCHD_LABEL,
  SYSTEM_UNIT,
  type SystemLayout,
  type SystemPlatform,
} from "@loxmcp/common";
import { passwdEntry, personPaths } from "./accounts.js";

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

/** The files --migrate moves: [relative name, which directory] (the database with its WAL). */
const MIGRATED: ReadonlyArray<readonly [string, "config" | "state"]> = [
  [".env", "config"],
  ["config.json", "config"],
  ["loxmcp.db", "state"],
  ["loxmcp.db-wal", "state"],
  ["loxmcp.db-shm", "state"],
];

const STARTER_CONFIG = `${JSON.stringify({ policy: { mode: "confirm" } }, null, 2)}\n`;

function underHomeOrTmp(p: string): boolean {
  return /^\/(home|root|Users|tmp|var\/tmp|run\/user)(\/|$)/.test(p);
}

/** Everything is laid out under --root PREFIX (tests, packagers): nothing is started. */
export function isPrefixed(layout: SystemLayout): boolean {
  return layout.root !== "/";
}

/** Who owns what root installs (the config directory, the service file). */
function rootGroup(platform: SystemPlatform): string {
  return platform === "darwin" ? "wheel" : "root";
}

/** Why this installation cannot run as a system service (a path systemd would hide), if it cannot. */
export function runnableProblem(o: SystemServiceOptions): string | undefined {
  const hidden = [o.nodePath, o.daemonBin].filter(underHomeOrTmp);
  if (hidden.length === 0) return undefined;
  return `the system daemon cannot run ${hidden.join(" and ")}: a home directory or /tmp is hidden from it (ProtectHome=, PrivateTmp=) and may not be readable by ${o.daemonUser}; install Node and loxmcp system-wide (e.g. \`sudo npm install -g loxmcp-<version>.tgz\`) and run this again`;
}

/** The steps of `install --system` (also what --print shows). */
export function installSteps(o: SystemServiceOptions, layout: SystemLayout, render: () => string): Step[] {
  const { daemonUser: u, person } = o;
  const steps: Step[] = [
    { kind: "group", name: u },
    { kind: "user", name: u, group: u, home: layout.state },
  ];
  if (person) steps.push({ kind: "member", user: person, group: u });
  steps.push(
    {
      kind: "dir",
      path: layout.config,
      mode: 0o755,
      owner: "root",
      group: rootGroup(o.platform),
      why: `configuration: credentials (.env) and policy (config.json), each 0600 ${u}`,
    },
    {
      kind: "dir",
      path: layout.state,
      mode: 0o700,
      owner: u,
      group: u,
      why: "state: database with the tokens, PIN hash, audit",
    },
    {
      kind: "dir",
      path: layout.log,
      mode: 0o700,
      owner: u,
      group: u,
      why: "daemon.log (read it with `loxmcp logs`)",
    },
    {
      kind: "dir",
      path: layout.runtime,
      mode: 0o750,
      owner: u,
      group: u,
      why: `the socket's directory: the daemon creates daemon.sock 0660 (group ${u} may connect) and admin.sock 0600 (root only)`,
    },
  );
  const moved = new Set<string>();
  if (o.migrate) {
    for (const m of migrations(o, layout)) {
      steps.push({ kind: "move", from: m.from, to: m.to, mode: 0o600, owner: u, group: u });
      moved.add(m.to);
    }
  }
  const cfg = join(layout.config, "config.json");
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
    path: layout.serviceFile,
    mode: 0o644,
    owner: "root",
    group: rootGroup(o.platform),
    content: render(),
    why: o.platform === "darwin" ? "the LaunchDaemon" : "the system unit",
  });
  steps.push(...enableSteps(o, layout));
  return steps;
}

/** What --migrate moves: the person's files that exist (only those). */
export function migrations(
  o: SystemServiceOptions,
  layout: SystemLayout,
): Array<{ from: string; to: string }> {
  const pp = personDirs(o);
  if (!pp) return [];
  const out: Array<{ from: string; to: string }> = [];
  for (const [name, where] of MIGRATED) {
    const from = join(where === "config" ? pp.config : pp.state, name);
    if (existsSync(from))
      out.push({ from, to: join(where === "config" ? layout.config : layout.state, name) });
  }
  return out;
}

export function personDirs(o: SystemServiceOptions): ReturnType<typeof personPaths> | undefined {
  const p = o.person;
  if (!p) return undefined;
  const e = passwdEntry(p);
  return e ? personPaths(e.home, o.platform) : undefined;
}

function enableSteps(o: SystemServiceOptions, layout: SystemLayout): Step[] {
  if (o.platform === "darwin") {
    return isPrefixed(layout)
      ? []
      : [
          {
            kind: "run",
            argv: ["launchctl", "bootstrap", "system", layout.serviceFile],
            why: "load and start it",
          },
        ];
  }
  if (isPrefixed(layout)) {
    return [
      {
        kind: "run",
        argv: ["systemctl", `--root=${layout.root}`, "enable", SYSTEM_UNIT],
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
export function uninstallSteps(o: SystemServiceOptions, layout: SystemLayout): Step[] {
  const { daemonUser: u, person } = o;
  const steps: Step[] = [];
  if (o.platform === "darwin") {
    if (!isPrefixed(layout))
      steps.push({
        kind: "run",
        argv: ["launchctl", "bootout", `system/${SYSTEM_LAUNCHD_LABEL}`],
        why: "stop and unload it",
        mayFail: true,
      });
  } else if (isPrefixed(layout)) {
    steps.push({
      kind: "run",
      argv: ["systemctl", `--root=${layout.root}`, "disable", SYSTEM_UNIT],
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
  steps.push({ kind: "remove", path: layout.serviceFile, why: "the service file" });
  if (o.platform === "linux" && !isPrefixed(layout))
    steps.push({ kind: "run", argv: ["systemctl", "daemon-reload"], why: "", mayFail: true });
  steps.push({ kind: "remove", path: layout.runtime, why: "the socket's directory" });
  if (o.migrate) {
    const pp = personDirs(o);
    const who = person ?? "";
    if (pp) {
      for (const [name, where] of MIGRATED) {
        const from = join(where === "config" ? layout.config : layout.state, name);
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
  if (o.migrate || o.purge) {
    for (const [path, why] of [
      [layout.config, "configuration"],
      [layout.state, "state (database)"],
      [layout.log, "logs"],
    ] as const) {
      steps.push({ kind: "remove", path, why });
    }
  }
  if (o.purge) {
    if (person) steps.push({ kind: "leave", user: person, group: u });
    steps.push({ kind: "deluser", name: u }, { kind: "delgroup", name: u });
  }
  return steps;
}
