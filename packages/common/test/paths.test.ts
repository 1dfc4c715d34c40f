import { spawnSync } from "node:child_process";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import {
  checkSocketPath,
  ensurePrivateDir,
  resolvePaths,
  UnsafeHomeError,
  UnsafeSocketDirError,
} from "../src/paths.js";
import { systemLayout, systemUserName } from "../src/system.js";

describe("resolvePaths", () => {
  it("puts everything under LOXMCP_HOME when set", () => {
    const p = resolvePaths({ LOXMCP_HOME: "/x/home" });
    expect(p.socket).toBe("/x/home/run/daemon.sock");
    expect(p.db).toBe("/x/home/state/loxmcp.db");
    expect(p.logFile).toBe("/x/home/log/daemon.log");
  });

  it("uses $XDG_RUNTIME_DIR/loxmcp for the socket when that dir is ours", () => {
    const xdg = mkdtempSync(join(tmpdir(), "xdg-"));
    expect(resolvePaths({ XDG_RUNTIME_DIR: xdg }).socket).toBe(join(xdg, "loxmcp", "daemon.sock"));
    expect(resolvePaths({ XDG_RUNTIME_DIR: join(xdg, "missing") }).socket).not.toContain("missing");
  });

  it("creates private dirs 0700 and tightens loose ones", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "priv-")), "a", "b");
    ensurePrivateDir(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it("the system daemon's socket dir: exactly 0750 (the group may reach the socket), whatever the umask", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "priv-")), "run");
    ensurePrivateDir(dir, 0o750);
    expect(statSync(dir).mode & 0o777).toBe(0o750);
    chmodSync(dir, 0o755); // readable by others: tightened
    ensurePrivateDir(dir, 0o750);
    expect(statSync(dir).mode & 0o777).toBe(0o750);
    // Writable by others: files may have been planted while it was open, so it is refused, not fixed.
    chmodSync(dir, 0o777);
    expect(() => ensurePrivateDir(dir, 0o750)).toThrow(/writable by all users \(mode 777\).*chmod 750/);
    chmodSync(dir, 0o770);
    expect(() => ensurePrivateDir(dir, 0o700)).toThrow(/writable by its group/);
    expect(statSync(dir).mode & 0o777).toBe(0o770);
  });
});

describe("resolvePaths: the system daemon (hardened mode)", () => {
  /** A temporary LOXMCP_SYSTEM_ROOT, with what install --system would leave there. */
  const systemRoot = (what: { unit?: string; socket?: boolean } = {}) => {
    const root = mkdtempSync(join(tmpdir(), "sysroot-"));
    if (what.unit !== undefined) {
      mkdirSync(join(root, "etc", "systemd", "system"), { recursive: true });
      writeFileSync(join(root, "etc", "systemd", "system", "loxmcpd.service"), what.unit);
    }
    if (what.socket) {
      mkdirSync(join(root, "run", "loxmcp"), { recursive: true });
      writeFileSync(join(root, "run", "loxmcp", "daemon.sock"), "");
    }
    return root;
  };

  it("is used when its service file exists, running or not: /etc/loxmcp, /var/lib/loxmcp, /run/loxmcp", () => {
    const root = systemRoot({ unit: "[Service]\nUser=lxsvc\n" });
    const p = resolvePaths({ LOXMCP_SYSTEM_ROOT: root, XDG_RUNTIME_DIR: root });
    expect(p.system?.root).toBe(root);
    expect(p.config).toBe(join(root, "etc", "loxmcp"));
    expect(p.state).toBe(join(root, "var", "lib", "loxmcp"));
    expect(p.log).toBe(join(root, "var", "log", "loxmcp"));
    expect(p.socket).toBe(join(root, "run", "loxmcp", "daemon.sock"));
    expect(p.system?.adminSocket).toBe(join(root, "run", "loxmcp", "admin.sock"));
    expect(systemUserName(systemLayout({ LOXMCP_SYSTEM_ROOT: root }))).toBe("lxsvc");
  });

  it("is used when only its socket exists, and when LOXMCP_SYSTEM=1 (the daemon its unit starts)", () => {
    const root = systemRoot({ socket: true });
    expect(resolvePaths({ LOXMCP_SYSTEM_ROOT: root }).system).toBeDefined();
    const empty = systemRoot();
    expect(resolvePaths({ LOXMCP_SYSTEM_ROOT: empty }).system).toBeUndefined();
    expect(resolvePaths({ LOXMCP_SYSTEM_ROOT: empty, LOXMCP_SYSTEM: "1" }).socket).toBe(
      join(empty, "run", "loxmcp", "daemon.sock"),
    );
    expect(systemUserName(systemLayout({ LOXMCP_SYSTEM_ROOT: empty }))).toBe("loxmcp");
  });

  it("comes after LOXMCP_SOCKET and LOXMCP_HOME (DESIGN.md's lookup order)", () => {
    const root = systemRoot({ unit: "", socket: true });
    const mine = join(root, "mine.sock");
    const bySocket = resolvePaths({ LOXMCP_SYSTEM_ROOT: root, LOXMCP_SOCKET: mine });
    expect(bySocket.socket).toBe(mine);
    expect(bySocket.system).toBeUndefined();
    const byHome = resolvePaths({ LOXMCP_SYSTEM_ROOT: root, LOXMCP_HOME: "/x/home" });
    expect(byHome.socket).toBe("/x/home/run/daemon.sock");
    expect(byHome.system).toBeUndefined();
  });

  it("macOS: a LaunchDaemon and a socket directory that survives reboots", () => {
    const l = systemLayout({}, "darwin");
    expect(l.serviceFile).toBe("/Library/LaunchDaemons/com.loxmcp.daemon.plist");
    expect(l.socket).toBe("/usr/local/var/run/loxmcp/daemon.sock");
    expect(l.config).toBe("/etc/loxmcp");
  });

  it.runIf(process.getuid?.() === 0 && existsSync("/usr/bin/setpriv"))(
    "as a third user: the system socket directory owned by the daemon's user (its unit's User=) is accepted, the same owner elsewhere is not",
    () => {
      const root = systemRoot({ unit: "[Service]\nUser=nobody\n" });
      chmodSync(root, 0o755);
      const runDir = join(root, "run", "loxmcp");
      mkdirSync(runDir, { recursive: true });
      for (const d of [join(root, "run"), join(root, "etc")]) chmodSync(d, 0o755);
      chmodSync(runDir, 0o750);
      chownSync(runDir, 65534, 65534);
      const other = join(root, "other");
      mkdirSync(other, { mode: 0o750 });
      chownSync(other, 65534, 65534);
      const paths = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "paths.js");
      const script = `import(${JSON.stringify(paths)}).then((m) => {
        const env = { LOXMCP_SYSTEM_ROOT: ${JSON.stringify(root)} };
        const out = [];
        for (const socket of [${JSON.stringify(join(runDir, "daemon.sock"))}, ${JSON.stringify(join(other, "daemon.sock"))}]) {
          try { m.checkSocketPath({ socket }, env); out.push("ok"); } catch (e) { out.push(e.code); }
        }
        console.log(JSON.stringify(out));
      })`;
      const r = spawnSync(
        "setpriv",
        ["--reuid=65533", "--regid=65533", "--clear-groups", process.execPath, "-e", script],
        { encoding: "utf8" },
      );
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual(["ok", "UNSAFE_SOCKET_DIR"]);
    },
  );
});

describe("checkSocketPath", () => {
  const tmp = () => mkdtempSync(join(tmpdir(), "sock-"));
  const refusal = (fn: () => void): Error => {
    try {
      fn();
    } catch (e) {
      return e as Error;
    }
    throw new Error("expected a refusal");
  };

  it("accepts a private directory, a 0755 one and a missing one", () => {
    const dir = tmp();
    expect(() => checkSocketPath({ socket: join(dir, "daemon.sock") }, {})).not.toThrow();
    chmodSync(dir, 0o755);
    expect(() => checkSocketPath({ socket: join(dir, "daemon.sock") }, {})).not.toThrow();
    expect(() => checkSocketPath({ socket: join(dir, "missing", "daemon.sock") }, {})).not.toThrow();
    const home = join(dir, "home-missing");
    expect(() => checkSocketPath(resolvePaths({ LOXMCP_HOME: home }), { LOXMCP_HOME: home })).not.toThrow();
  });

  it("refuses a socket directory writable by others or by the group, in one line naming path and fix", () => {
    const dir = tmp();
    const socket = join(dir, "daemon.sock");
    chmodSync(dir, 0o777);
    const e = refusal(() => checkSocketPath({ socket }, { LOXMCP_SOCKET: socket }));
    expect(e).toBeInstanceOf(UnsafeSocketDirError);
    expect((e as UnsafeSocketDirError).code).toBe("UNSAFE_SOCKET_DIR");
    expect(e.message).toBe(
      `refusing the daemon socket ${socket}: its directory ${dir} is writable by other users (mode 0777), so another user could put a fake daemon there; use a private directory (chmod 700 ${dir}) or unset LOXMCP_SOCKET`,
    );
    // A shared sticky directory like /tmp: never advise to chmod it.
    chmodSync(dir, 0o1777);
    expect(refusal(() => checkSocketPath({ socket }, { LOXMCP_SOCKET: socket })).message).toBe(
      `refusing the daemon socket ${socket}: its directory ${dir} is writable by other users (mode 1777), so another user could put a fake daemon there; use a private directory instead (e.g. mkdir -m 700 ${join(dir, "loxmcp")} and put the socket there) or unset LOXMCP_SOCKET`,
    );
    chmodSync(dir, 0o770);
    const g = refusal(() => checkSocketPath({ socket }, {}));
    expect(g.message).toContain("(mode 0770)");
    expect(g.message).not.toContain("LOXMCP_SOCKET");
    expect(g.message).not.toContain("\n");
  });

  it("refuses a symlinked socket directory and one that is not a directory", () => {
    const dir = tmp();
    const real = join(dir, "real");
    mkdirSync(real, { mode: 0o700 });
    symlinkSync(real, join(dir, "link"));
    const e = refusal(() => checkSocketPath({ socket: join(dir, "link", "daemon.sock") }, {}));
    expect(e.message).toContain(`its directory ${join(dir, "link")} is a symbolic link`);
    writeFileSync(join(dir, "file"), "");
    expect(
      refusal(() => checkSocketPath({ socket: join(dir, "file", "daemon.sock") }, {})).message,
    ).toContain("is not a directory");
  });

  it("refuses a LOXMCP_HOME writable by other users (before looking at the socket)", () => {
    const home = tmp();
    chmodSync(home, 0o777);
    const env = { LOXMCP_HOME: home };
    const e = refusal(() => checkSocketPath(resolvePaths(env), env));
    expect(e).toBeInstanceOf(UnsafeHomeError);
    expect((e as UnsafeHomeError).code).toBe("UNSAFE_HOME");
    expect(e.message).toBe(
      `refusing LOXMCP_HOME ${home}: it is writable by other users (mode 0777), so another user could replace its config, state or socket; chmod 700 ${home} or use another LOXMCP_HOME`,
    );
    chmodSync(home, 0o700);
    expect(() => checkSocketPath(resolvePaths(env), env)).not.toThrow();
  });

  it.runIf(process.getuid?.() === 0)("as root: refuses a directory owned by another user", () => {
    const dir = tmp();
    chmodSync(dir, 0o755);
    chownSync(dir, 65534, 65534);
    const e = refusal(() => checkSocketPath({ socket: join(dir, "daemon.sock") }, {}));
    expect(e.message).toContain(`is owned by uid 65534, not by you (uid 0)`);
    const h = refusal(() => checkSocketPath({ socket: "/nonexistent/x.sock" }, { LOXMCP_HOME: dir }));
    expect(h.message).toContain(`refusing LOXMCP_HOME ${dir}: it is owned by uid 65534`);
  });

  it.runIf(process.getuid?.() === 0 && existsSync("/usr/bin/setpriv"))(
    "as another user: a root-owned directory that others cannot write is accepted (system daemon), a root-owned LOXMCP_HOME is not",
    () => {
      const dir = tmp();
      chmodSync(dir, 0o755);
      const paths = join(dirname(fileURLToPath(import.meta.url)), "..", "dist", "paths.js");
      const script = `import(${JSON.stringify(paths)}).then((m) => {
        const out = [];
        for (const [socket, env] of [[${JSON.stringify(join(dir, "d.sock"))}, {}], ["/x/d.sock", { LOXMCP_HOME: ${JSON.stringify(dir)} }]]) {
          try { m.checkSocketPath({ socket }, env); out.push("ok"); } catch (e) { out.push(e.code + ": " + e.message); }
        }
        console.log(JSON.stringify(out));
      })`;
      const r = spawnSync(
        "setpriv",
        ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e", script],
        { encoding: "utf8" },
      );
      expect(r.status, r.stderr).toBe(0);
      const [socketDir, home] = JSON.parse(r.stdout) as string[];
      expect(socketDir).toBe("ok");
      expect(home).toBe(
        `UNSAFE_HOME: refusing LOXMCP_HOME ${dir}: it is owned by uid 0, not by you (uid 65534), so that user controls its config, state and socket; use a directory of your own`,
      );
    },
  );
});
