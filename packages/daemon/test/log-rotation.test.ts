/**
 * daemon.log rotates by size: `LogFile` in-process (shift order, limits, planted links, failures
 * that must not lose lines), the settings (`LOXMCP_LOG_MAX_MB`, `LOXMCP_LOG_FILES`,
 * `log: { maxSizeMB, files }`), and the real daemon with a 64 KiB limit, driven over its socket,
 * followed by the real `loxmcp logs -f` across the rotations.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type DaemonProcess, REPO_ROOT, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { RawConnection } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";
import { ConfigError, loadConfig } from "../src/config.js";
import { createLogger, LogFile, SecretRegistry } from "../src/log.js";

const CLI_BIN = join(REPO_ROOT, "packages/cli/bin/loxmcp.js");

let h: TempHome;
let dir: string;
let file: string;
beforeEach(() => {
  h = makeHome();
  dir = join(h.home, "log");
  mkdirSync(dir, { mode: 0o700 });
  file = join(dir, "daemon.log");
});
afterEach(() => h.cleanup());

/** Lines of a file; every file must end with a newline (no line cut in two). */
function linesOf(path: string): string[] {
  const text = readFileSync(path, "utf8");
  if (text === "") return [];
  expect(text.endsWith("\n"), `${path} ends in the middle of a line`).toBe(true);
  return text.slice(0, -1).split("\n");
}

/** The log files in the directory: daemon.log, daemon.log.1 … (names only, sorted by number). */
function logNames(): string[] {
  return readdirSync(dir)
    .filter((n) => /^daemon\.log(\.\d+)?$/.test(n))
    .sort((a, b) => Number(a.split(".")[2] ?? 0) - Number(b.split(".")[2] ?? 0));
}

const record = (i: number, pad = 0) =>
  `${JSON.stringify({ level: 30, time: "2026-11-23T10:00:00.000Z", seq: i, msg: `event ${i}`, pad: "p".repeat(pad) })}\n`;

describe("LogFile", () => {
  it("rotates before a line would pass the limit, shifts .1 → .N, drops the oldest, keeps every line whole", () => {
    const max = 4096;
    const f = new LogFile(file, { maxBytes: max, files: 3 });
    let n = 0;
    for (; n < 400; n++) f.write(record(n, (n * 37) % 300));
    f.close();
    expect(logNames()).toEqual(["daemon.log", "daemon.log.1", "daemon.log.2", "daemon.log.3"]);
    expect(f.rotations).toBeGreaterThan(3);
    // Oldest to newest, the kept lines are one unbroken run ending with the last one written.
    const seqs: number[] = [];
    for (const name of ["daemon.log.3", "daemon.log.2", "daemon.log.1", "daemon.log"]) {
      const path = join(dir, name);
      expect(statSync(path).size).toBeLessThanOrEqual(max);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      for (const l of linesOf(path)) seqs.push((JSON.parse(l) as { seq: number }).seq);
    }
    expect(seqs.at(-1)).toBe(n - 1);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => (seqs[0] ?? 0) + i));
  });

  it("counts the size it opened with, and a line larger than the limit gets a file of its own", () => {
    writeFileSync(file, record(0, 3000));
    const f = new LogFile(file, { maxBytes: 4096, files: 2 });
    f.write(record(1, 2000)); // 3 KB + 2 KB > 4 KB: rotates first
    f.write(record(2, 9000)); // larger than the limit alone
    f.write(record(3));
    f.close();
    const seq = (name: string) => linesOf(join(dir, name)).map((l) => (JSON.parse(l) as { seq: number }).seq);
    expect(seq("daemon.log.2")).toEqual([1]);
    expect(seq("daemon.log.1")).toEqual([2]);
    expect(seq("daemon.log")).toEqual([3]);
  });

  it("replaces links planted at daemon.log.N instead of following them", () => {
    const target = join(h.home, "precious.txt");
    writeFileSync(target, "the person's file\n");
    chmodSync(target, 0o644);
    for (const i of [1, 2, 3]) symlinkSync(target, `${file}.${i}`);
    const f = new LogFile(file, { maxBytes: 2048, files: 2 });
    for (let i = 0; i < 100; i++) f.write(record(i, 100));
    f.close();
    expect(readFileSync(target, "utf8")).toBe("the person's file\n");
    expect(statSync(target).mode & 0o777).toBe(0o644);
    for (const name of ["daemon.log", "daemon.log.1", "daemon.log.2"]) {
      const st = lstatSync(join(dir, name));
      expect(st.isFile()).toBe(true);
      expect(st.mode & 0o777).toBe(0o600);
    }
    // a leftover beyond `files` (from a larger setting) is removed, the link with it
    expect(existsSync(`${file}.3`)).toBe(false);
  });

  it("a link planted at daemon.log after someone moved it away is refused: lines stay in the open file", () => {
    const target = join(h.home, "precious.txt");
    writeFileSync(target, "the person's file\n");
    const f = new LogFile(file, { maxBytes: 2048, files: 2 });
    f.write(record(0, 100));
    renameSync(file, join(dir, "moved.log"));
    symlinkSync(target, file);
    for (let i = 1; i < 60; i++) f.write(record(i, 100));
    f.close();
    expect(readFileSync(target, "utf8")).toBe("the person's file\n");
    const kept = linesOf(join(dir, "moved.log")).map((l) => JSON.parse(l) as { seq?: number; msg: string });
    expect(kept.filter((r) => r.seq !== undefined).map((r) => r.seq)).toEqual(
      Array.from({ length: 60 }, (_, i) => i),
    );
    expect(kept.some((r) => r.msg.includes("could not rotate") && r.msg.includes("symbolic link"))).toBe(
      true,
    );
  });

  it("when daemon.log cannot be moved aside it keeps writing, says why, and rotates once it can", () => {
    mkdirSync(`${file}.1`); // a directory: daemon.log cannot be renamed over it
    writeFileSync(join(`${file}.1`, "x"), "in the way\n");
    const f = new LogFile(file, { maxBytes: 2048, files: 1 });
    let i = 0;
    for (; i < 40; i++) f.write(record(i, 100));
    expect(logNames()).toEqual(["daemon.log", "daemon.log.1"]);
    expect(readFileSync(join(`${file}.1`, "x"), "utf8")).toBe("in the way\n");
    const warned = linesOf(file).map((l) => JSON.parse(l) as { level: number; msg: string; seq?: number });
    expect(warned.some((r) => r.level === 40 && r.msg.includes("could not rotate"))).toBe(true);
    expect(warned.filter((r) => r.seq !== undefined)).toHaveLength(40);
    rmSync(`${file}.1`, { recursive: true });
    for (; i < 80; i++) f.write(record(i, 100));
    f.close();
    expect(logNames()).toContain("daemon.log.1");
    expect(statSync(`${file}.1`).isFile()).toBe(true);
  });

  it("files: 0 starts daemon.log over without keeping the old lines", () => {
    const f = new LogFile(file, { maxBytes: 2048, files: 0 });
    for (let i = 0; i < 50; i++) f.write(record(i, 100));
    f.close();
    expect(logNames()).toEqual(["daemon.log"]);
    expect(statSync(file).size).toBeLessThanOrEqual(2048);
    expect(
      linesOf(file)
        .map((l) => (JSON.parse(l) as { seq: number }).seq)
        .at(-1),
    ).toBe(49);
  });

  it("a file truncated behind its back (copytruncate) is counted again instead of rotated", () => {
    const f = new LogFile(file, { maxBytes: 4096, files: 2 });
    f.write(record(0, 3000));
    truncateSync(file, 0);
    f.write(record(1, 2000));
    f.write(record(2, 1000));
    f.close();
    expect(logNames()).toEqual(["daemon.log"]);
    expect(linesOf(file).map((l) => (JSON.parse(l) as { seq: number }).seq)).toEqual([1, 2]);
  });

  it("maxBytes 0 never rotates", () => {
    const f = new LogFile(file, { maxBytes: 0, files: 5 });
    for (let i = 0; i < 50; i++) f.write(record(i, 100));
    f.close();
    expect(logNames()).toEqual(["daemon.log"]);
    expect(linesOf(file)).toHaveLength(50);
  });

  it("createLogger scrubs what goes into every rotated file", () => {
    const registry = new SecretRegistry();
    const secret = `Sentinel-${randomBytes(6).toString("hex")}`;
    registry.add(secret);
    const { logger, close } = createLogger({
      level: "info",
      file,
      logDir: dir,
      registry,
      rotate: { maxBytes: 4096, files: 2 },
    });
    for (let i = 0; i < 200; i++) logger.info({ i, note: `said ${secret}` }, `line ${i} with ${secret}`);
    close();
    expect(logNames()).toEqual(["daemon.log", "daemon.log.1", "daemon.log.2"]);
    for (const name of logNames()) {
      const text = readFileSync(join(dir, name), "utf8");
      expect(text).not.toContain(secret);
      expect(text).toContain("[redacted]");
      for (const l of linesOf(join(dir, name))) JSON.parse(l);
    }
  });
});

describe("log rotation settings", () => {
  const base = (home: string) => ({
    LOXMCP_HOME: home,
    LOXONE_SERIAL: "504F94A00001",
    LOXONE_USER: "u",
    LOXONE_PASSWORD: "pw-pw-pw",
  });
  const configError = (fn: () => unknown): ConfigError => {
    try {
      fn();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      return e as ConfigError;
    }
    throw new Error("expected a ConfigError");
  };
  const writeConfig = (json: unknown) => {
    mkdirSync(join(h.home, "config"), { recursive: true, mode: 0o700 });
    writeFileSync(join(h.home, "config", "config.json"), JSON.stringify(json));
  };

  it("defaults to 10 MB and 5 files; config.json sets them, the environment wins", () => {
    expect(loadConfig({ env: base(h.home) }).logRotation).toEqual({ maxBytes: 10 * 1024 * 1024, files: 5 });
    writeConfig({ log: { maxSizeMB: 2, files: 3 } });
    expect(loadConfig({ env: base(h.home) }).logRotation).toEqual({ maxBytes: 2 * 1024 * 1024, files: 3 });
    expect(
      loadConfig({ env: { ...base(h.home), LOXMCP_LOG_MAX_MB: "0.0625", LOXMCP_LOG_FILES: "0" } })
        .logRotation,
    ).toEqual({ maxBytes: 65536, files: 0 });
    expect(loadConfig({ env: { ...base(h.home), LOXMCP_LOG_MAX_MB: "0" } }).logRotation.maxBytes).toBe(0);
  });

  it("refuses bad values naming the key", () => {
    for (const v of ["-1", "abc", "0.001", "20000"]) {
      const e = configError(() => loadConfig({ env: { ...base(h.home), LOXMCP_LOG_MAX_MB: v } }));
      expect(e.key).toBe("LOXMCP_LOG_MAX_MB");
      expect(e.message).toMatch(/^LOXMCP_LOG_MAX_MB ".*" must be a size in MB between 0.01 and 10240/);
    }
    for (const v of ["-1", "2.5", "many", "101"]) {
      const e = configError(() => loadConfig({ env: { ...base(h.home), LOXMCP_LOG_FILES: v } }));
      expect(e.key).toBe("LOXMCP_LOG_FILES");
      expect(e.message).toContain("whole number of rotated log files");
    }
    writeConfig({ log: { files: 1000 } });
    const e = configError(() => loadConfig({ env: base(h.home) }));
    expect(e.key).toBe("log.files");
    expect(e.message).toContain("config.json");
    writeConfig({ log: { maxSizeMB: "big" } });
    expect(configError(() => loadConfig({ env: base(h.home) })).key).toBe("config.json:log.maxSizeMB");
    writeConfig({ log: { maxSize: 3 } });
    const unknown = configError(() => loadConfig({ env: base(h.home) }));
    expect(unknown.key).toBe("config.json:log.maxSize");
    expect(unknown.message).toContain('did you mean "log.maxSizeMB"?');
  });
});

describe("the real daemon rotates daemon.log and `loxmcp logs -f` follows it", () => {
  let sim: SimHandle;
  let d: DaemonProcess | undefined;
  let follower: ChildProcess | undefined;
  const SENTINEL = `Sentinel-Pw-${randomBytes(8).toString("hex")}`;
  const LIMIT = 64 * 1024;
  const FILES = 3;

  afterEach(async () => {
    follower?.kill("SIGKILL");
    follower = undefined;
    await d?.stop();
    d = undefined;
    await sim?.stop();
  });

  /** One control connection whose hello carries the sentinel (logged at debug, scrubbed) and `version`. */
  async function helloAndStatus(socket: string, seq: number, version: string): Promise<void> {
    const c = await RawConnection.open(socket);
    try {
      await c.send({
        jsonrpc: "2.0",
        method: "loxmcp/hello",
        params: { kind: "cli", name: `${SENTINEL}-${"n".repeat(4000)}`, pid: process.pid, version },
      });
      await c.send({ jsonrpc: "2.0", id: seq, method: "loxmcp/status", params: {} });
      await c.waitMessage((m) => m.id === seq);
    } finally {
      c.close();
    }
  }

  it("64 KiB files, at most 3 rotated, no line split, 0600, no sentinel; the follower prints each line once", async () => {
    sim = await withSimulator({ password: SENTINEL });
    d = spawnDaemon(
      sim.env(h.home, {
        LOXMCP_LOG_LEVEL: "debug",
        LOXMCP_LOG_MAX_MB: String(LIMIT / 1024 / 1024),
        LOXMCP_LOG_FILES: String(FILES),
      }),
    );
    await d.waitReady();

    // The real CLI, started before the first rotation, printing raw JSON lines.
    const f = spawn(process.execPath, [CLI_BIN, "logs", "-f", "-n", "0", "--json"], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: h.home, LOXMCP_HOME: h.home },
    });
    follower = f;
    let out = "";
    f.stdout?.setEncoding("utf8").on("data", (s: string) => {
      out += s;
    });
    const printed = () => out.split("\n").slice(0, -1);
    // The follower is reading once a line written after its start comes out.
    const socket = d.socketPath;
    let probe = 0;
    await waitFor(
      async () => {
        await helloAndStatus(socket, 1_000_000 + probe, `probe-${probe}`);
        probe++;
        return out.includes('"probe-');
      },
      { what: "the follower to print a first hello", intervalMs: 100 },
    );

    // Until the first file (with "configuration loaded") has been dropped as the oldest: ~4 KB
    // lines, 4 connections at a time, so that the daemon often rotates more than once between
    // two polls of the follower (every 200 ms). The follower is let catch up every 24 calls
    // (~1.5 files), so no file it has not read yet can be deleted (3 are kept).
    let seq = 0;
    const firstDropped = () =>
      existsSync(`${file}.${FILES}`) &&
      !readFileSync(`${file}.${FILES}`, "utf8").includes("configuration loaded");
    while (!firstDropped()) {
      for (let k = 0; k < 6; k++, seq += 4) {
        await Promise.all([0, 1, 2, 3].map((j) => helloAndStatus(socket, seq + j, `seq-${seq + j}`)));
      }
      const last = seq - 1;
      await waitFor(() => out.includes(`"seq-${last}"`), { what: `the follower to print hello seq-${last}` });
      expect(seq).toBeLessThan(2000);
    }
    // Then one last call: everything before it must have come out once the follower prints it.
    const lastSeq = seq;
    await helloAndStatus(socket, lastSeq, `seq-${lastSeq}`);
    await waitFor(() => out.includes(`"seq-${lastSeq}"`), { what: "the follower to print the last hello" });

    // Files: daemon.log and .1 … .3, none over the limit, every line whole JSON, 0600, no sentinel.
    expect(logNames()).toEqual([
      "daemon.log",
      ...Array.from({ length: FILES }, (_, i) => `daemon.log.${i + 1}`),
    ]);
    const kept: string[] = [];
    for (const name of [...logNames()].reverse()) {
      const path = join(dir, name);
      const st = statSync(path);
      expect(st.size, `${name} is over the limit`).toBeLessThanOrEqual(LIMIT);
      expect(st.mode & 0o777).toBe(0o600);
      const text = readFileSync(path, "utf8");
      expect(text).not.toContain(SENTINEL);
      expect(text).toContain("[redacted]");
      for (const l of linesOf(path)) {
        expect(() => JSON.parse(l), `not JSON in ${name}: ${l.slice(0, 80)}`).not.toThrow();
        kept.push(l);
      }
    }

    // The follower: every hello from 0 to the last exactly once and in order, and the tail of
    // what it printed is exactly what the files hold (nothing missing, nothing twice).
    const lines = printed();
    expect(out).not.toContain(SENTINEL);
    const helloSeqs = lines
      .map((l) => (JSON.parse(l) as { msg?: string; hello?: { version?: string } }).hello?.version)
      .filter((v): v is string => v?.startsWith("seq-") === true)
      .map((v) => Number(v.slice(4)));
    // (4 at a time: their order in the log is not fixed)
    expect(helloSeqs.sort((x, y) => x - y)).toEqual(Array.from({ length: lastSeq + 1 }, (_, i) => i));
    expect(new Set(lines).size).toBe(lines.length);
    const lastHello = (ls: string[]) => ls.findIndex((l) => l.includes(`"seq-${lastSeq}"`));
    const upTo = kept.slice(0, lastHello(kept) + 1);
    expect(upTo.length).toBeGreaterThan(50);
    expect(lines.slice(lastHello(lines) + 1 - upTo.length, lastHello(lines) + 1)).toEqual(upTo);
  }, 120_000);
});
