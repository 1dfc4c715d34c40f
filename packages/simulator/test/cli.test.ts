import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";

const BIN = fileURLToPath(new URL("../bin/loxmcp-sim.js", import.meta.url));
let child: ChildProcess | undefined;
afterEach(() => {
  if (child && child.exitCode === null) child.kill("SIGKILL");
  child = undefined;
});

async function firstLine(p: ChildProcess): Promise<string> {
  let buf = "";
  for await (const chunk of p.stdout!) {
    buf += String(chunk);
    const i = buf.indexOf("\n");
    if (i >= 0) return buf.slice(0, i);
  }
  throw new Error(`simulator exited before printing its line (code ${p.exitCode})`);
}

describe("loxmcp-sim CLI (needs a build: pnpm exec tsc -b packages/simulator)", () => {
  it("prints one JSON line with its URLs, serves connect, exits 0 on SIGTERM", async () => {
    child = spawn(
      process.execPath,
      [BIN, "--relays", "2", "--serial", "504F94A00042", "--rate-limit", "50"],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    const info = JSON.parse(await firstLine(child)) as {
      connectUrl: string;
      serial: string;
      user: string;
      password: string;
      adminUrl: string;
      relayUrls: string[];
    };
    expect(info).toMatchObject({ serial: "504F94A00042", user: "admin", password: "loxone-demo" });
    expect(info.adminUrl).toBe(`${info.connectUrl}/__admin`);
    expect(info.relayUrls).toHaveLength(2);
    const res = await fetch(`${info.connectUrl}/${info.serial}/mcp`, { redirect: "manual" });
    expect(res.status).toBe(307);
    expect(res.headers.get("location")).toBe(info.relayUrls[0]);

    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const [code] = await exited;
    expect(code).toBe(0);
  });

  it("rejects unknown flags with a clear message and exit code 2", async () => {
    child = spawn(process.execPath, [BIN, "--no-such-flag"], { stdio: ["ignore", "pipe", "pipe"] });
    let err = "";
    child.stderr!.on("data", (d) => {
      err += String(d);
    });
    const [code] = await once(child, "exit");
    expect(code).toBe(2);
    expect(err).toContain("no-such-flag");
    expect(err).toContain("usage: loxmcp-sim");
  });
});
