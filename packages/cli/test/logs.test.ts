import { spawn } from "node:child_process";
import { appendFileSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
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
});
