/**
 * Secrets never leak: with a sentinel password (the simulator's password too) and every token and
 * client secret the daemon was issued (read from its SQLite store after each login, refresh,
 * relogin and revocation), grep the log files, the daemon's stderr/stdout, `loxmcp/status`, the
 * audit table and every result/error message returned to clients: zero hits.
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ChaosRig, startChaosRig } from "../../../test-support/chaos.js";
import { controlCall } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";

const SENTINEL = `Sentinel-Pw-${randomBytes(8).toString("hex")}`;

function filesUnder(dir: string): string[] {
  let out: string[] = [];
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const n of names) {
    const p = join(dir, n);
    const st = statSync(p);
    if (st.isDirectory()) out = out.concat(filesUnder(p));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

/** Every secret-looking string value in a JSON document (tokens, client secret, codes). */
function secretValues(json: string): string[] {
  const out: string[] = [];
  const walk = (v: unknown, key = "") => {
    if (typeof v === "string") {
      const secretKey = /token|secret|code|password|verifier/i.test(key);
      const notSecret =
        /type|expires|method|endpoint|uri|url|supported|scope/i.test(key) || /^https?:\/\//.test(v);
      if (secretKey && !notSecret && v.length >= 12) out.push(v);
    } else if (Array.isArray(v)) {
      for (const x of v) walk(x, key);
    } else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, k);
  };
  try {
    walk(JSON.parse(json));
  } catch {
    // not JSON
  }
  return out;
}

describe("secrets: sentinel password and issued tokens never leak", () => {
  let rig: ChaosRig;
  const secrets = new Set<string>([SENTINEL]);
  const seenByClients: string[] = [];

  beforeAll(async () => {
    rig = await startChaosRig(2, {
      simOptions: { password: SENTINEL },
      env: { LOXMCP_LOG_LEVEL: "trace", LOXMCP_DEBUG: "1" },
    });
  });
  afterAll(async () => {
    await rig?.close();
  });

  function harvestTokens(): void {
    const db = new Database(rig.daemon.paths.db, { readonly: true, fileMustExist: true });
    try {
      for (const table of ["oauth_tokens", "oauth_clients", "oauth_pkce", "oauth_discovery"]) {
        let rows: Array<Record<string, unknown>> = [];
        try {
          rows = db.prepare(`SELECT * FROM ${table}`).all() as Array<Record<string, unknown>>;
        } catch {
          continue; // table not there in this schema version
        }
        for (const r of rows) {
          for (const [col, v] of Object.entries(r)) {
            if (typeof v !== "string") continue;
            for (const s of secretValues(v)) secrets.add(s);
            if (col === "code_verifier" && v.length >= 12) secrets.add(v);
          }
        }
      }
    } finally {
      db.close();
    }
  }

  async function call(name: string, args: Record<string, unknown>): Promise<void> {
    const c = rig.clients[seenByClients.length % rig.clients.length]!;
    try {
      const r = await c.callTool({ name, arguments: args });
      seenByClients.push(JSON.stringify(r));
    } catch (e) {
      seenByClients.push((e as Error).message);
    }
  }

  it("appears nowhere: logs, stderr, status, audit, client-visible messages", async () => {
    const sim = rig.sim.sim;
    const light = sim.house().controls.find((c) => c.type === "LightControllerV2")!;
    harvestTokens();
    const tokensAfterLogin = secrets.size;
    expect(tokensAfterLogin, "the store holds the issued tokens").toBeGreaterThan(1);

    await call("system_status", {});
    await call("control_command", { uuid: light.uuid, command: "on" });
    await call("control_command", { uuid: light.uuid, command: "definitely-not-a-command" });
    await call("control_command", { uuid: "00000000-0000-0000-0000000000000000", command: "on" });
    await call("no_such_tool", {});

    // Refresh: expired access token → 401 → refresh with a rotating refresh token.
    const refreshes = sim.stats().refreshes;
    sim.expireAccessTokens();
    await call("system_status", {});
    await waitFor(() => sim.stats().refreshes > refreshes, { what: "a token refresh" });
    harvestTokens();

    // Relogin on request (CLI), then revocation → full re-login.
    const logins = sim.stats().logins;
    await controlCall(rig.daemon.socketPath, "loxmcp/relogin", {}, { timeoutMs: 20_000 });
    await waitFor(() => sim.stats().logins > logins, { what: "the relogin" });
    await rig.daemon.waitReady(20_000);
    harvestTokens();
    sim.revokeTokens();
    await call("system_status", {});
    await rig.daemon.waitReady(20_000);
    await call("system_status", {});
    harvestTokens();

    // Errors from the relay reach clients: their messages must be clean too.
    sim.setFaults({ httpErrors: 2, httpErrorStatus: 503 });
    await call("control_command", { uuid: light.uuid, command: "off" });
    await call("system_status", {});
    sim.setFaults({ httpErrors: 0 });

    const status = JSON.stringify(await rig.daemon.status());
    harvestTokens();
    expect(secrets.size, "new tokens were issued along the way").toBeGreaterThan(tokensAfterLogin);

    // Stop the daemon so every log line is flushed, then read everything it left behind.
    await rig.daemon.stop();
    const haystacks: Array<[string, string]> = [
      ["status", status],
      ["daemon stderr", rig.daemon.stderr()],
      ["daemon stdout", rig.daemon.stdout()],
      ...seenByClients.map((m, i): [string, string] => [`client message ${i}`, m]),
      ...filesUnder(rig.daemon.paths.log).map((f): [string, string] => [f, readFileSync(f, "utf8")]),
    ];
    const db = new Database(rig.daemon.paths.db, { readonly: true, fileMustExist: true });
    try {
      const hasAudit = db
        .prepare("SELECT name FROM sqlite_master WHERE type='table' AND name='audit_events'")
        .get();
      if (hasAudit)
        haystacks.push(["audit_events", JSON.stringify(db.prepare("SELECT * FROM audit_events").all())]);
      else console.warn("no audit_events table: audit not checked for secrets");
    } finally {
      db.close();
    }
    const logText = haystacks.find(([n]) => n.endsWith("daemon.log"))?.[1] ?? "";
    expect(logText.length, "the daemon wrote a log file").toBeGreaterThan(0);

    console.info(
      `secrets checked: the password + ${secrets.size - 1} issued values, in ${haystacks.length} places`,
    );
    const hits: string[] = [];
    for (const [where, text] of haystacks) {
      for (const s of secrets) {
        if (text.includes(s) || text.includes(s.slice(0, 16))) {
          hits.push(`${where} contains ${s === SENTINEL ? "the password" : `secret ${s.slice(0, 4)}…`}`);
        }
      }
    }
    expect(hits).toEqual([]);
  });
});
