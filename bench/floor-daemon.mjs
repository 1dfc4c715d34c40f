#!/usr/bin/env node
// REFERENCE FLOOR for the memory benchmark, not product code: the plumbing every loxmcp daemon
// needs and nothing else — pino logging to a file, better-sqlite3 (WAL, synchronous=FULL) with one
// insert per call, a Unix socket server, and node:http keep-alive requests to the simulator (no
// SDK, no zod, no fetch/undici, no policy, no MCP). It makes FLOOR_CALLS (300) requests, logging and
// recording each, prints "ready" and idles. Its RSS is the least a Node daemon of this design is
// on this machine; run with the daemon's V8 flags.
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

// better-sqlite3 and pino are dependencies of the daemon package, not of the repo root.
const requireFromDaemon = createRequire(new URL("../packages/daemon/package.json", import.meta.url));
const Database = requireFromDaemon("better-sqlite3");
const pino = requireFromDaemon("pino");

const target = new URL(process.env.FLOOR_URL ?? "");
const calls = Number(process.env.FLOOR_CALLS ?? 300);
const dir = mkdtempSync(join(tmpdir(), "lxfloor-"));
const cleanup = () => rmSync(dir, { recursive: true, force: true });
process.on("SIGTERM", () => {
  cleanup();
  process.exit(0);
});

const log = pino(pino.destination({ dest: join(dir, "floor.log"), sync: true }));
const db = new Database(join(dir, "floor.db"));
db.pragma("journal_mode = WAL");
db.pragma("synchronous = FULL");
db.exec("CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY, at TEXT, status INTEGER, body TEXT)");
const insert = db.prepare("INSERT INTO calls (at, status, body) VALUES (?, ?, ?)");
net.createServer((s) => s.pipe(s)).listen(join(dir, "floor.sock"));
const agent = new http.Agent({ keepAlive: true });

function request() {
  return new Promise((resolve, reject) => {
    const req = http.request(target, { agent, headers: { accept: "application/json" } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

for (let i = 0; i < calls; i++) {
  const { status, body } = await request();
  insert.run(new Date().toISOString(), status, body.slice(0, 200));
  log.info({ i, status }, "call");
}
process.stdout.write("ready\n");
setInterval(() => {}, 60_000);
