/** The shared start helpers the shim relies on: the start lock and finding the daemon entry. */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  connectOrStartDaemon,
  DaemonUnreachableError,
  resolveDaemonCommand,
  tryStartLock,
} from "@loxmcp/common";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { REPO_ROOT } from "./helpers.js";

describe("start lock", () => {
  let home: TempHome;
  beforeEach(() => {
    home = makeHome();
  });
  afterEach(() => home.cleanup());

  it("is exclusive while its owner lives, and released only by its owner", () => {
    const file = join(home.home, "start.lock");
    const a = tryStartLock(file, 60_000);
    expect(a).toBeDefined();
    expect(tryStartLock(file, 60_000)).toBeUndefined();
    a?.release();
    expect(existsSync(file)).toBe(false);
    const b = tryStartLock(file, 60_000);
    a?.release(); // a stale handle must not remove b's lock
    expect(existsSync(file)).toBe(true);
    b?.release();
  });

  it("takes over a lock whose owner is dead or that is too old", () => {
    const file = join(home.home, "start.lock");
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], {
      encoding: "utf8",
    });
    writeFileSync(file, JSON.stringify({ pid: Number(dead.stdout), token: "x" }));
    const lock = tryStartLock(file, 60_000);
    expect(lock).toBeDefined();
    expect(readFileSync(file, "utf8")).toContain(`"pid":${process.pid}`);
    lock?.release();

    writeFileSync(file, JSON.stringify({ pid: process.pid, token: "old" }));
    expect(tryStartLock(file, 60_000)).toBeUndefined();
    const old = tryStartLock(file, -1); // everything is older than -1 ms
    expect(old).toBeDefined();
    old?.release();
  });
});

describe("daemon command", () => {
  it("prefers LOXMCP_DAEMON_BIN, runs .js entries with this node, else finds the workspace daemon", () => {
    expect(resolveDaemonCommand({ LOXMCP_DAEMON_BIN: "/x/d.js" })).toEqual({
      command: process.execPath,
      args: ["/x/d.js"],
      source: "env",
    });
    expect(resolveDaemonCommand({ LOXMCP_DAEMON_BIN: "/usr/local/bin/loxmcpd" })).toMatchObject({
      command: "/usr/local/bin/loxmcpd",
      args: [],
    });
    expect(resolveDaemonCommand({})).toEqual({
      command: process.execPath,
      args: [join(REPO_ROOT, "packages/daemon/bin/loxmcpd.js")],
      source: "workspace",
    });
  });

  it("connect-only mode fails with a clear error when nothing listens", async () => {
    const home = makeHome();
    try {
      const err = await connectOrStartDaemon({ env: { LOXMCP_HOME: home.home }, allowStart: false }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DaemonUnreachableError);
      expect((err as Error).message).toContain("no loxmcp daemon is listening");
    } finally {
      home.cleanup();
    }
  });
});
