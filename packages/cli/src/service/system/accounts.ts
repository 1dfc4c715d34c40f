/**
 * Hardened mode's users and groups: looking them up (/etc/passwd and /etc/group, else the
 * system's tools), the person's per-user directories, and the commands that create the daemon's
 * user and put the person into (or out of) its group.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { SystemPlatform } from "@loxmcp/common";

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

export function groupExists(name: string): boolean {
  try {
    return readFileSync("/etc/group", "utf8")
      .split("\n")
      .some((l) => l.split(":")[0] === name);
  } catch {
    return spawnSync("dscl", [".", "-read", `/Groups/${name}`], { stdio: "ignore" }).status === 0;
  }
}

export function groupGid(name: string): number | undefined {
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

function nologinShell(platform: SystemPlatform): string {
  if (platform === "darwin") return "/usr/bin/false";
  return ["/usr/sbin/nologin", "/sbin/nologin"].find((p) => existsSync(p)) ?? "/bin/false";
}

export function useraddArgv(
  platform: SystemPlatform,
  s: { name: string; group: string; home: string },
): string[] {
  return [
    "useradd",
    "--system",
    "--gid",
    s.group,
    "--home-dir",
    s.home,
    "--no-create-home",
    "--shell",
    nologinShell(platform),
    "--comment",
    "loxmcp daemon (hardened mode)",
    s.name,
  ];
}

export function memberArgv(platform: SystemPlatform, user: string, group: string): string[] {
  return platform === "darwin"
    ? ["dseditgroup", "-o", "edit", "-a", user, "-t", "user", group]
    : ["usermod", "-a", "-G", group, user];
}

export function leaveArgv(platform: SystemPlatform, user: string, group: string): string[] {
  return platform === "darwin"
    ? ["dseditgroup", "-o", "edit", "-d", user, "-t", "user", group]
    : ["gpasswd", "-d", user, group];
}
