import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CliSandbox } from "./helpers.js";

const SENTINEL = "doctor-S3NTINEL-pw";

let sb: CliSandbox;
beforeEach(() => {
  sb = new CliSandbox();
});
afterEach(() => sb.cleanup());

interface DoctorJson {
  ok: boolean;
  checks: Array<{ id: string; level: string; message: string; fix?: string }>;
}

describe("loxmcp doctor", () => {
  it("finds a loosened .env mode, names the fix, and never prints the password", async () => {
    const init = await sb.run(["init", "--serial", "504F94A00001", "--user", "ai", "--password-stdin"], {
      input: SENTINEL,
    });
    expect(init.code).toBe(0);
    const envFile = join(sb.loxmcpHome, "config", ".env");
    expect(readFileSync(envFile, "utf8")).toContain(SENTINEL);

    const clean = await sb.run(["doctor", "--json"]);
    const cleanDoc = JSON.parse(clean.stdout) as DoctorJson;
    expect(cleanDoc.checks.find((c) => c.id === "file.env")?.level).toBe("ok");
    expect(cleanDoc.checks.find((c) => c.id === "config.password")?.level).toBe("ok");
    // no daemon: a warning, not a failure; the clock check is skipped (connect URL unreachable)
    expect(cleanDoc.checks.find((c) => c.id === "daemon")?.level).toBe("warn");
    expect(cleanDoc.checks.find((c) => c.id === "clock")?.level).toBe("skip");
    expect(clean.code, clean.stdout).toBe(0);
    expect(cleanDoc.ok).toBe(true);

    chmodSync(envFile, 0o644);
    const human = await sb.run(["doctor"]);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain(`.env ${envFile} has mode 0644`);
    expect(human.stdout).toContain(`fix: chmod 600 ${envFile}`);
    expect(human.stdout).toContain("1 problem(s) found");
    const json = await sb.run(["doctor", "--json"]);
    expect(json.code).toBe(1);
    const doc = JSON.parse(json.stdout) as DoctorJson;
    expect(doc.ok).toBe(false);
    expect(doc.checks.find((c) => c.id === "file.env")).toMatchObject({
      level: "problem",
      fix: `chmod 600 ${envFile}`,
    });
    for (const out of [clean, human, json]) expect(out.stdout + out.stderr).not.toContain(SENTINEL);
  });

  it("flags a loose directory and missing credentials", async () => {
    await sb.run(["init", "--serial", "504F94A00001", "--user", "ai", "--password-command", "echo x"]);
    const dir = join(sb.loxmcpHome, "config");
    chmodSync(dir, 0o755);
    const r = await sb.run(["doctor", "--json"], {}, { LOXMCP_HOME: sb.loxmcpHome });
    const doc = JSON.parse(r.stdout) as DoctorJson;
    expect(r.code).toBe(1);
    expect(doc.checks.find((c) => c.id === "dir.config")).toMatchObject({
      level: "problem",
      fix: `chmod 700 ${dir}`,
    });
    expect(doc.checks.find((c) => c.id === "config.password")?.message).toContain("LOXONE_PASSWORD_COMMAND");

    const empty = new CliSandbox();
    try {
      const e = JSON.parse((await empty.run(["doctor", "--json"])).stdout) as DoctorJson;
      expect(e.checks.find((c) => c.id === "config.serial")?.level).toBe("problem");
      expect(e.checks.find((c) => c.id === "config.password")?.fix).toContain("loxmcp init");
    } finally {
      empty.cleanup();
    }
  });

  it("finds a client config whose shim path no longer exists and names the command that fixes it", async () => {
    const file = join(sb.home, ".cursor", "mcp.json");
    mkdirSync(join(sb.home, ".cursor"), { recursive: true });
    writeFileSync(
      file,
      JSON.stringify({
        mcpServers: { loxone: { command: process.execPath, args: ["/gone/loxmcp-shim.js"] } },
      }),
    );
    const r = await sb.run(["doctor", "--json"]);
    const doc = JSON.parse(r.stdout) as DoctorJson;
    expect(r.code).toBe(1);
    expect(doc.checks.find((c) => c.id === "client.cursor")).toMatchObject({
      level: "problem",
      fix: "`loxmcp client-config cursor --write`",
    });
    const fixed = await sb.run(["client-config", "cursor", "--write"]);
    expect(fixed.code).toBe(0);
    const again = JSON.parse((await sb.run(["doctor", "--json"])).stdout) as DoctorJson;
    expect(again.checks.find((c) => c.id === "client.cursor")?.level).toBe("ok");
  });
});
