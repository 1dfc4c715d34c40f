import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DAEMON_NODE_FLAGS } from "@loxmcp/common";
import { parse as parsePlist } from "plist";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CliSandbox, DAEMON_BIN } from "./helpers.js";

let sb: CliSandbox;
beforeEach(() => {
  sb = new CliSandbox();
});
afterEach(() => sb.cleanup());

const hasSystemdAnalyze = spawnSync("systemd-analyze", ["--version"], { stdio: "ignore" }).status === 0;
if (!hasSystemdAnalyze) {
  console.warn("SKIPPED systemd-analyze verify tests: `systemd-analyze` is not installed on this machine");
}

/** Runs `systemd-analyze [--user] verify <unit>`; returns the lines that mention the unit. */
function verifyUnit(
  dir: string,
  unit: string,
  user: boolean,
): { status: number | null; complaints: string[] } {
  const file = join(dir, "loxmcpd.service");
  writeFileSync(file, unit);
  const runtime = join(dir, "xdg");
  mkdirSync(runtime, { recursive: true, mode: 0o700 });
  const r = spawnSync("systemd-analyze", [...(user ? ["--user"] : []), "verify", file], {
    encoding: "utf8",
    env: { ...process.env, XDG_RUNTIME_DIR: runtime, SYSTEMD_LOG_LEVEL: "info" },
  });
  const out = `${r.stdout}\n${r.stderr}`;
  const complaints = out
    .split("\n")
    .filter((l) => l.includes("loxmcpd.service") || /Unknown|ignoring|invalid/i.test(l));
  return { status: r.status, complaints };
}

describe("loxmcp service --print (linux: systemd user unit)", () => {
  it("renders absolute node + daemon paths, LOXMCP_HOME and the hardening", async () => {
    const r = await sb.run(["service", "install", "--print", "--platform", "linux"]);
    expect(r.code).toBe(0);
    const unit = r.stdout;
    expect(unit).toContain(`ExecStart=${process.execPath} ${DAEMON_NODE_FLAGS.join(" ")} ${DAEMON_BIN}`);
    expect(unit).toContain(`Environment=LOXMCP_HOME=${sb.loxmcpHome}`);
    for (const line of [
      "Type=simple",
      "Restart=on-failure",
      "NoNewPrivileges=yes",
      "UMask=0077",
      "PrivateUsers=yes",
      "ProtectSystem=strict",
      "ProtectHome=read-only",
      "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
      "SystemCallArchitectures=native",
      "WantedBy=default.target",
    ]) {
      expect(unit.split("\n")).toContain(line);
    }
    expect(unit).toMatch(/^ReadWritePaths=.*-\/tmp\/lxc-[^ ]+\/x\/state/m);
    expect(unit).not.toMatch(/^MemoryDenyWriteExecute/m);
    expect(unit).not.toContain("@");
  });

  it("quotes paths with spaces and escapes % for systemd", async () => {
    const odd = join(sb.root, "my home 100%");
    const r = await sb.run(
      ["service", "install", "--print", "--platform", "linux"],
      {},
      { LOXMCP_HOME: odd },
    );
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Environment="LOXMCP_HOME=${odd.replace("%", "%%")}"`);
    expect(r.stdout).toContain(`"-${odd.replace("%", "%%")}/state"`);
  });

  it.skipIf(!hasSystemdAnalyze)(
    "passes `systemd-analyze verify` (system and --user) without warnings",
    async () => {
      for (const home of [sb.loxmcpHome, join(sb.root, "with space")]) {
        const r = await sb.run(
          ["service", "install", "--print", "--platform", "linux"],
          {},
          { LOXMCP_HOME: home },
        );
        expect(r.code).toBe(0);
        for (const user of [false, true]) {
          const v = verifyUnit(sb.root, r.stdout, user);
          expect(v.complaints, `systemd-analyze ${user ? "--user " : ""}verify`).toEqual([]);
          expect(v.status).toBe(0);
        }
      }
      // without LOXMCP_HOME: env-paths dirs under $HOME and the socket in $XDG_RUNTIME_DIR/loxmcp
      const xdg = join(sb.root, "run-user");
      mkdirSync(xdg, { mode: 0o700 });
      const r = await sb.run(
        ["service", "install", "--print"],
        {},
        { LOXMCP_HOME: "", XDG_RUNTIME_DIR: xdg },
      );
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("RuntimeDirectory=loxmcp");
      expect(r.stdout).toContain(`-${sb.home}/.local/share/loxmcp`);
      expect(r.stdout).toContain("PrivateTmp=yes");
      expect(r.stdout).not.toContain("Environment=");
      expect(verifyUnit(sb.root, r.stdout, true).complaints).toEqual([]);
    },
  );

  it("--no-sandbox leaves out only the namespace-based options", async () => {
    const r = await sb.run(["service", "install", "--print", "--platform", "linux", "--no-sandbox"]);
    expect(r.code).toBe(0);
    const active = r.stdout.split("\n").filter((l) => !l.startsWith("#"));
    for (const key of ["PrivateUsers=", "PrivateTmp=", "ProtectSystem=", "ProtectHome=", "ReadWritePaths="]) {
      expect(
        active.some((l) => l.startsWith(key)),
        key,
      ).toBe(false);
    }
    for (const line of [
      "NoNewPrivileges=yes",
      "UMask=0077",
      "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
    ]) {
      expect(active).toContain(line);
    }
    if (hasSystemdAnalyze) expect(verifyUnit(sb.root, r.stdout, true).complaints).toEqual([]);
  });

  it.skipIf(!hasSystemdAnalyze)("the verify check itself catches a broken unit (the test can fail)", () => {
    const v = verifyUnit(sb.root, "[Service]\nExecStart=/bin/true\nBogusKey=1\n", false);
    expect(v.complaints.join("\n")).toContain("BogusKey");
  });
});

describe("loxmcp service --print --platform darwin (launchd LaunchAgent)", () => {
  it("renders a plist that parses, with absolute paths and the right keys", async () => {
    const r = await sb.run(["service", "install", "--print", "--platform", "darwin"]);
    expect(r.code).toBe(0);
    const doc = parsePlist(r.stdout) as Record<string, unknown>;
    expect(doc.Label).toBe("com.loxmcp.daemon");
    expect(doc.ProgramArguments).toEqual([process.execPath, ...DAEMON_NODE_FLAGS, DAEMON_BIN]);
    expect(doc.RunAtLoad).toBe(true);
    expect(doc.KeepAlive).toEqual({ SuccessfulExit: false });
    expect(doc.StandardOutPath).toBe(join(sb.loxmcpHome, "log", "launchd.stdout.log"));
    expect(doc.StandardErrorPath).toBe(join(sb.loxmcpHome, "log", "launchd.stderr.log"));
    expect(doc.EnvironmentVariables).toEqual({ LOXMCP_HOME: sb.loxmcpHome });
  });

  it("escapes XML in paths", async () => {
    const odd = join(sb.root, "a&b <c> 'd\"");
    const r = await sb.run(
      ["service", "install", "--print", "--platform", "darwin"],
      {},
      { LOXMCP_HOME: odd },
    );
    expect(r.code).toBe(0);
    const doc = parsePlist(r.stdout) as Record<string, unknown>;
    expect(doc.EnvironmentVariables).toEqual({ LOXMCP_HOME: odd });
    expect(doc.StandardOutPath).toBe(join(odd, "log", "launchd.stdout.log"));
  });
});

describe("loxmcp service (safety)", () => {
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  it.skipIf(!root)("refuses to install as root without --allow-root, touching nothing", async () => {
    const r = await sb.run(["service", "install"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("refusing to install the service as root");
    expect(r.stderr).toContain("--allow-root");
  });

  it("refuses --platform other than this one without --print", async () => {
    const other = process.platform === "darwin" ? "linux" : "darwin";
    const r = await sb.run(["service", "status", "--platform", other]);
    expect(r.code).toBe(2); // bad usage
    expect(r.stderr).toContain("only works with --print");
  });
});
