/**
 * `loxmcp service install|uninstall --system --print` (hardened mode) without root: the script it
 * prints (valid sh, every directory with its mode and owner, the unit or plist, the commands), the
 * systemd system unit checked by `systemd-analyze verify`, the macOS LaunchDaemon checked by
 * parsing it, and the refusals (options that need --system, a real install without root). The
 * install itself, as root with throwaway users, is in hardened.test.ts.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DAEMON_NODE_FLAGS } from "@loxmcp/common";
import { parse as parsePlist } from "plist";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { spawnShim } from "../../shim/test/helpers.js";
import { CliSandbox, DAEMON_BIN } from "./helpers.js";

let sb: CliSandbox;
beforeEach(() => {
  sb = new CliSandbox();
});
afterEach(() => sb.cleanup());

const hasSystemdAnalyze = spawnSync("systemd-analyze", ["--version"], { stdio: "ignore" }).status === 0;
if (!hasSystemdAnalyze) {
  console.warn("SKIPPED systemd-analyze verify of the system unit: `systemd-analyze` is not installed");
}
const isRoot = process.getuid?.() === 0;

/** The file a printed script writes with `cat > PATH <<'LOXMCP_EOF'`. */
function heredoc(script: string, path: string): string {
  const start = script.indexOf(`cat > ${path} <<'LOXMCP_EOF'\n`);
  expect(start, `the script writes ${path}`).toBeGreaterThanOrEqual(0);
  const body = script.slice(script.indexOf("\n", start) + 1);
  return body.slice(0, body.indexOf("\nLOXMCP_EOF\n"));
}

describe("service install --system --print (linux)", () => {
  const print = (extra: string[] = []) =>
    sb.run(
      ["service", "install", "--system", "--print", "--platform", "linux", "--user", "alice", ...extra],
      {},
      { LOXMCP_HOME: "" },
    );

  it("prints the whole installation as a valid sh script: user, group, directories and modes, unit, systemctl", async () => {
    const r = await print();
    expect(r.code, r.stderr).toBe(0);
    const s = r.stdout;
    expect(spawnSync("sh", ["-n"], { input: s }).status).toBe(0);
    expect(s).toContain("Nothing was changed (--print)");
    const lines = s.split("\n");
    expect(lines).toContain("getent group loxmcp >/dev/null || groupadd --system loxmcp");
    expect(s).toMatch(
      /^id -u loxmcp >\/dev\/null 2>&1 \|\| useradd --system --gid loxmcp --home-dir \/var\/lib\/loxmcp --no-create-home --shell \S+nologin/m,
    );
    expect(s).toMatch(/^usermod -a -G loxmcp alice /m);
    for (const dir of [
      "install -d -m 0755 -o root -g root /etc/loxmcp",
      "install -d -m 0700 -o loxmcp -g loxmcp /var/lib/loxmcp",
      "install -d -m 0700 -o loxmcp -g loxmcp /var/log/loxmcp",
      "install -d -m 0750 -o loxmcp -g loxmcp /run/loxmcp",
    ]) {
      expect(
        lines.some((l) => l.startsWith(`${dir} `)),
        dir,
      ).toBe(true);
    }
    expect(s).toContain("chown loxmcp:loxmcp /etc/loxmcp/config.json && chmod 0600 /etc/loxmcp/config.json");
    expect(s).toContain(
      "chown root:root /etc/systemd/system/loxmcpd.service && chmod 0644 /etc/systemd/system/loxmcpd.service",
    );
    expect(lines).toContain("systemctl daemon-reload");
    expect(s).toMatch(/^systemctl enable --now loxmcpd.service /m);
    expect(s).toContain("/run/loxmcp/daemon.sock (0660 loxmcp:loxmcp)");
    expect(s).toContain("/run/loxmcp/admin.sock (0600 loxmcp:loxmcp)");

    const unit = heredoc(s, "/etc/systemd/system/loxmcpd.service").split("\n");
    for (const line of [
      "User=loxmcp",
      "Group=loxmcp",
      `ExecStart=${process.execPath} ${DAEMON_NODE_FLAGS.join(" ")} ${DAEMON_BIN}`,
      "Environment=LOXMCP_SYSTEM=1",
      "ConfigurationDirectory=loxmcp",
      "StateDirectory=loxmcp",
      "StateDirectoryMode=0700",
      "LogsDirectory=loxmcp",
      "RuntimeDirectory=loxmcp",
      "RuntimeDirectoryMode=0750",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ProtectHome=yes",
      "PrivateTmp=yes",
      "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
      "CapabilityBoundingSet=",
      "RestartPreventExitStatus=78",
      "WantedBy=multi-user.target",
    ]) {
      expect(unit, line).toContain(line);
    }
    expect(unit.join("\n")).not.toMatch(/^MemoryDenyWriteExecute/m);
    expect(unit.join("\n")).not.toMatch(/@[A-Z_]+@/);
  });

  it("--root lays everything under the prefix, enables without starting; --daemon-user names the user", async () => {
    const root = join(sb.root, "image");
    const r = await print(["--root", root, "--daemon-user", "lxsvc"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`install -d -m 0750 -o lxsvc -g lxsvc ${root}/run/loxmcp `);
    expect(r.stdout).toContain(`cat > ${root}/etc/systemd/system/loxmcpd.service <<'LOXMCP_EOF'`);
    expect(r.stdout).toMatch(new RegExp(`^systemctl --root=${root} enable loxmcpd.service`, "m"));
    expect(r.stdout).not.toContain("--now");
    expect(r.stdout).not.toContain("systemctl daemon-reload");
    // the unit itself names the live paths: systemd makes them, never under the prefix
    expect(heredoc(r.stdout, `${root}/etc/systemd/system/loxmcpd.service`)).toContain("User=lxsvc");
  });

  it.skipIf(!hasSystemdAnalyze)(
    "the system unit passes `systemd-analyze verify` without warnings",
    async () => {
      const r = await print();
      const dir = join(sb.root, "unit");
      mkdirSync(dir);
      const file = join(dir, "loxmcpd.service");
      // a user that exists here: verify looks it up
      writeFileSync(
        file,
        heredoc(r.stdout, "/etc/systemd/system/loxmcpd.service").replace(
          /^(User|Group)=loxmcp$/gm,
          "$1=daemon",
        ),
      );
      const v = spawnSync("systemd-analyze", ["verify", file], {
        encoding: "utf8",
        env: { ...process.env, SYSTEMD_LOG_LEVEL: "info" },
      });
      const complaints = `${v.stdout}\n${v.stderr}`
        .split("\n")
        .filter((l) => l.includes("loxmcpd.service") || /Unknown|ignoring|invalid/i.test(l));
      expect(complaints).toEqual([]);
      expect(v.status).toBe(0);
    },
  );

  it("uninstall --print: stop, remove the unit and the socket dir; data only with --migrate/--purge", async () => {
    const plain = await sb.run(
      ["service", "uninstall", "--system", "--print", "--platform", "linux"],
      {},
      { LOXMCP_HOME: "" },
    );
    expect(plain.code, plain.stderr).toBe(0);
    expect(spawnSync("sh", ["-n"], { input: plain.stdout }).status).toBe(0);
    expect(plain.stdout).toMatch(/^systemctl disable --now loxmcpd.service \|\| true/m);
    expect(plain.stdout).toMatch(/^rm -rf \/etc\/systemd\/system\/loxmcpd.service /m);
    expect(plain.stdout).toMatch(/^rm -rf \/run\/loxmcp /m);
    expect(plain.stdout).not.toMatch(/^rm -rf \/var\/lib\/loxmcp/m);
    expect(plain.stdout).not.toContain("userdel");
    const purge = await sb.run(
      ["service", "uninstall", "--system", "--print", "--platform", "linux", "--purge", "--user", "alice"],
      {},
      { LOXMCP_HOME: "" },
    );
    expect(purge.stdout).toMatch(/^rm -rf \/var\/lib\/loxmcp /m);
    expect(purge.stdout).toMatch(/^gpasswd -d alice loxmcp/m);
    expect(purge.stdout).toMatch(/^userdel loxmcp$/m);
  });
});

describe("service install --system --print --platform darwin (LaunchDaemon)", () => {
  it("writes a LaunchDaemon plist with UserName, the same layout, and dscl commands; checked by parsing", async () => {
    const r = await sb.run(
      ["service", "install", "--system", "--print", "--platform", "darwin", "--user", "alice"],
      {},
      { LOXMCP_HOME: "" },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(spawnSync("sh", ["-n"], { input: r.stdout }).status).toBe(0);
    const plistPath = "/Library/LaunchDaemons/com.loxmcp.daemon.plist";
    const doc = parsePlist(heredoc(r.stdout, plistPath)) as Record<string, unknown>;
    expect(doc).toMatchObject({
      Label: "com.loxmcp.daemon",
      UserName: "loxmcp",
      GroupName: "loxmcp",
      RunAtLoad: true,
      KeepAlive: { SuccessfulExit: false },
      Umask: 63,
      EnvironmentVariables: { LOXMCP_SYSTEM: "1" },
      StandardOutPath: "/var/log/loxmcp/launchd.stdout.log",
      StandardErrorPath: "/var/log/loxmcp/launchd.stderr.log",
    });
    expect(doc.ProgramArguments).toEqual([process.execPath, ...DAEMON_NODE_FLAGS, DAEMON_BIN]);
    expect(r.stdout).toContain(`chown root:wheel ${plistPath} && chmod 0644 ${plistPath}`);
    expect(r.stdout).toMatch(/^dscl \. -read \/Groups\/loxmcp/m);
    expect(r.stdout).toMatch(/^dseditgroup -o edit -a alice -t user loxmcp /m);
    expect(r.stdout).toContain("install -d -m 0750 -o loxmcp -g loxmcp /usr/local/var/run/loxmcp ");
    expect(r.stdout).toContain("install -d -m 0700 -o loxmcp -g loxmcp /var/lib/loxmcp ");
    expect(r.stdout).toMatch(
      /^launchctl bootstrap system \/Library\/LaunchDaemons\/com.loxmcp.daemon.plist/m,
    );
  });
});

describe("the system daemon installed but not running (any user)", () => {
  it("the shim, status and start say `system daemon not running` and start nothing per-user", async () => {
    const root = join(sb.root, "sysroot");
    mkdirSync(join(root, "etc", "systemd", "system"), { recursive: true });
    writeFileSync(join(root, "etc", "systemd", "system", "loxmcpd.service"), "[Service]\nUser=loxmcp\n");
    const env = { LOXMCP_HOME: "", LOXMCP_SYSTEM_ROOT: root };
    const shim = spawnShim({ ...sb.env, ...env, LOXMCP_START_TIMEOUT_MS: "3000" }, ["--name", "claude-code"]);
    try {
      shim.send({
        jsonrpc: "2.0",
        id: 1,
        method: "initialize",
        params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } },
      });
      const answer = await shim.waitMessage((m) => m.id === 1, "the answer to initialize");
      expect(answer.error).toMatchObject({
        message: "system daemon not running: sudo systemctl start loxmcpd",
        data: { system: true },
      });
    } finally {
      await shim.kill();
    }
    const status = await sb.run(["status", "--json"], {}, env);
    expect(status.code).toBe(1);
    expect(JSON.parse(status.stdout)).toMatchObject({
      state: "down",
      mode: "system",
      reason: "system daemon not running: sudo systemctl start loxmcpd",
      socket: join(root, "run", "loxmcp", "daemon.sock"),
    });
    const start = await sb.run(["start", "--timeout", "2"], {}, env);
    expect(start.code).toBe(1);
    expect(start.stderr).toContain("system daemon not running: sudo systemctl start loxmcpd");
    const perUser = await sb.run(["service", "install"], {}, env);
    expect(perUser.code).toBe(1);
    expect(perUser.stderr).toContain("sudo loxmcp service uninstall --system");
    const init = await sb.run(
      ["init", "--serial", "504F94A00001", "--user", "u", "--password-stdin"],
      { input: "pw" },
      env,
    );
    expect(init.code).toBe(1);
    expect(init.stderr).toContain("sudo loxmcp init --system");
    // nothing of a per-user daemon was made under HOME
    expect(existsSync(join(sb.home, ".local", "share", "loxmcp"))).toBe(false);
    expect(existsSync(join(sb.home, ".config", "loxmcp"))).toBe(false);
  });
});

describe("doctor: which mode, and a shell client without hardening", () => {
  it("per-user mode is named; with Claude Code configured it warns and names `service install --system`", async () => {
    type Doc = { checks: Array<{ id: string; level: string; message: string; fix?: string }> };
    const before = JSON.parse((await sb.run(["doctor", "--json"])).stdout) as Doc;
    expect(before.checks.find((c) => c.id === "mode")).toMatchObject({ level: "info" });
    expect(before.checks.find((c) => c.id === "mode")?.message).toContain("per-user mode");
    expect(before.checks.find((c) => c.id === "hardened")).toBeUndefined();
    mkdirSync(sb.home, { recursive: true });
    writeFileSync(
      join(sb.home, ".claude.json"),
      JSON.stringify({
        mcpServers: { loxone: { command: "node", args: ["/x/loxmcp-shim", "--name", "claude-code"] } },
      }),
    );
    const after = JSON.parse((await sb.run(["doctor", "--json"])).stdout) as Doc;
    const warn = after.checks.find((c) => c.id === "hardened");
    expect(warn).toMatchObject({ level: "warn" });
    expect(warn?.message).toContain("not hardened");
    expect(warn?.fix).toContain("sudo loxmcp service install --system --migrate");
  });
});

describe("service --system refusals", () => {
  it("--migrate, --purge, --root, --user and --daemon-user only go with --system (usage, exit 2)", async () => {
    for (const extra of [
      ["--migrate"],
      ["--purge"],
      ["--root", "/x"],
      ["--user", "bob"],
      ["--daemon-user", "x"],
    ]) {
      const r = await sb.run(["service", "install", "--print", ...extra]);
      expect(r.code, extra.join(" ")).toBe(2);
      expect(r.stderr).toContain("only go");
      expect(r.stderr).toContain("with --system");
    }
  });

  it.skipIf(isRoot)("a real install --system needs root and changes nothing", async () => {
    const r = await sb.run([
      "service",
      "install",
      "--system",
      "--user",
      "alice",
      "--root",
      join(sb.root, "r"),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("run it with sudo");
  });

  it("without a person (no --user, no SUDO_USER) a real install is refused before anything changes", async () => {
    const r = await sb.run(
      ["service", "install", "--system", "--root", join(sb.root, "r")],
      {},
      { SUDO_USER: "" },
    );
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(isRoot ? /--user NAME/ : /sudo/);
  });
});
