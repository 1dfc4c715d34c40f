/**
 * The installable package, end to end: `scripts/pack.mjs` (what `pnpm run pack` runs after the
 * build) writes one tarball; `npm install -g --prefix <tmp>` of it puts `loxmcp`, `loxmcpd` and
 * `loxmcp-shim` in <tmp>/bin (better-sqlite3 builds there: a prebuilt binary when GitHub is
 * reachable, else compiled from source — about a minute); an SDK client runs the PATH shim, which
 * starts the INSTALLED daemon (with DAEMON_NODE_FLAGS) against the simulator; the installed CLI
 * reports it ready, writes client configs and service files naming the PATH commands, and
 * restarts it while the client stays connected. Skipped only when `npm` is missing.
 */
import { execFile, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { delimiter, dirname, join } from "node:path";
import { promisify } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { waitFor } from "../../../test-support/wait.js";
import { REPO_ROOT } from "./helpers.js";

const run = promisify(execFile);
const npmAvailable = spawnSync("npm", ["--version"], { stdio: "ignore" }).status === 0;
const VERSION = (
  JSON.parse(readFileSync(join(REPO_ROOT, "packages/cli/package.json"), "utf8")) as { version: string }
).version;
/** The better-sqlite3 the workspace runs with (the packed package must depend on exactly it). */
const SQLITE_VERSION = (
  JSON.parse(
    readFileSync(join(REPO_ROOT, "packages/daemon/node_modules/better-sqlite3/package.json"), "utf8"),
  ) as { version: string }
).version;

/** npm's environment: ours without what pnpm/vitest put in for themselves (npm warns about it). */
function npmEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(npm_|pnpm_)/i.test(k)) env[k] = v;
  }
  return {
    ...env,
    // node-gyp: use both cores for the better-sqlite3 compile (when no prebuilt binary is reachable)
    JOBS: "max",
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_audit: "false",
  };
}

describe.skipIf(!npmAvailable)("the npm package (pnpm run pack → npm install -g)", () => {
  let tmp: string;
  let prefix: string;
  let bin: (name: string) => string;
  let tgz: string;
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    tmp = realpathSync(mkdtempSync("/tmp/lxp-"));
    prefix = join(tmp, "prefix");
    bin = (name) => join(prefix, "bin", name);
    const out = join(tmp, "out");
    let t = Date.now();
    const packed = await run(process.execPath, [join(REPO_ROOT, "scripts/pack.mjs"), "--out-dir", out], {
      cwd: REPO_ROOT,
      env: npmEnv(),
      timeout: 60_000,
    });
    timings.packMs = Date.now() - t;
    tgz = packed.stdout.trim();
    expect(readdirSync(out)).toEqual([`loxmcp-${VERSION}.tgz`]);
    expect(tgz).toBe(join(out, `loxmcp-${VERSION}.tgz`));

    t = Date.now();
    // --allow-scripts: npm 11 asks for dependencies' install scripts to be allowed (better-sqlite3
    // builds its native part in one); older npm ignores the setting.
    await run("npm", ["install", "-g", "--prefix", prefix, "--allow-scripts=better-sqlite3", tgz], {
      cwd: tmp,
      env: npmEnv(),
      timeout: 200_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    timings.installMs = Date.now() - t;
  }, 240_000);

  afterAll(() => {
    if (Object.keys(timings).length > 0) console.log(`pack-install timings: ${JSON.stringify(timings)}`);
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  /** PATH with the install's bin first, and this node (the launchers run `env node`). */
  const pathEnv = () =>
    [join(prefix, "bin"), dirname(process.execPath), process.env.PATH ?? ""].join(delimiter);

  it("puts loxmcp, loxmcpd and loxmcp-shim on PATH, each printing the version", async () => {
    for (const name of ["loxmcp", "loxmcpd", "loxmcp-shim"]) {
      const r = await run(bin(name), ["--version"], { env: { PATH: pathEnv() }, timeout: 15_000 });
      expect(r.stdout.trim(), name).toBe(VERSION);
    }
  });

  it("is self-contained: bundled code, better-sqlite3 pinned as the only dependency, templates inside", () => {
    const pkgDir = join(prefix, "lib", "node_modules", "loxmcp");
    const text = readFileSync(join(pkgDir, "package.json"), "utf8");
    const pkg = JSON.parse(text) as Record<string, unknown>;
    expect(pkg.dependencies).toEqual({ "better-sqlite3": SQLITE_VERSION });
    expect(pkg.devDependencies).toBeUndefined();
    expect(text).not.toMatch(/workspace:|@loxmcp\//);
    expect(readdirSync(join(pkgDir, "node_modules"))).not.toContain("@loxmcp");
    expect(readdirSync(join(pkgDir, "node_modules"))).not.toContain("@modelcontextprotocol");
    expect(readdirSync(join(pkgDir, "systemd"))).toContain("loxmcpd.service.in");
    expect(readdirSync(join(pkgDir, "launchd"))).toContain("com.loxmcp.daemon.plist.in");
    // the shim stays one CommonJS file
    expect(readdirSync(join(pkgDir, "dist")).filter((f) => f.includes("shim"))).toEqual(["loxmcp-shim.cjs"]);
  });

  describe("runs from PATH against the simulator", () => {
    let sim: SimHandle;
    let home: ReturnType<typeof makeHome>;
    let env: Record<string, string>;
    let client: Client | undefined;
    let transport: StdioClientTransport | undefined;

    const cli = async (args: string[], timeout = 30_000) => {
      try {
        const r = await run(bin("loxmcp"), args, { env, timeout });
        return { code: 0, stdout: r.stdout, stderr: r.stderr };
      } catch (err) {
        const e = err as { code?: number; stdout?: string; stderr?: string };
        if (typeof e.code !== "number") throw err;
        return { code: e.code, stdout: e.stdout ?? "", stderr: e.stderr ?? "" };
      }
    };
    const status = async () =>
      JSON.parse((await cli(["status", "--json"])).stdout) as Record<string, unknown>;
    const daemonArgv = (pid: unknown) =>
      readFileSync(`/proc/${String(pid)}/cmdline`, "utf8")
        .split("\0")
        .filter(Boolean);

    beforeAll(async () => {
      sim = await withSimulator();
      home = makeHome();
      const userHome = join(tmp, "home");
      mkdirSync(userHome, { recursive: true });
      // a private HOME: no service of the machine's user is found or started
      env = { PATH: pathEnv(), HOME: userHome, ...sim.env(home.home) };
    });

    afterAll(async () => {
      await client?.close().catch(() => {});
      if (env) await cli(["stop"]).catch(() => {});
      await sim?.stop();
      home?.cleanup();
    });

    it("an MCP client runs the PATH shim, which starts the installed daemon with its V8 flags", async () => {
      const t = Date.now();
      transport = new StdioClientTransport({
        command: bin("loxmcp-shim"),
        args: ["--name", "t"],
        env,
        stderr: "pipe",
      });
      client = new Client({ name: "pack-test", version: "1.0.0" });
      await client.connect(transport);
      const { tools } = await client.listTools();
      expect(tools.map((x) => x.name)).toContain("control_find");
      const res = await client.callTool({ name: "control_find", arguments: { query: "light" } });
      expect(res.isError).toBeFalsy();
      expect(JSON.stringify(res.content)).toContain("controls");
      timings.firstCallMs = Date.now() - t;

      const st = await status();
      expect(st).toMatchObject({ state: "ready", version: VERSION });
      expect((st.clients as Array<{ name?: string }>).map((c) => c.name)).toContain("t");
      const argv = daemonArgv(st.pid);
      expect(argv).toContain("--max-semi-space-size=1");
      expect(argv).toContain(join(prefix, "lib", "node_modules", "loxmcp", "bin", "loxmcpd.js"));
      expect(argv.join(" ")).not.toContain(REPO_ROOT);

      const text = await cli(["status"]);
      expect(text.code).toBe(0);
      expect(text.stdout).toContain(`loxmcpd: ready  (pid ${String(st.pid)}, v${VERSION}`);
      expect(text.stdout).not.toContain("loxmcp restart");
    });

    it("the installed daemon serves the page from the package's own files (`loxmcp open`)", async () => {
      const open = await cli(["open", "--no-browser", "--json"]);
      expect(open.code, open.stderr).toBe(0);
      const { url, page } = JSON.parse(open.stdout) as { url: string; page: string };
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/login#/);
      for (const file of ["login", "app.js", "app.css"]) {
        const r = await fetch(`${page}${file}`);
        expect(r.status, file).toBe(200);
      }
    });

    it("client configs and service files name the PATH commands, not the checkout", async () => {
      const snippet = await cli(["client-config", "claude"]);
      expect(snippet.code).toBe(0);
      const entry = (
        JSON.parse(snippet.stdout) as { mcpServers: { loxone: { command: string; args: string[] } } }
      ).mcpServers.loxone;
      expect(entry.command).toBe(process.execPath);
      expect(entry.args).toEqual([bin("loxmcp-shim"), "--name", "claude-desktop"]);

      const unit = await cli(["service", "install", "--print", "--platform", "linux"]);
      expect(unit.code).toBe(0);
      expect(unit.stdout).toContain(
        `ExecStart=${process.execPath} --max-semi-space-size=1 ${bin("loxmcpd")}\n`,
      );
      const plist = await cli(["service", "install", "--print", "--platform", "darwin"]);
      expect(plist.stdout).toContain(`<string>${bin("loxmcpd")}</string>`);
      expect(unit.stdout + plist.stdout + snippet.stdout).not.toContain(REPO_ROOT);
    });

    it("`loxmcp restart` replaces the daemon; the client's shim reconnects to the new one", async () => {
      const before = await status();
      const r = await cli(["restart"]);
      expect(r.stderr).not.toContain("loxmcp:");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`loxmcpd stopped (pid ${String(before.pid)}, v${VERSION})`);
      const after = await status();
      expect(after.state).toBe("ready");
      expect(after.pid).not.toBe(before.pid);
      expect(daemonArgv(after.pid)).toContain("--max-semi-space-size=1");
      await waitFor(
        async () => {
          const res = await client?.callTool({ name: "control_find", arguments: { query: "light" } });
          return res?.isError !== true;
        },
        { timeoutMs: 15_000, what: "a call through the shim after the restart" },
      );
    });
  });
});
