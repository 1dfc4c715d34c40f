/**
 * `loxmcp service install|status|uninstall` on Linux with a stand-in `systemctl` on PATH (this
 * machine has no systemd user manager): proves the unit lands in ~/.config/systemd/user and
 * that the right systemctl commands run in order. The unit's content is verified by
 * systemd-analyze in service.test.ts.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DAEMON_NODE_FLAGS } from "@loxmcp/common";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { spawnDaemon } from "../../../test-support/daemon.js";
import { withSimulator } from "../../../test-support/sim.js";
import { CliSandbox, DAEMON_BIN } from "./helpers.js";

const linux = process.platform === "linux";
if (!linux) console.warn("SKIPPED service install flow test: it exercises the systemd (Linux) path");

let sb: CliSandbox;
let calls: string;

beforeEach(() => {
  sb = new CliSandbox();
  const bin = join(sb.root, "bin");
  mkdirSync(bin);
  calls = join(sb.root, "systemctl.calls");
  const stub = join(bin, "systemctl");
  writeFileSync(
    stub,
    `#!/bin/sh
echo "$*" >> '${calls}'
case "$*" in
  *is-active*) echo inactive; exit 3 ;;
  *is-enabled*) echo disabled; exit 1 ;;
esac
exit 0
`,
  );
  chmodSync(stub, 0o755);
  sb.env = { ...sb.env, PATH: `${bin}:${sb.env.PATH}` };
});
afterEach(() => sb.cleanup());

describe.skipIf(!linux)("loxmcp service install/uninstall (systemd user unit)", () => {
  it("writes the unit, reloads and enables it, and removes it again", async () => {
    const inst = await sb.run(["service", "install", "--allow-root"]);
    expect(inst.code, inst.stderr).toBe(0);
    const unit = join(sb.home, ".config", "systemd", "user", "loxmcpd.service");
    expect(readFileSync(unit, "utf8")).toContain(
      `ExecStart=${process.execPath} ${DAEMON_NODE_FLAGS.join(" ")} ${DAEMON_BIN}`,
    );
    for (const d of ["config", "state", "log", "run"]) expect(existsSync(join(sb.loxmcpHome, d))).toBe(true);
    expect(readFileSync(calls, "utf8").trim().split("\n")).toEqual([
      "--user daemon-reload",
      "--user enable --now loxmcpd.service",
    ]);
    expect(inst.stdout).toContain(`wrote ${unit}`);

    const st = await sb.run(["service", "status"]);
    expect(st.code).toBe(1);
    expect(st.stdout).toContain("systemd: disabled, inactive");

    const un = await sb.run(["service", "uninstall"]);
    expect(un.code).toBe(0);
    expect(existsSync(unit)).toBe(false);
    expect(readFileSync(calls, "utf8")).toContain("--user disable --now loxmcpd.service");
  });

  it("hands over from a daemon a client started: installs, stops that daemon, starts the unit", async () => {
    const sim = await withSimulator();
    const d = spawnDaemon(sim.env(sb.loxmcpHome));
    try {
      await d.waitReady();
      const r = await sb.run(["service", "install", "--allow-root"], {}, sim.env(sb.loxmcpHome));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`handing over from the daemon started outside the service (pid ${d.pid})`);
      expect((await d.waitExit()).code).toBe(0);
      const lines = readFileSync(calls, "utf8").trim().split("\n");
      expect(lines.indexOf("--user enable --now loxmcpd.service")).toBeGreaterThan(-1);
      expect(lines.at(-1)).toBe("--user start loxmcpd.service");
    } finally {
      await d.stop().catch(() => d.kill9());
      await sim.stop();
    }
  });

  it("a failing enable leaves nothing behind: no unit file, doctor does not call it installed", async () => {
    writeFileSync(
      join(sb.root, "bin", "systemctl"),
      `#!/bin/sh
echo "$*" >> '${calls}'
case "$*" in
  *"enable --now"*) echo 'Failed to start loxmcpd.service: Unit loxmcpd.service has a bad setting.' >&2; exit 1 ;;
  *is-active*) echo inactive; exit 3 ;;
  *is-enabled*) echo disabled; exit 1 ;;
esac
exit 0
`,
    );
    const unit = join(sb.home, ".config", "systemd", "user", "loxmcpd.service");
    const r = await sb.run(["service", "install", "--allow-root"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("enable --now loxmcpd.service` failed (exit 1): Failed to start");
    expect(existsSync(unit)).toBe(false);
    // enable may have linked the unit before starting it failed: unlinked, and systemd told
    expect(readFileSync(calls, "utf8").trim().split("\n")).toEqual([
      "--user daemon-reload",
      "--user enable --now loxmcpd.service",
      "--user disable loxmcpd.service",
      "--user daemon-reload",
    ]);
    const st = await sb.run(["service", "status"]);
    expect(st.stdout).toContain("(absent)");
    const doctor = await sb.run(["doctor", "--json"]);
    const svc = (JSON.parse(doctor.stdout) as { checks: Array<{ id: string; message: string }> }).checks.find(
      (c) => c.id === "service",
    );
    expect(svc?.message).toMatch(/^no systemd service installed/);
  });

  it("a failing reinstall puts the previous unit back as it was", async () => {
    const unit = join(sb.home, ".config", "systemd", "user", "loxmcpd.service");
    mkdirSync(join(sb.home, ".config", "systemd", "user"), { recursive: true });
    writeFileSync(unit, "# the unit that worked\n");
    writeFileSync(join(sb.root, "bin", "systemctl"), '#!/bin/sh\necho "$*" >> \'' + calls + "'\nexit 1\n");
    const r = await sb.run(["service", "install", "--allow-root"]);
    expect(r.code).toBe(1);
    expect(readFileSync(unit, "utf8")).toBe("# the unit that worked\n");
    // the previous unit keeps its enablement: no disable
    expect(readFileSync(calls, "utf8")).not.toContain("disable");
  });

  it("reports a failing systemctl with its output and what to do", async () => {
    writeFileSync(
      join(sb.root, "bin", "systemctl"),
      "#!/bin/sh\necho 'Failed to connect to bus: No medium found' >&2\nexit 1\n",
    );
    const r = await sb.run(["service", "install", "--allow-root"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("systemctl --user daemon-reload` failed (exit 1): Failed to connect to bus");
    expect(r.stderr).toContain("loxmcp start");
    expect(existsSync(join(sb.home, ".config", "systemd", "user", "loxmcpd.service"))).toBe(false);
  });
});
