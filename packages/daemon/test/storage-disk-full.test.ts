/**
 * Disk full, through the real daemon: LOXMCP_HOME (database, log, socket) on a small tmpfs that
 * the test fills after the daemon started. A write whose audit row cannot be committed is refused
 * before it is sent ("nothing was sent: the audit cannot be written — disk full (SQLITE_FULL…)"),
 * the simulator executes nothing, reads are still answered, `loxmcp/status` and `loxmcp doctor`
 * name the cause, the daemon stays up; once the filler is gone the next write runs and is
 * audited, by itself. A SIGTERM while the disk is full still exits cleanly and leaves no lock.
 *
 * Needs root (mount); skipped with a warning where tmpfs cannot be mounted.
 */
import { spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  rmSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeChaosConfig } from "../../../test-support/chaos.js";
import { type DaemonProcess, REPO_ROOT, spawnDaemon } from "../../../test-support/daemon.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { controlCall, SocketClientTransport } from "../../../test-support/socket-client.js";

const CLI_BIN = join(REPO_ROOT, "packages/cli/bin/loxmcp.js");
const TMPFS_SIZE = "600k";

// biome-ignore lint/suspicious/noExplicitAny: loose JSON from control methods and SQLite rows
type J = Record<string, any>;

let mountDir: string | undefined;
let mounted = false;
let sim: SimHandle | undefined;
let daemon: DaemonProcess | undefined;
let client: Client | undefined;

beforeAll(() => {
  mountDir = mkdtempSync("/tmp/lx-full-");
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${TMPFS_SIZE},mode=0700`, "tmpfs", mountDir], {
    encoding: "utf8",
  });
  mounted = r.status === 0;
  if (!mounted) {
    console.warn(
      `storage-disk-full: SKIPPED — cannot mount a tmpfs at ${mountDir} (${(r.stderr || r.error?.message || "").trim()}); run as root to test a full disk`,
    );
  }
});

afterAll(async () => {
  await client?.close().catch(() => {});
  if (daemon) await daemon.stop().catch(() => daemon?.kill9());
  await sim?.stop();
  if (mountDir) {
    if (mounted) spawnSync("umount", [mountDir]);
    rmSync(mountDir, { recursive: true, force: true });
  }
});

/** Writes zeros until the file system says ENOSPC (big chunks, then single bytes). */
function fill(file: string): number {
  const fd = openSync(file, "w");
  let written = 0;
  try {
    for (const size of [65_536, 4_096, 512, 1]) {
      const buf = Buffer.alloc(size);
      for (;;) {
        try {
          written += writeSync(fd, buf);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
          break;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return written;
}

const text = (r: J) => (r.content as J[]).map((c) => String(c.text ?? "")).join("\n");

describe("disk full: no unaudited write, no dead daemon", () => {
  it("refuses writes with the cause, keeps reading, says so in status and doctor, recovers by itself", async (ctx) => {
    if (!mounted || !mountDir) {
      ctx.skip();
      return;
    }
    const home = mountDir;
    sim = await withSimulator({ connectRateLimit: 10_000 });
    writeChaosConfig(home);
    const env = sim.env(home, { LOXMCP_PING_INTERVAL: "30" });
    daemon = spawnDaemon(env);
    const d = daemon;
    await d.waitReady(30_000);
    await d.waitStatus(
      (st) => Boolean((st.policy as J | undefined)?.structure),
      20_000,
      "a structure snapshot",
    );
    client = new Client({ name: "full-disk", version: "1.0.0" });
    await client.connect(new SocketClientTransport(d.socketPath, { name: "full-disk" }));
    const s = sim.sim;
    const lights = s
      .house()
      .controls.filter((c) => c.type === "LightControllerV2")
      .map((c) => c.uuid);
    const write = (uuid: string, n: number) =>
      (client as Client).callTool({ name: "control_command", arguments: { uuid, command: `changeTo/${n}` } });
    const writesRun = () =>
      s
        .stats()
        .executions.filter((e) => e.tool === "control_command")
        .reduce((a, e) => a + e.count, 0);

    // Fine before: a write runs.
    expect((await write(lights[0] as string, 10)).isError).toBeFalsy();

    const filler = join(home, "filler");
    const bytes = fill(filler);
    console.info(`storage-disk-full: filled ${bytes} bytes of ${TMPFS_SIZE}`);
    s.resetStats();

    for (let i = 0; i < 3; i++) {
      const r = (await write(lights[i % lights.length] as string, 20 + i)) as J;
      expect(r.isError, JSON.stringify(r)).toBe(true);
      expect(text(r)).toMatch(/nothing was sent: the audit cannot be written — disk full \(SQLITE_FULL/);
    }
    expect(writesRun(), "the simulator executed nothing").toBe(0);

    // Reads are still answered.
    const read = (await client.callTool({ name: "system_status", arguments: {} })) as J;
    expect(read.isError, JSON.stringify(read)).toBeFalsy();
    const found = (await client.callTool({ name: "control_find", arguments: {} })) as J;
    expect(found.isError).toBeFalsy();

    const st = await d.status();
    expect(st.storage).toMatchObject({ ok: false, cause: "disk full", code: "SQLITE_FULL" });
    expect(typeof (st.storage as J).since).toBe("string");
    expect(String((st.storage as J).fix)).toMatch(/free space/);
    expect(d.exitInfo(), "the daemon is alive").toBeUndefined();

    const doctor = spawnSync(process.execPath, [CLI_BIN, "doctor", "--json"], {
      env: { PATH: process.env.PATH ?? "", HOME: home, LOXMCP_HOME: home },
      encoding: "utf8",
      timeout: 30_000,
    });
    const report = JSON.parse(doctor.stdout) as { ok: boolean; checks: J[] };
    const storage = report.checks.find((c) => c.id === "storage");
    expect(storage, doctor.stdout).toMatchObject({ level: "problem" });
    expect(storage?.message).toMatch(/disk full/);
    expect(storage?.message).toMatch(/SQLITE_FULL/);
    expect(storage?.fix).toMatch(/free space/);
    expect(doctor.status).toBe(1);

    const human = spawnSync(process.execPath, [CLI_BIN, "status"], {
      env: { PATH: process.env.PATH ?? "", HOME: home, LOXMCP_HOME: home },
      encoding: "utf8",
      timeout: 30_000,
    });
    expect(human.stdout).toMatch(/storage\s+NOT WRITABLE: disk full/);

    // Room again: the next write runs and is audited, without a restart.
    unlinkSync(filler);
    const ok = (await write(lights[0] as string, 30)) as J;
    expect(ok.isError, JSON.stringify(ok)).toBeFalsy();
    expect(writesRun()).toBe(1);
    await d.waitStatus((x) => (x.storage as J | undefined)?.ok === true, 5_000, "storage ok again");
    const { events } = (await controlCall(d.socketPath, "loxmcp/audit", { limit: 50 })) as { events: J[] };
    const last = events.filter((e) => e.tool === "control_command").at(-1);
    expect(last).toMatchObject({ kind: "write", outcome: "ok", decision: "allowed" });
    expect(last?.args).toMatchObject({ uuid: lights[0], command: "changeTo/30" });
    // The refusals were kept in memory and stored once the disk had room.
    const refused = events.filter((e) => /audit cannot be written/.test(String(e.reason ?? "")));
    expect(refused.length).toBe(3);
    expect(refused.every((e) => e.outcome === "not-sent")).toBe(true);
    expect(d.exitInfo()).toBeUndefined();

    // Full again, then SIGTERM: a clean exit, and no lock left behind.
    const filler2 = join(home, "filler2");
    fill(filler2);
    const exit = await d.stop();
    expect(exit.code, d.stderr()).toBe(0);
    const state = d.paths.state;
    expect(
      readdirSync(state).filter((f) => f.includes("lock")),
      "no lock left",
    ).toEqual([]);
    expect(existsSync(d.socketPath), "socket removed").toBe(false);
    unlinkSync(filler2);
    daemon = undefined;
  });

  it("a disk already full at start: one clear line, exit 1, no lock or socket left behind", async (ctx) => {
    if (!mounted || !mountDir || !sim) {
      ctx.skip();
      return;
    }
    const home = join(mountDir, "second");
    writeChaosConfig(home);
    const filler = join(mountDir, "filler-start");
    fill(filler);
    try {
      const d = spawnDaemon(sim.env(home));
      const exit = await d.waitExit(20_000);
      console.info(`storage-disk-full: a start on a full disk says: ${d.stderr().trim()}`);
      expect(exit.code, d.stderr()).toBe(1);
      expect(d.stderr()).toMatch(/loxmcpd: could not start: .*(disk full|ENOSPC|no space)/i);
      const state = d.paths.state;
      const left = existsSync(state) ? readdirSync(state).filter((f) => f.includes("lock")) : [];
      expect(left, "no lock left").toEqual([]);
      expect(existsSync(d.socketPath)).toBe(false);
    } finally {
      unlinkSync(filler);
    }
  });
});
