/** Helpers for the relay tests: captured pino logs, a session against the simulator. */
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Simulator, SimulatorOptions } from "@loxmcp/simulator";
import { startSimulator } from "@loxmcp/simulator";
import pino from "pino";
import { UpstreamSession, type UpstreamSessionOptions } from "../src/relay/upstream.js";
import { type Database, openDatabase } from "../src/store/db.js";
import { TokenStore } from "../src/store/tokens.js";

export interface CapturedLog {
  logger: pino.Logger;
  text(): string;
  lines(): Array<Record<string, unknown>>;
}

/** A pino logger writing JSON lines into memory (debug level, so everything is there). */
export function captureLog(): CapturedLog {
  const chunks: string[] = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void chunks.push(s) });
  return {
    logger,
    text: () => chunks.join(""),
    lines: () =>
      chunks
        .join("")
        .split("\n")
        .filter((l) => l.trim())
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

export interface Rig {
  sim: Simulator;
  dir: string;
  dbFile: string;
  db: Database;
  store: TokenStore;
  log: CapturedLog;
  sessions: UpstreamSession[];
  /** A new session on the rig's DB (closed in cleanup). */
  session(extra?: Partial<UpstreamSessionOptions>): UpstreamSession;
  /** A second DB connection + store on the same file (a "restarted daemon"). */
  reopen(): TokenStore;
  cleanup(): Promise<void>;
}

export async function makeRig(simOptions: SimulatorOptions = {}): Promise<Rig> {
  const sim = await startSimulator({ port: 0, ...simOptions });
  const dir = mkdtempSync("/tmp/lx-");
  const dbFile = join(dir, "state", "loxmcp.db");
  const db = openDatabase(dbFile);
  const dbs: Database[] = [db];
  const store = new TokenStore(db);
  const log = captureLog();
  const sessions: UpstreamSession[] = [];
  const rig: Rig = {
    sim,
    dir,
    dbFile,
    db,
    store,
    log,
    sessions,
    session(extra = {}) {
      const s = new UpstreamSession(
        {
          connectUrl: sim.connectUrl,
          serial: sim.serial,
          user: sim.user,
          password: sim.password,
          pingIntervalMs: 60_000,
          idleCheckMs: 60_000,
          requestTimeoutMs: 5_000,
          backoffMinMs: 50,
          backoffMaxMs: 1_000,
          logger: log.logger,
          ...extra,
        },
        (extra as { store?: TokenStore }).store ?? store,
      );
      sessions.push(s);
      return s;
    },
    reopen() {
      const d = openDatabase(dbFile);
      dbs.push(d);
      return new TokenStore(d);
    },
    async cleanup() {
      await Promise.all(sessions.map((s) => s.stop().catch(() => {})));
      await sim.stop();
      for (const d of dbs) if (d.open) d.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return rig;
}

/** Name of the simulator's tool for `key`, from the live tool list. */
export function toolNamed(tools: Array<Record<string, unknown>>, name: string): Record<string, unknown> {
  const t = tools.find((x) => x.name === name);
  if (!t) throw new Error(`tool ${name} not in ${tools.map((x) => x.name).join(", ")}`);
  return t;
}
