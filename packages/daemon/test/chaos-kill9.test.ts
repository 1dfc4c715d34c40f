/**
 * Chaos: kill -9 the daemon under load from several real shims, three times. The shims restart it
 * (single-instance: racing shims start one) and carry on. After each kill the SQLite database
 * passes `PRAGMA integrity_check`; tokens survive (the simulator sees one login in total); every
 * request got exactly one answer (in-flight calls an explicit error); no write ran twice; audit
 * rows of calls that completed survive.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { resolvePaths } from "@loxmcp/common";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  checkExecutions,
  LoadGenerator,
  outcomeSummary,
  ResponseLedger,
  uniqueWrites,
  writeChaosConfig,
} from "../../../test-support/chaos.js";
import { DAEMON_BIN, type DaemonProcess, REPO_ROOT, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { controlCall } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";

const SHIM_BIN = join(REPO_ROOT, "packages/shim/bin/loxmcp-shim.js");

/** Alive = exists and is not a zombie (a SIGKILLed child may linger as a zombie until reaped). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

function integrity(dbPath: string): string {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return String(db.pragma("integrity_check", { simple: true }));
  } finally {
    db.close();
  }
}

describe("chaos: kill -9 of the daemon under load, repeatedly", () => {
  let home: TempHome;
  let sim: SimHandle;
  let first: DaemonProcess;
  let env: Record<string, string>;
  const clients: Client[] = [];
  const ledgers: ResponseLedger[] = [];
  const shimStderr: string[] = [];

  beforeAll(async () => {
    home = makeHome();
    sim = await withSimulator({ connectRateLimit: 10_000 });
    writeChaosConfig(home.home);
    // Credentials live in the config dir's .env, as after `loxmcp init`: the daemon restarted by a
    // shim finds them there (the shims themselves never get them).
    const s = sim.sim;
    writeFileSync(
      join(home.home, "config", ".env"),
      `LOXONE_SERIAL=${s.serial}\nLOXONE_USER=${s.user}\nLOXONE_PASSWORD=${s.password}\nLOXONE_CONNECT_URL=${s.connectUrl}\n`,
      { mode: 0o600 },
    );
    mkdirSync(join(home.home, "log"), { recursive: true, mode: 0o700 });
    env = {
      LOXMCP_HOME: home.home,
      LOXMCP_PING_INTERVAL: "1",
      LOXMCP_DAEMON_BIN: DAEMON_BIN,
      LOXMCP_NO_SERVICE: "1",
      LOXMCP_RECONNECT_TIMEOUT_MS: "30000",
    };
    first = spawnDaemon(env);
    await first.waitReady(30_000);
    for (let i = 0; i < 3; i++) {
      const t = new StdioClientTransport({
        command: process.execPath,
        args: [SHIM_BIN, "--name", `kill9-${i}`],
        env: { PATH: process.env.PATH ?? "", ...env },
        stderr: "pipe",
        cwd: REPO_ROOT,
      });
      let err = "";
      t.stderr?.on("data", (d: Buffer) => {
        err += d.toString();
        shimStderr[i] = err;
      });
      const c = new Client({ name: `kill9-${i}`, version: "1.0.0" });
      await c.connect(t);
      ledgers.push(new ResponseLedger(t));
      clients.push(c);
    }
  });

  afterAll(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    // The daemon now running was started (detached) by a shim: stop it by its pid.
    const paths = resolvePaths({ LOXMCP_HOME: home?.home ?? "/nonexistent" });
    try {
      const st = (await controlCall(paths.socket, "loxmcp/status", {}, { timeoutMs: 2000 })) as {
        pid: number;
      };
      process.kill(st.pid, "SIGTERM");
      await waitFor(() => !alive(st.pid), { timeoutMs: 10_000, what: "the daemon to exit" }).catch(() => {
        process.kill(st.pid, "SIGKILL");
      });
    } catch {
      // no daemon left
    }
    await first?.kill9();
    await sim?.stop();
    home?.cleanup();
  });

  it("shims reconnect, the DB stays intact, tokens and audit rows survive, no write runs twice", async () => {
    const s = sim.sim;
    const paths = resolvePaths({ LOXMCP_HOME: home.home });
    const load = new LoadGenerator(clients, {
      readTool: "system_status",
      writeTool: "control_command",
      nextWrite: uniqueWrites(s.house()),
    });
    const recovered = async (what: string) => {
      const since = Date.now();
      await waitFor(() => load.okPerClientSince(since).every((n) => n >= 2), {
        timeoutMs: 30_000,
        what: `every shim to succeed again after ${what} (outcomes ${JSON.stringify(outcomeSummary(load.records))}; shim stderr: ${shimStderr.join(" | ").slice(-800)})`,
      });
    };

    load.start();
    const pids: number[] = [];
    try {
      await recovered("start");
      for (let round = 1; round <= 3; round++) {
        const { pid } = (await controlCall(paths.socket, "loxmcp/status")) as { pid: number };
        pids.push(pid);
        process.kill(pid, "SIGKILL");
        await waitFor(() => !alive(pid), { timeoutMs: 5000, what: `daemon ${pid} to die` });
        expect(integrity(paths.db), `integrity_check after kill ${round}`).toBe("ok");
        await recovered(`kill -9 #${round}`);
      }
    } finally {
      await load.stop();
    }

    const { pid: last } = (await controlCall(paths.socket, "loxmcp/status")) as { pid: number };
    expect(new Set([...pids, last]).size, "a new daemon after every kill").toBe(4);
    expect(integrity(paths.db)).toBe("ok");

    const problems = ledgers.flatMap((l, i) => l.problems().map((p) => `shim ${i}: ${p}`));
    console.info(
      `kill -9 ×3: ${JSON.stringify(outcomeSummary(load.records))}; daemons ${[...pids, last].join(" → ")}`,
    );
    expect(problems).toEqual([]);
    const stats = s.stats();
    expect(checkExecutions(stats, "control_command", load.records)).toEqual([]);
    expect(stats.logins, "tokens survive kill -9: no re-login").toBe(1);
    const summary = outcomeSummary(load.records);
    expect(summary["write:ok"] ?? 0, JSON.stringify(summary)).toBeGreaterThan(5);
    for (const r of load.records.filter((x) => x.outcome !== "ok")) {
      expect(r.message, "in-flight failures are explained").toMatch(/\w{3,}/);
      expect(r.message).not.toMatch(/timed out/i);
    }

    // Every write that completed with success before a kill has its audit row. What is checked is
    // the database (the audit_events table), not where the code that writes it lives: if the
    // table is missing or empty this fails; it never skips.
    const db = new Database(paths.db, { readonly: true, fileMustExist: true });
    try {
      const table = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'audit_events'")
        .get();
      expect(
        table,
        "the audit_events table must exist: audit survival after kill -9 is checked there",
      ).toBeDefined();
      const rows = db
        .prepare("SELECT args, command, target, outcome FROM audit_events WHERE tool = ?")
        .all("control_command") as Array<{ args: string; command: string | null; target: string | null }>;
      expect(
        rows.length,
        "audit rows of control_command (writes ran, so there must be some)",
      ).toBeGreaterThan(0);
      const audited = new Set(
        rows.map((r) => {
          const a = JSON.parse(r.args) as { uuid?: string; command?: string };
          return `${a.uuid ?? r.target}|${a.command ?? r.command}`;
        }),
      );
      const missing = load.records
        .filter((r) => r.kind === "write" && r.outcome === "ok")
        .map((r) => `${String(r.args.uuid)}|${String(r.args.command)}`)
        .filter((k) => !audited.has(k));
      expect(missing, "completed writes without an audit row").toEqual([]);
    } finally {
      db.close();
    }
  });
});
