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
