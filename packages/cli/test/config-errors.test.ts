/**
 * Configuration errors reach the person through the REAL CLI binary and a real daemon:
 * `start` prints only this start's errors, `status` says why the daemon is down (exit 1),
 * `doctor` runs the daemon's own check over the environment, .env AND config.json and lists
 * every problem, `relogin` re-reads the credentials (and refuses an invalid configuration with
 * the key), and a LOXMCP_HOME the user cannot write gives one line naming the path and the fix
 * (run as another user: root ignores file modes).
 */
import { spawnSync } from "node:child_process";
import { appendFileSync, chmodSync, chownSync, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { waitFor } from "../../../test-support/wait.js";
import { CLI_BIN, CliSandbox, DAEMON_BIN, REPO_ROOT } from "./helpers.js";

interface DoctorJson {
  ok: boolean;
  checks: Array<{ id: string; level: string; message: string; fix?: string }>;
}

let sb: CliSandbox;
let sim: SimHandle;

beforeEach(async () => {
  sim = await withSimulator();
  sb = new CliSandbox();
  sb.env = { ...sb.env, ...sim.env(sb.loxmcpHome) };
});

afterEach(async () => {
  await sb.run(["stop"]).catch(() => undefined);
  await sim.stop();
  sb.cleanup();
});

function configDir(): string {
  const dir = join(sb.loxmcpHome, "config");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

describe("start, status and doctor name the daemon's configuration errors", () => {
  it("start prints this start's errors only; status shows why the daemon is down and exits 1", async () => {
    // an old failure in the log must not be repeated as if it were this start's
    mkdirSync(join(sb.loxmcpHome, "log"), { recursive: true, mode: 0o700 });
    appendFileSync(
      join(sb.loxmcpHome, "log", "daemon.log"),
      "loxmcpd: config error: LOXONE_SERIAL is missing — OLD-LINE-FROM-LAST-WEEK\n",
      { mode: 0o600 },
    );
    writeFileSync(join(configDir(), "config.json"), JSON.stringify({ policy: { rateLimit: {} } }));
    const start = await sb.run(["start"], {}, { LOXMCP_POLICY: "readonly" });
    expect(start.code).toBe(1);
    expect(start.stderr).not.toContain("OLD-LINE-FROM-LAST-WEEK");
    expect(start.stderr).toContain(
      "loxmcp: loxmcpd cannot start: /", // the first problem: config.json's unknown key
    );
    expect(start.stderr).toContain('unknown key "policy.rateLimit" (did you mean "policy.rateLimits"?)');
    // each problem on its own line
    expect(start.stderr).toMatch(
      /^loxmcpd: LOXMCP_POLICY "readonly" is not one of read-only, confirm, full/m,
    );
    expect(start.stderr).toMatch(/^loxmcpd: .*unknown key "policy\.rateLimit"/m);
    expect(start.stdout + start.stderr).not.toContain(sim.sim.password);

    const status = await sb.run(["status"]);
    expect(status.code).toBe(1);
    expect(status.stdout).toContain("loxmcpd: down");
    expect(status.stdout).toMatch(/reason\s+loxmcpd cannot start: .*unknown key "policy\.rateLimit"/);
    expect(status.stdout).toContain('LOXMCP_POLICY "readonly"');
    expect(status.stdout).toMatch(/last start\s+.*exit 78/);
    expect(status.stdout).toContain("hint: fix what the reason names (`loxmcp doctor` lists every problem)");
    expect(status.stdout).not.toContain("daemon not running");

    const json = await sb.run(["status", "--json"]);
    expect(json.code).toBe(1);
    const st = JSON.parse(json.stdout) as Record<string, unknown>;
    expect(st.state).toBe("down");
    expect(String(st.reason)).toMatch(/^loxmcpd cannot start: /);
    expect(st.startError).toMatchObject({ exitCode: 78 });

    // once it starts, the old reason is gone
    writeFileSync(join(configDir(), "config.json"), JSON.stringify({ policy: { rateLimits: {} } }));
    const ok = await sb.run(["start"]);
    expect(ok.code, ok.stderr).toBe(0);
    const after = await sb.run(["status", "--wait", "20"]);
    expect(after.stdout).not.toContain("cannot start");
  });

  it("doctor runs the daemon's own check: config.json's credentials count, every problem is listed", async () => {
    const dir = configDir();
    const file = join(dir, "config.json");
    const creds = { serial: sim.sim.serial, user: sim.sim.user, password: sim.sim.password };
    const env: Record<string, string> = { ...sb.env };
    for (const k of ["LOXONE_SERIAL", "LOXONE_USER", "LOXONE_PASSWORD"]) delete env[k];
    const doctor = async (extra: Record<string, string> = {}) => {
      const r = await sb.run(["doctor", "--json"], {}, { ...extra });
      return { code: r.code, doc: JSON.parse(r.stdout) as DoctorJson, raw: r.stdout + r.stderr };
    };
    sb.env = env;

    writeFileSync(file, JSON.stringify({ ...creds, policy: { rateLimit: { motorPerMinute: 2 } } }), {
      mode: 0o600,
    });
    const bad = await doctor({ LOXMCP_POLICY: "readonly" });
    expect(bad.code).toBe(1);
    expect(bad.doc.ok).toBe(false);
    const problems = bad.doc.checks.filter((c) => c.level === "problem");
    expect(problems.map((c) => c.id).sort()).toEqual([
      "config.LOXMCP_POLICY",
      "config.config.json:policy.rateLimit",
    ]);
    expect(problems.find((c) => c.id === "config.LOXMCP_POLICY")?.message).toBe(
      'LOXMCP_POLICY "readonly" is not one of read-only, confirm, full (did you mean "read-only"?)',
    );
    expect(problems.find((c) => c.id === "config.config.json:policy.rateLimit")?.message).toContain(
      'did you mean "policy.rateLimits"?',
    );
    // the serial, user and password in config.json are seen
    expect(bad.raw).not.toContain("is not set");
    expect(bad.raw).not.toContain("is missing");
    expect(bad.raw).not.toContain(sim.sim.password);

    writeFileSync(file, JSON.stringify(creds), { mode: 0o600 });
    const good = await doctor();
    expect(good.doc.checks.find((c) => c.id === "config")?.level).toBe("ok");
    expect(good.doc.checks.find((c) => c.id === "config.serial")).toMatchObject({ level: "ok" });
    expect(good.doc.checks.find((c) => c.id === "config.password")?.message).toBe(
      "LOXONE_PASSWORD set (config.json; value not shown)",
    );
    expect(good.doc.checks.filter((c) => c.level === "problem")).toEqual([]);

    writeFileSync(file, `{\n  "password": "${sim.sim.password}",\n  "user": ${sim.sim.user}\n}\n`, {
      mode: 0o600,
    });
    const syntax = await doctor();
    const p = syntax.doc.checks.find((c) => c.id === "config.config.json");
    expect(p?.level).toBe("problem");
    expect(p?.message).toContain(`${file} is not valid JSON at line 3, column 11`);
    expect(syntax.raw).not.toContain(sim.sim.password);
  });

  it("relogin re-reads the credentials the person fixed; an invalid configuration is refused with the key", async () => {
    const env: Record<string, string> = { ...sb.env };
    delete env.LOXONE_PASSWORD; // the password lives in .env, written by `loxmcp init`
    sb.env = env;
    const init = (pw: string) =>
      sb.run(["init", "--serial", sim.sim.serial, "--user", sim.sim.user, "--password-stdin"], { input: pw });
    expect((await init("wrong-password-1")).code).toBe(0);
    await sb.run(["start"]);
    await waitFor(
      async () =>
        (JSON.parse((await sb.run(["status", "--json"])).stdout) as { state: string }).state ===
        "auth_failed",
      { what: "auth_failed with the wrong password", timeoutMs: 30_000 },
    );

    expect((await init(sim.sim.password)).code).toBe(0);
    const relogin = await sb.run(["relogin"]);
    expect(relogin.stdout + relogin.stderr, "relogin after the fix").toContain("relogin: ready");
    expect(relogin.code).toBe(0);
    expect(relogin.stdout + relogin.stderr).not.toContain(sim.sim.password);

    writeFileSync(join(configDir(), "config.json"), JSON.stringify({ policy: { rateLimit: {} } }));
    const refused = await sb.run(["relogin", "--force"]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("nothing was changed");
    expect(refused.stderr).toContain('unknown key "policy.rateLimit" (did you mean "policy.rateLimits"?)');
    // it still runs, logged in with the credentials it had
    expect((await sb.run(["status"])).code).toBe(0);
  });
});

const canSwitchUser = process.getuid?.() === 0 && existsSync("/usr/bin/setpriv");
if (!canSwitchUser) {
  console.warn("skipping the read-only LOXMCP_HOME CLI tests: needs root and setpriv to run as another user");
}

describe.runIf(canSwitchUser)("a LOXMCP_HOME the user cannot write (as uid 65534)", () => {
  function asNobody(cmd: string[], env: Record<string, string>, input = "") {
    return spawnSync("setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", ...cmd], {
      cwd: REPO_ROOT,
      env: { ...env, HOME: "/nonexistent" },
      input,
      encoding: "utf8",
      timeout: 30_000,
    });
  }

  it("CLI and daemon say which directory and what to do, never 'unexpected error'", () => {
    chmodSync(sb.root, 0o755);
    const parent = join(sb.root, "ro");
    mkdirSync(parent, { mode: 0o755 }); // root's: the other user cannot create anything in it
    const loxHome = join(parent, "x");
    const env = { ...sb.env, LOXMCP_HOME: loxHome };
    const cli = (...args: string[]) => asNobody([process.execPath, CLI_BIN, ...args], env);
    const expected = (dir: string) =>
      `cannot create ${join(loxHome, dir)}: permission denied: ${parent} is not writable for you (uid 65534) — it belongs to uid 0: set LOXMCP_HOME to a directory you own`;

    const start = cli("start");
    expect(start.status).toBe(1);
    expect(start.stderr).toContain(`loxmcp: loxmcpd cannot start: ${expected("state")}`);

    const init = cli("init", "--serial", sim.sim.serial, "--user", "u", "--password-command", "true");
    expect(init.status).toBe(1);
    expect(init.stderr.trim()).toMatch(new RegExp(`^loxmcp: ${reEscape(expected("config"))}`));

    const status = cli("status");
    expect(status.status).toBe(1);
    expect(status.stdout).toContain(`reason            loxmcpd cannot start: ${expected("state")}`);

    const doctor = cli("doctor", "--json");
    const doc = JSON.parse(doctor.stdout) as DoctorJson;
    expect(doctor.status).toBe(1);
    expect(doc.checks.find((c) => c.id === "dir.state.writable")).toMatchObject({
      level: "problem",
      message: `cannot create ${join(loxHome, "state")}: permission denied: ${parent} is not writable for you (uid 65534)`,
    });

    const daemon = asNobody([process.execPath, DAEMON_BIN], env);
    expect(daemon.status).toBe(78);
    expect(daemon.stderr.trim()).toMatch(new RegExp(`^loxmcpd: ${reEscape(expected("log"))}`));

    for (const r of [start, init, status, doctor, daemon])
      expect(r.stdout + r.stderr).not.toMatch(/unexpected error|EACCES:/);
  });

  it("a LOXMCP_HOME of the user's own without write permission: chmod is the fix", () => {
    chmodSync(sb.root, 0o755);
    const loxHome = join(sb.root, "mine");
    mkdirSync(loxHome, { mode: 0o500 });
    chownSync(loxHome, 65534, 65534);
    const r = asNobody([process.execPath, CLI_BIN, "start"], { ...sb.env, LOXMCP_HOME: loxHome });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(
      `loxmcp: loxmcpd cannot start: cannot create ${join(loxHome, "state")}: permission denied: ${loxHome} is not writable for you (uid 65534) — chmod u+rwx ${loxHome}, or set LOXMCP_HOME to a directory you own`,
    );
  });
});

function reEscape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
