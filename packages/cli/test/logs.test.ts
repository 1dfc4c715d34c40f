import { spawn } from "node:child_process";
import { appendFileSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitFor } from "../../../test-support/wait.js";
import { CLI_BIN, CliSandbox, REPO_ROOT } from "./helpers.js";

let sb: CliSandbox;
let logFile: string;
const t0 = Date.parse("2026-11-23T10:00:00Z");

function line(level: number, msg: string, extra: Record<string, unknown> = {}, i = 0): string {
  return `${JSON.stringify({ level, time: t0 + i * 1000, pid: 42, hostname: "h", component: "relay", msg, ...extra })}\n`;
}

beforeEach(() => {
  sb = new CliSandbox({ TZ: "UTC" });
  mkdirSync(join(sb.loxmcpHome, "log"), { recursive: true });
  logFile = join(sb.loxmcpHome, "log", "daemon.log");
});
afterEach(() => sb.cleanup());

describe("loxmcp logs", () => {
  it("pretty-prints pino lines with time, level, component, message and fields", async () => {
    writeFileSync(
      logFile,
      line(30, "relay resolved", { entry: "https://1-2-3-4.X.dyndns.loxonecloud.com:443/mcp", ms: 12 }) +
        line(
          50,
          "login was rejected",
          { err: { message: "check LOXONE_PASSWORD", code: "AUTH_FAILED" } },
          1,
        ) +
        "not json at all\n",
    );
    const r = await sb.run(["logs"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toEqual([
      "2026-11-23 10:00:00.000 INFO  [relay] relay resolved  entry=https://1-2-3-4.X.dyndns.loxonecloud.com:443/mcp ms=12",
      '2026-11-23 10:00:01.000 ERROR [relay] login was rejected  err="check LOXONE_PASSWORD (AUTH_FAILED)"',
      "not json at all",
    ]);
  });

  it("-n limits to the last N lines and --level filters at or above", async () => {
    let text = "";
    for (let i = 0; i < 200; i++) text += line(i % 3 === 0 ? 40 : 30, `event ${i}`, {}, i);
    writeFileSync(logFile, text);
    const last = await sb.run(["logs", "-n", "3"]);
    expect(
      last.stdout
        .trimEnd()
        .split("\n")
        .map((l) => l.split("] ")[1]),
    ).toEqual(["event 197", "event 198", "event 199"]);
    const warn = await sb.run(["logs", "-n", "2", "--level", "warn"]);
    expect(
      warn.stdout
        .trimEnd()
        .split("\n")
        .map((l) => l.split("] ")[1]),
    ).toEqual(["event 195", "event 198"]);
    const json = await sb.run(["logs", "-n", "1", "--json", "--level", "warn"]);
    expect(JSON.parse(json.stdout)).toMatchObject({ level: 40, msg: "event 198" });
    const bad = await sb.run(["logs", "--level", "loud"]);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain("Allowed choices");
  });

  it("masks values under secret-looking keys", async () => {
    writeFileSync(
      logFile,
      line(30, "x", { password: "S3NTINEL-pw", nested: { accessToken: "S3NTINEL-tok" } }),
    );
    const r = await sb.run(["logs"]);
    expect(r.stdout).not.toContain("S3NTINEL");
    expect(r.stdout).toContain("password=[redacted]");
  });

  it("says what to do when there is no log yet", async () => {
    const r = await sb.run(["logs"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("no daemon log at");
    expect(r.stderr).toContain("loxmcp start");
  });

  it("-f follows appends, truncation and rotation", async () => {
    writeFileSync(logFile, line(30, "old line"));
    const child = spawn(process.execPath, [CLI_BIN, "logs", "-f", "-n", "1"], {
      cwd: REPO_ROOT,
      env: sb.env,
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
    try {
      await waitFor(() => out.includes("old line"), { what: "initial line" });
      appendFileSync(logFile, line(30, "appended line"));
      await waitFor(() => out.includes("appended line"), { what: "appended line" });
      writeFileSync(logFile, line(30, "after truncate"));
      await waitFor(() => out.includes("after truncate"), { what: "line after truncation" });
      renameSync(logFile, `${logFile}.1`);
      writeFileSync(logFile, line(30, "after rotate"));
      await waitFor(() => out.includes("after rotate"), { what: "line after rotation" });
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
    expect(out.match(/old line/g)).toHaveLength(1);
  });

  it("-n reads on into daemon.log.1, .2 … when daemon.log holds fewer lines, never through a link", async () => {
    const events = (from: number, to: number) => {
      let text = "";
      for (let i = from; i < to; i++) text += line(i % 2 === 0 ? 40 : 30, `event ${i}`, {}, i);
      return text;
    };
    writeFileSync(`${logFile}.2`, events(0, 5));
    writeFileSync(`${logFile}.1`, events(5, 10));
    writeFileSync(logFile, events(10, 12));
    const secret = join(sb.root, "elsewhere.log");
    writeFileSync(secret, line(30, "not the daemon's"));
    symlinkSync(secret, `${logFile}.3`);
    const msgs = (stdout: string) =>
      stdout
        .trimEnd()
        .split("\n")
        .map((l) => l.split("] ")[1]);
    expect(msgs((await sb.run(["logs", "-n", "8"])).stdout)).toEqual(
      [4, 5, 6, 7, 8, 9, 10, 11].map((i) => `event ${i}`),
    );
    expect(msgs((await sb.run(["logs", "-n", "4", "--level", "warn"])).stdout)).toEqual(
      [4, 6, 8, 10].map((i) => `event ${i}`),
    );
    const all = await sb.run(["logs", "-n", "100"]);
    expect(msgs(all.stdout)).toHaveLength(12);
    expect(all.stdout).not.toContain("not the daemon's");
  });

  it("-f prints every line once across several rotations between two of its polls", async () => {
    writeFileSync(logFile, line(30, "before"));
    const child = spawn(process.execPath, [CLI_BIN, "logs", "-f", "-n", "0", "--json"], {
      cwd: REPO_ROOT,
      env: sb.env,
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      out += d;
    });
    const exited = new Promise<number | null>((r) => child.on("close", (code) => r(code)));
    const msgs = () =>
      out
        .split("\n")
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { msg: string }).msg);
    /** What the daemon does: rename daemon.log.1 → .2, daemon.log → .1, start a new daemon.log. */
    const rotate = (first: string) => {
      renameSync(`${logFile}.1`, `${logFile}.2`);
      renameSync(logFile, `${logFile}.1`);
      writeFileSync(logFile, line(30, first));
    };
    try {
      // The follower reads from the end once a line appended now comes out.
      await waitFor(
        () => {
          appendFileSync(logFile, line(30, "probe"));
          return out.includes("probe");
        },
        { what: "the follower to start", intervalMs: 100 },
      );
      // All synchronous, well within one poll: the tail of the file being followed, then two
      // rotations, so the follower finds its file at daemon.log.2 and must read .1 in between.
      appendFileSync(logFile, line(30, "a1") + line(30, "a2"));
      writeFileSync(`${logFile}.1`, ""); // so that the first rename has something to move
      rotate("b1");
      appendFileSync(logFile, line(30, "b2"));
      rotate("c1");
      await waitFor(() => out.includes("c1"), { what: "the line after the second rotation" });
      appendFileSync(logFile, line(30, "c2"));
      await waitFor(() => out.includes("c2"), { what: "a line appended after that" });
    } finally {
      child.kill("SIGTERM");
    }
    expect(await exited).toBe(0);
    expect(msgs().filter((m) => m !== "probe")).toEqual(["a1", "a2", "b1", "b2", "c1", "c2"]);
  });
});
