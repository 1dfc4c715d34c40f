/**
 * Hardened mode: the daemon runs as its own system user (`loxmcp`), so the person's account — and
 * any agent with a shell running as the person — can use the socket but cannot read the
 * credentials, the tokens or the policy. This module knows where that daemon's files are and
 * whether it is installed; daemon, shim and CLI share it (no dependencies).
 *
 * Layout (under `LOXMCP_SYSTEM_ROOT`, default `/`, for tests and packagers):
 *   /etc/loxmcp          config: .env (credentials), config.json (policy) — 0600 loxmcp, dir 0755 root
 *   /var/lib/loxmcp      state: database (tokens, PIN hash, audit) — 0700 loxmcp
 *   /var/log/loxmcp      daemon.log — 0700 loxmcp
 *   /run/loxmcp          daemon.sock 0660 (the person's group), admin.sock 0600 — dir 0750 loxmcp:loxmcp
 *                        (macOS: /usr/local/var/run/loxmcp, made by the installer: /var/run is
 *                        cleared at boot and launchd creates no directories)
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";

type Env = Record<string, string | undefined>;

/** Default name of the system user and group the daemon runs as. */
export const SYSTEM_USER = "loxmcp";
export const SYSTEM_UNIT = "loxmcpd.service";
export const SYSTEM_LAUNCHD_LABEL = "com.loxmcp.daemon";

export type SystemPlatform = "linux" | "darwin";

export interface SystemLayout {
  platform: SystemPlatform;
  /** The prefix everything lives under ("/" unless LOXMCP_SYSTEM_ROOT says otherwise). */
  root: string;
  config: string;
  state: string;
  log: string;
  /** The socket directory (0750, the daemon's user and group). */
  runtime: string;
  /** The socket MCP clients and the person's CLI use (0660: the group may connect). */
  socket: string;
  /**
   * Root's way in (0600, the daemon's user only: root passes every mode check). Node cannot learn
   * a socket peer's uid, so "only root may set the PIN" is a file mode, not a check in code.
   */
  adminSocket: string;
  /** The service file `loxmcp service install --system` writes. */
  serviceFile: string;
  /** Service files whose presence means the system daemon is installed (packagers use /usr/lib). */
  serviceFiles: string[];
}

export function currentSystemPlatform(): SystemPlatform {
  return process.platform === "darwin" ? "darwin" : "linux";
}

/** `LOXMCP_SYSTEM_ROOT` as an absolute path, "/" when unset. */
export function systemRoot(env: Env = process.env): string {
  const r = env.LOXMCP_SYSTEM_ROOT;
  return r && r !== "/" ? resolve(r) : "/";
}

export function systemLayout(
  env: Env = process.env,
  platform: SystemPlatform = currentSystemPlatform(),
): SystemLayout {
  const root = systemRoot(env);
  const at = (...parts: string[]) => join(root, ...parts);
  // macOS clears /var/run at boot and launchd creates no directories: a persistent one instead
  const runtime = platform === "darwin" ? at("usr", "local", "var", "run", "loxmcp") : at("run", "loxmcp");
  const serviceFile =
    platform === "darwin"
      ? at("Library", "LaunchDaemons", `${SYSTEM_LAUNCHD_LABEL}.plist`)
      : at("etc", "systemd", "system", SYSTEM_UNIT);
  const serviceFiles =
    platform === "darwin"
      ? [serviceFile]
      : [
          serviceFile,
          at("usr", "lib", "systemd", "system", SYSTEM_UNIT),
          at("lib", "systemd", "system", SYSTEM_UNIT),
        ];
  return {
    platform,
    root,
    config: at("etc", "loxmcp"),
    state: at("var", "lib", "loxmcp"),
    log: at("var", "log", "loxmcp"),
    runtime,
    socket: join(runtime, "daemon.sock"),
    adminSocket: join(runtime, "admin.sock"),
    serviceFile,
    serviceFiles,
  };
}

/** The installed system service file, if any. */
export function installedSystemService(layout: SystemLayout): string | undefined {
  return layout.serviceFiles.find((f) => existsSync(f));
}

/**
 * Whether daemon, shim and CLI use the system daemon: `LOXMCP_SYSTEM=1` (set by its unit: this IS
 * the system daemon), or its socket or its service file exists (installed, running or not — the
 * shim then never starts a per-user daemon instead).
 */
export function systemSelected(env: Env, layout: SystemLayout): boolean {
  if (env.LOXMCP_SYSTEM === "1") return true;
  return existsSync(layout.socket) || installedSystemService(layout) !== undefined;
}

/** The user the system daemon runs as: `User=` of its unit / `UserName` of its plist, else `loxmcp`. */
export function systemUserName(layout: SystemLayout): string {
  const file = installedSystemService(layout);
  if (!file) return SYSTEM_USER;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return SYSTEM_USER;
  }
  const m = file.endsWith(".plist")
    ? /<key>UserName<\/key>\s*<string>([^<]+)<\/string>/.exec(text)
    : /^\s*User\s*=\s*(\S+)\s*$/m.exec(text);
  return m?.[1] ?? SYSTEM_USER;
}

/** A user's uid by name: /etc/passwd, else `id -u NAME` (directory services on macOS); undefined when unknown. */
export function uidOf(name: string): number | undefined {
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const [user, , uid] = line.split(":");
      if (user === name && uid !== undefined && /^\d+$/.test(uid)) return Number(uid);
    }
  } catch {
    // no /etc/passwd: ask id
  }
  try {
    const cp = createRequire(import.meta.url)("node:child_process") as typeof import("node:child_process");
    const r = cp.spawnSync("id", ["-u", name], { encoding: "utf8", timeout: 3_000 });
    const out = r.status === 0 ? r.stdout.trim() : "";
    return /^\d+$/.test(out) ? Number(out) : undefined;
  } catch {
    return undefined;
  }
}

/** What the person runs to start the system daemon (the one-line hint everywhere). */
export function systemStartHint(platform: SystemPlatform = currentSystemPlatform()): string {
  return platform === "darwin"
    ? `sudo launchctl kickstart system/${SYSTEM_LAUNCHD_LABEL}`
    : "sudo systemctl start loxmcpd";
}

/** What the person runs to stop it (the socket's `loxmcp/shutdown` is refused in hardened mode). */
export function systemStopHint(platform: SystemPlatform = currentSystemPlatform()): string {
  return platform === "darwin"
    ? `sudo launchctl kill SIGTERM system/${SYSTEM_LAUNCHD_LABEL}`
    : "sudo systemctl stop loxmcpd";
}
