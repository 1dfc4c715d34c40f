/**
 * Hardened mode end to end, as the issue's "Done when" says: a throwaway system user runs the
 * INSTALLED daemon (the packed package, `npm install -g` into a prefix both users can read), laid
 * out under a temporary `--root` exactly as `service install --system --print` says, started with
 * `setpriv` (systemd is not PID 1 here) against the simulator. Then, as a throwaway PERSON user
 * in the daemon's group: the shim works and shares the one login; the database, config and
 * password cannot be read; `loxmcp approve` is refused without the PIN and with a wrong one and
 * works with the right one; `pin set`, `pin reset`, policy and credential changes are refused;
 * with the system daemon stopped, the shim says so and no per-user daemon appears. The unit
 * passes `systemd-analyze verify`. Root's side: `init --system`, `pin set` / `pin reset` over the
 * admin socket, `uninstall --system --purge`.
 *
 * Needs root (to create users), setpriv, useradd and npm; elsewhere it is skipped with the reason
 * printed. The package's better-sqlite3 compiles from source when no prebuilt binary is
 * reachable (about 70 s, once for this file).
 */
import { execFile, spawn, spawnSync } from "node:child_process";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { waitFor } from "../../../test-support/wait.js";
import { REPO_ROOT } from "./helpers.js";

const execFileP = promisify(execFile);
const has = (cmd: string, args = ["--version"]) => spawnSync(cmd, args, { stdio: "ignore" }).status === 0;
const skipReason =
  process.getuid?.() !== 0
    ? "not root (it creates a system user and a person user)"
    : process.platform !== "linux"
      ? `not Linux (${process.platform})`
      : !has("setpriv")
        ? "setpriv is missing"
        : !has("useradd", ["--help"])
          ? "useradd is missing"
          : !has("npm")
            ? "npm is missing"
            : undefined;
if (skipReason) console.warn(`SKIPPED hardened mode end to end: ${skipReason}`);
const hasSystemdAnalyze = has("systemd-analyze");

const PIN = "482917";
const NEW_PIN = "903152";

/** npm's environment: ours without what pnpm/vitest put in for themselves. */
function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(npm_|pnpm_)/i.test(k)) env[k] = v;
  return {
    ...env,
    JOBS: "max",
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_audit: "false",
  };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `cmd` (as `user` through setpriv, with that user's groups, when given) and collects its output. */
function run(
  cmd: string,
  args: string[],
  opts: { env: Record<string, string>; user?: string; input?: string; timeoutMs?: number },
): Promise<Run> {
  const argv = opts.user
    ? ["setpriv", "--reuid", opts.user, "--regid", opts.user, "--init-groups", cmd, ...args]
    : [cmd, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), { env: opts.env, stdio: "pipe", cwd: "/" });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${argv.join(" ")} did not finish\n${stdout}\n${stderr}`));
    }, opts.timeoutMs ?? 30_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    // A command that exits without reading its input (e.g. refused at once) closes the pipe: EPIPE
    // on our side is expected then, not an error of the test.
    child.stdin.on("error", () => {});
    child.stdin.end(opts.input ?? "");
  });
}

function passwd(name: string): { uid: number; gid: number; home: string } | undefined {
  for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
    const f = line.split(":");
    if (f[0] === name) return { uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? "" };
  }
  return undefined;
}

function groupId(name: string): number | undefined {
  for (const line of readFileSync("/etc/group", "utf8").split("\n")) {
    const f = line.split(":");
    if (f[0] === name) return Number(f[2]);
  }
  return undefined;
}

/** A raw `loxmcp/*` request on a socket, sent by `user` (hello first, as the CLI does). */
const RAW_CALL = `
const net = require("node:net");
const [path, method, params] = process.argv.slice(1);
const s = net.connect(path);
s.on("error", (e) => { console.log(JSON.stringify({ connectError: e.code })); process.exit(0); });
s.on("connect", () => {
  s.write(JSON.stringify({ jsonrpc: "2.0", method: "loxmcp/hello", params: { kind: "cli", name: "raw", pid: process.pid } }) + "\\n");
  s.write(JSON.stringify({ jsonrpc: "2.0", id: 1, method, params: JSON.parse(params) }) + "\\n");
});
let buf = "";
s.on("data", (d) => {
  buf += d;
  for (const line of buf.split("\\n").slice(0, -1)) {
    const m = JSON.parse(line);
    if (m.id === 1) { console.log(JSON.stringify(m)); process.exit(0); }
  }
});
setTimeout(() => { console.log(JSON.stringify({ timeout: true })); process.exit(0); }, 10000);
`;

describe.skipIf(skipReason !== undefined)(
  "hardened mode: the installed daemon as its own system user",
  () => {
    const tag = String(process.pid % 100000).padStart(5, "0");
    const SYS = `lxd${tag}`;
    const PERSON = `lxq${tag}`;
    let tmp: string;
    let root: string;
    let prefix: string;
    let personHome: string;
    let sim: SimHandle;
    let daemon: ReturnType<typeof spawn> | undefined;
    const clients: Client[] = [];
    const bin = (name: string) => join(prefix, "bin", name);
    const path = () =>
      [join(prefix, "bin"), dirname(process.execPath), "/usr/sbin:/usr/bin:/sbin:/bin"].join(delimiter);
    /** root's environment: the system layout under the temporary --root. */
    const rootEnv = () => ({ PATH: path(), HOME: "/root", LOXMCP_SYSTEM_ROOT: root });
    /** the person's: no configuration at all but where the system root is. */
    const personEnv = () => ({ PATH: path(), HOME: personHome, USER: PERSON, LOXMCP_SYSTEM_ROOT: root });
    const asRoot = (args: string[], input?: string) =>
      run(bin("loxmcp"), args, { env: rootEnv(), ...(input === undefined ? {} : { input }) });
    const asPerson = (args: string[], input?: string) =>
      run(bin("loxmcp"), args, { env: personEnv(), user: PERSON, ...(input === undefined ? {} : { input }) });
    const layout = () => ({
      config: join(root, "etc", "loxmcp"),
      state: join(root, "var", "lib", "loxmcp"),
      log: join(root, "var", "log", "loxmcp"),
      runtime: join(root, "run", "loxmcp"),
      unit: join(root, "etc", "systemd", "system", "loxmcpd.service"),
    });
    const installArgs = () => [
      "service",
      "install",
      "--system",
      "--root",
      root,
      "--user",
      PERSON,
      "--daemon-user",
      SYS,
    ];

    /** An MCP client running the installed shim as the person. */
    async function personClient(name: string): Promise<Client> {
      const client = new Client({ name: `hardened-${name}`, version: "1.0.0" });
      clients.push(client);
      await client.connect(
        new StdioClientTransport({
          command: "setpriv",
          args: ["--reuid", PERSON, "--regid", PERSON, "--init-groups", bin("loxmcp-shim"), "--name", name],
          env: personEnv(),
          stderr: "pipe",
        }),
      );
      return client;
    }

    async function startDaemon(): Promise<void> {
      daemon = spawn("setpriv", ["--reuid", SYS, "--regid", SYS, "--init-groups", bin("loxmcpd")], {
        env: { PATH: path(), LOXMCP_SYSTEM: "1", LOXMCP_SYSTEM_ROOT: root },
        stdio: "ignore",
        cwd: "/",
      });
      await waitFor(
        async () => {
          const r = await asRoot(["status", "--json"]);
          return (JSON.parse(r.stdout) as { state?: string }).state === "ready";
        },
        { timeoutMs: 30_000, intervalMs: 200, what: "the system daemon to be ready" },
      );
    }

    async function stopDaemon(): Promise<void> {
      const d = daemon;
      daemon = undefined;
      if (!d || d.exitCode !== null) return;
      const gone = new Promise((r) => d.once("exit", r));
      d.kill("SIGTERM");
      await gone;
    }

    beforeAll(async () => {
      tmp = realpathSync(mkdtempSync("/tmp/lxh-"));
      chmodSync(tmp, 0o755); // both users must reach the package and the layout
      root = join(tmp, "root");
      mkdirSync(root, { mode: 0o755 });
      prefix = join(tmp, "prefix");
      personHome = join(tmp, "home");
      const out = join(tmp, "out");
      const packed = await execFileP(
        process.execPath,
        [join(REPO_ROOT, "scripts/pack.mjs"), "--out-dir", out],
        {
          cwd: REPO_ROOT,
          env: npmEnv(),
          timeout: 60_000,
        },
      );
      await execFileP(
        "npm",
        ["install", "-g", "--prefix", prefix, "--allow-scripts=better-sqlite3", packed.stdout.trim()],
        { cwd: tmp, env: npmEnv(), timeout: 200_000, maxBuffer: 16 * 1024 * 1024 },
      );
      spawnSync("chmod", ["-R", "a+rX", prefix]);
      // the person: a login of their own, nothing else (the daemon's user is made by the install)
      for (const u of [SYS, PERSON]) spawnSync("userdel", [u], { stdio: "ignore" });
      spawnSync("groupdel", [SYS], { stdio: "ignore" });
      const made = spawnSync(
        "useradd",
        ["--create-home", "--home-dir", personHome, "--shell", "/bin/sh", PERSON],
        {
          encoding: "utf8",
        },
      );
      expect(made.status, made.stderr).toBe(0);
      sim = await withSimulator();
      // The person set up loxmcp per-user before hardening it: --migrate moves this over.
      const init = await asPerson(
        [
          "init",
          "--serial",
          sim.sim.serial,
          "--user",
          sim.sim.user,
          "--password-stdin",
          "--connect-url",
          sim.sim.connectUrl,
        ],
        sim.sim.password,
      );
      expect(init.code, init.stderr).toBe(0);
    }, 300_000);

    afterAll(async () => {
      for (const c of clients) await c.close().catch(() => {});
      await stopDaemon().catch(() => {});
      await sim?.stop();
      spawnSync("pkill", ["-KILL", "-u", PERSON], { stdio: "ignore" });
      for (const u of [SYS, PERSON]) spawnSync("userdel", [u], { stdio: "ignore" });
      spawnSync("groupdel", [SYS], { stdio: "ignore" });
      spawnSync("groupdel", [PERSON], { stdio: "ignore" });
      if (tmp) rmSync(tmp, { recursive: true, force: true });
    });

    it("`install --system --print` names every directory, file, mode and command; the install lays them out exactly so", async () => {
      const printed = await asRoot([...installArgs(), "--migrate", "--print"]);
      expect(printed.code, printed.stderr).toBe(0);
      const script = printed.stdout;
      expect(spawnSync("sh", ["-n"], { input: script }).status, "the printed script is valid sh").toBe(0);
      expect(script).toContain(`useradd --system --gid ${SYS}`);
      expect(script).toContain(`usermod -a -G ${SYS} ${PERSON}`);
      expect(script).toContain(`systemctl --root=${root} enable loxmcpd.service`);

      // what it promises: directories, files written, files moved over (--migrate)
      const want: Array<{ path: string; mode: number; owner: string; group: string }> = [];
      for (const line of script.split("\n")) {
        const dir = /^install -d -m (\d+) -o (\S+) -g (\S+) (\S+)/.exec(line);
        const file = /^chown (\S+):(\S+) (\S+) && chmod (\d+) \S+/.exec(line);
        const move = /^install -m (\d+) -o (\S+) -g (\S+) (\S+) (\S+) && rm -f/.exec(line);
        if (dir)
          want.push({
            mode: Number.parseInt(dir[1] as string, 8),
            owner: dir[2]!,
            group: dir[3]!,
            path: dir[4]!,
          });
        if (file)
          want.push({
            owner: file[1]!,
            group: file[2]!,
            path: file[3]!,
            mode: Number.parseInt(file[4] as string, 8),
          });
        if (move)
          want.push({
            mode: Number.parseInt(move[1] as string, 8),
            owner: move[2]!,
            group: move[3]!,
            path: move[5]!,
          });
      }
      const L = layout();
      expect(want.map((w) => w.path)).toEqual(
        expect.arrayContaining([
          L.config,
          L.state,
          L.log,
          L.runtime,
          L.unit,
          join(L.config, ".env"),
          join(L.config, "config.json"),
        ]),
      );
      expect(want.find((w) => w.path === L.runtime)).toMatchObject({ mode: 0o750, owner: SYS, group: SYS });
      expect(want.find((w) => w.path === L.state)).toMatchObject({ mode: 0o700, owner: SYS });
      expect(want.find((w) => w.path === join(L.config, ".env"))).toMatchObject({ mode: 0o600, owner: SYS });

      const done = await asRoot([...installArgs(), "--migrate"]);
      expect(done.code, done.stderr).toBe(0);
      const sys = passwd(SYS);
      expect(sys, "the install created the daemon's user").toBeDefined();
      const uidOf = (n: string) => (n === "root" ? 0 : passwd(n)?.uid);
      const gidOf = (n: string) => (n === "root" ? 0 : groupId(n));
      for (const w of want) {
        const st = lstatSync(w.path);
        expect({ path: w.path, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid }).toEqual({
          path: w.path,
          mode: w.mode,
          uid: uidOf(w.owner),
          gid: gidOf(w.group),
        });
      }
      // --migrate moved the person's credentials over and left none behind
      expect(existsSync(join(personHome, ".config", "loxmcp", ".env"))).toBe(false);
      expect(readFileSync("/etc/group", "utf8")).toMatch(
        new RegExp(`^${SYS}:[^:]*:\\d+:(.*,)?${PERSON}(,|$)`, "m"),
      );
    });

    it.skipIf(!hasSystemdAnalyze)("the system unit passes `systemd-analyze verify`", () => {
      const dir = join(tmp, "verify");
      mkdirSync(dir, { recursive: true });
      const unit = readFileSync(layout().unit, "utf8");
      for (const line of [
        `User=${SYS}`,
        "StateDirectory=loxmcp",
        "RuntimeDirectory=loxmcp",
        "ConfigurationDirectory=loxmcp",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "Environment=LOXMCP_SYSTEM=1",
      ]) {
        expect(unit.split("\n")).toContain(line);
      }
      writeFileSync(join(dir, "loxmcpd.service"), unit);
      const r = spawnSync("systemd-analyze", ["verify", join(dir, "loxmcpd.service")], {
        encoding: "utf8",
        env: { ...process.env, SYSTEMD_LOG_LEVEL: "info" },
      });
      const complaints = `${r.stdout}\n${r.stderr}`
        .split("\n")
        .filter((l) => l.includes("loxmcpd.service") || /Unknown|ignoring|invalid/i.test(l));
      expect(complaints).toEqual([]);
      expect(r.status).toBe(0);
    });

    it("credentials change only as root: `init --system` is refused to the person and works for root", async () => {
      const args = [
        "init",
        "--system",
        "--serial",
        sim.sim.serial,
        "--user",
        sim.sim.user,
        "--password-stdin",
        "--connect-url",
        sim.sim.connectUrl,
      ];
      const refused = await asPerson(args, sim.sim.password);
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain("sudo loxmcp init --system");
      const ok = await asRoot(args, sim.sim.password);
      expect(ok.code, ok.stderr).toBe(0);
      const st = lstatSync(join(layout().config, ".env"));
      expect([st.mode & 0o777, st.uid]).toEqual([0o600, passwd(SYS)?.uid]);
    });

    it("as the person: two shims share the one login of the system daemon", async () => {
      sim.sim.resetStats();
      await startDaemon();
      const a = await personClient("claude-code");
      const b = await personClient("cursor");
      for (const c of [a, b]) {
        expect((await c.listTools()).tools.map((t) => t.name)).toContain("control_find");
        const r = await c.callTool({ name: "control_find", arguments: { query: "light" } });
        expect(r.isError).toBeFalsy();
      }
      expect(sim.sim.stats().logins).toBe(1);
      const st = JSON.parse((await asPerson(["status", "--json"])).stdout) as Record<string, unknown>;
      expect(st).toMatchObject({ state: "ready", mode: "system", systemUser: SYS });
      expect((st.clients as Array<{ name: string }>).map((c) => c.name).sort()).toEqual([
        "claude-code",
        "cursor",
      ]);
      const text = await asPerson(["status"]);
      expect(text.stdout).toMatch(/mode\s+hardened: the system daemon, running as/);
      const sock = lstatSync(join(layout().runtime, "daemon.sock"));
      expect(sock.mode & 0o777).toBe(0o660);
      expect(lstatSync(join(layout().runtime, "admin.sock")).mode & 0o777).toBe(0o600);
    });

    it("as the person: the database, the config and the password cannot be read", async () => {
      const L = layout();
      for (const file of [
        join(L.config, ".env"),
        join(L.config, "config.json"),
        join(L.state, "loxmcp.db"),
      ]) {
        const r = await run("cat", [file], { env: personEnv(), user: PERSON });
        expect(r.code, file).not.toBe(0);
        expect(r.stderr, file).toMatch(/Permission denied/);
      }
      const ls = await run("ls", [L.state, L.log], { env: personEnv(), user: PERSON });
      expect(ls.stderr).toMatch(/Permission denied/);
      const doctor = await asPerson(["doctor"]);
      expect(doctor.stdout).toContain("hardened mode: the system daemon runs as");
      expect(doctor.stdout).toMatch(/ok\s+credentials \S+\.env: not readable by your account/);
      expect(doctor.stdout).not.toMatch(/FAIL\s+(credentials|policy|database)/);
      // logs and the audit come through the daemon
      const logs = await asPerson(["logs", "-n", "5"]);
      expect(logs.code, logs.stderr).toBe(0);
      expect(logs.stdout).toMatch(/INFO/);
      const audit = await asPerson(["audit", "-n", "5"]);
      expect(audit.code, audit.stderr).toBe(0);
      expect(audit.stdout).toContain("control_find");
    });

    it("approve: refused without the PIN and with a wrong one, works with the right one (PIN set by root)", async () => {
      const set = await asRoot(["pin", "set", "--pin-stdin"], `${PIN}\n${PIN}\n`);
      expect(set.code, set.stderr).toBe(0);
      const c = clients[0] as Client;
      const intercom = sim.sim.house().controls.find((x) => x.name === "Front Door Intercom");
      const door = { name: "control_command", arguments: { uuid: intercom?.uuid, command: "open" } };
      sim.sim.resetStats();
      const held = await c.callTool(door);
      expect(held.isError).toBe(true);
      const code = /code ([A-Z0-9]{6}) is waiting/.exec(JSON.stringify(held.content))?.[1];
      expect(code).toBeDefined();
      const noPin = await asPerson(["approve", code as string]);
      expect(noPin.code).toBe(1);
      expect(noPin.stderr).toContain("needs your approval PIN");
      const wrong = await asPerson(["approve", code as string, "--pin-stdin"], "000001\n");
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toContain("wrong PIN");
      const ran = () => sim.sim.stats().executions.filter((e) => e.tool === "control_command").length;
      expect(ran()).toBe(0);
      const right = await asPerson(["approve", code as string, "--pin-stdin"], `${PIN}\n`);
      expect(right.code, right.stderr).toBe(0);
      const again = await c.callTool(door);
      expect(again.isError).toBeFalsy();
      expect(ran()).toBe(1);
    });

    it("the PIN, the policy and the daemon itself are root's: the person's pin set, raw socket, admin socket, config and stop are refused", async () => {
      const set = await asPerson(["pin", "set", "--pin-stdin"], `${PIN}\n${NEW_PIN}\n${NEW_PIN}\n`);
      expect(set.code).toBe(1);
      expect(set.stderr).toContain("sudo loxmcp pin set");
      const L = layout();
      const raw = async (socket: string, method: string, params: unknown) =>
        JSON.parse(
          (
            await run(process.execPath, ["-e", RAW_CALL, socket, method, JSON.stringify(params)], {
              env: personEnv(),
              user: PERSON,
            })
          ).stdout,
        ) as { error?: { code: number; message: string; data?: { reason?: string } }; connectError?: string };
      // knowing the PIN does not help on the ordinary socket
      for (const params of [
        { action: "set", pin: PIN, newPin: NEW_PIN, interactive: true },
        { action: "reset", newPin: NEW_PIN },
        { action: "remove", pin: PIN },
      ]) {
        const r = await raw(join(L.runtime, "daemon.sock"), "loxmcp/pin", params);
        expect(r.error?.code, JSON.stringify(params)).toBe(-32007);
        expect(r.error?.data?.reason).toBe("root-required");
      }
      const shutdown = await raw(join(L.runtime, "daemon.sock"), "loxmcp/shutdown", {});
      expect(shutdown.error?.message).toContain("stopped by root");
      expect(
        (await raw(join(L.runtime, "admin.sock"), "loxmcp/pin", { action: "reset", newPin: NEW_PIN }))
          .connectError,
      ).toBe("EACCES");
      const write = await run(
        "sh",
        ["-c", `echo '{"policy":{"mode":"full"}}' > ${join(L.config, "config.json")}`],
        {
          env: personEnv(),
          user: PERSON,
        },
      );
      expect(write.stderr).toMatch(/Permission denied/);
      const stop = await asPerson(["stop"]);
      expect(stop.code).toBe(1);
      expect(stop.stderr).toContain("sudo systemctl stop loxmcpd");
      // the PIN is still the one root set; root resets a forgotten one over the admin socket
      const status = JSON.parse((await asPerson(["pin", "status", "--json"])).stdout) as { set: boolean };
      expect(status.set).toBe(true);
      const reset = await asRoot(["pin", "reset", "--pin-stdin"], `${NEW_PIN}\n${NEW_PIN}\n`);
      expect(reset.code, reset.stderr).toBe(0);
      expect(reset.stdout).toContain("approval PIN reset");
      const audit = await asRoot(["audit", "--json", "-n", "50"]);
      expect(audit.stdout).toContain("approval PIN reset by root");
      expect(audit.stdout).toContain("hardened mode: only root changes the approval PIN");
    });

    it("with the system daemon stopped, the shim says so and no per-user daemon appears", async () => {
      for (const c of clients.splice(0)) await c.close().catch(() => {});
      await stopDaemon();
      const client = new Client({ name: "hardened-after-stop", version: "1.0.0" });
      const err = await client
        .connect(
          new StdioClientTransport({
            command: "setpriv",
            args: [
              "--reuid",
              PERSON,
              "--regid",
              PERSON,
              "--init-groups",
              bin("loxmcp-shim"),
              "--name",
              "claude-code",
            ],
            env: personEnv(),
            stderr: "pipe",
          }),
        )
        .then(
          () => undefined,
          (e: Error) => e,
        );
      await client.close().catch(() => {});
      expect(err?.message).toContain("system daemon not running: sudo systemctl start loxmcpd");
      const status = await asPerson(["status"]);
      expect(status.code).toBe(1);
      expect(status.stdout).toContain("system daemon not running: sudo systemctl start loxmcpd");
      const started = await asPerson(["start", "--timeout", "3"]);
      expect(started.code).toBe(1);
      expect(started.stderr).toContain("system daemon not running");
      // nothing runs as the person, and no per-user state was made
      const ps = spawnSync("ps", ["-u", PERSON, "-o", "args="], { encoding: "utf8" });
      expect(ps.stdout).not.toContain("loxmcpd");
      expect(existsSync(join(personHome, ".local", "share", "loxmcp", "daemon.start.lock"))).toBe(false);
      expect(existsSync(join(personHome, ".local", "share", "loxmcp", "daemon.lock"))).toBe(false);
    });

    it("`uninstall --system --migrate --purge` moves the credentials back and removes the rest, the user and the group", async () => {
      const r = await asRoot([
        "service",
        "uninstall",
        "--system",
        "--root",
        root,
        "--user",
        PERSON,
        "--daemon-user",
        SYS,
        "--migrate",
        "--purge",
      ]);
      expect(r.code, r.stderr).toBe(0);
      const L = layout();
      for (const p of [L.unit, L.config, L.state, L.log, L.runtime]) expect(existsSync(p), p).toBe(false);
      expect(passwd(SYS)).toBeUndefined();
      expect(groupId(SYS)).toBeUndefined();
      const back = lstatSync(join(personHome, ".config", "loxmcp", ".env"));
      expect([back.mode & 0o777, back.uid]).toEqual([0o600, passwd(PERSON)?.uid]);
      // per-user again: the person's CLI no longer talks of a system daemon
      const st = JSON.parse((await asPerson(["status", "--json"])).stdout) as Record<string, unknown>;
      expect(st).toMatchObject({ state: "down", mode: "user" });
    });
  },
);
