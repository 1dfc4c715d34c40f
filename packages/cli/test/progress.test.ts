/**
 * Progress while waiting (login-check, status --wait, start, service install): on a terminal a
 * spinner line on stderr names the step; piped (stderr not a TTY) or with --json nothing extra is
 * written. The terminal is a real pseudo-terminal (`script -qec`), the CLI the real built one.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { runInPty } from "../../../test-support/pty.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { CLI_BIN, CliSandbox } from "./helpers.js";

const hasScript = spawnSync("script", ["-qec", "true", "/dev/null"], { stdio: "ignore" }).status === 0;
if (!hasScript) console.warn("SKIPPED progress tests: util-linux `script` is not available");

/** Carriage returns and ANSI erase sequences: the marks of a redrawn progress line. */
const ESC = String.fromCharCode(27);
const REDRAW = new RegExp(`\r(?!\n)|${ESC}\\[`);

let sb: CliSandbox;
let s: SimHandle | undefined;

beforeEach(() => {
  sb = new CliSandbox();
});
afterEach(async () => {
  // a daemon `start` left behind
  await sb.run(["stop"]).catch(() => undefined);
  await s?.stop();
  s = undefined;
  sb.cleanup();
});

function pty(args: string[], env: Record<string, string> = {}) {
  return runInPty([process.execPath, CLI_BIN, ...args], { ...sb.env, TERM: "xterm", ...env }, [], 60_000);
}

describe.skipIf(!hasScript)("progress on a terminal, silence in a pipe", () => {
  it("login-check: the steps of the login on a terminal; piped, only the summary", async () => {
    s = await withSimulator();
    sb.env = { ...sb.env, ...s.env(sb.loxmcpHome) };
    const tty = await pty(["login-check"]);
    expect(tty.code, tty.screen).toBe(0);
    expect(tty.screen).toContain(`asking ${new URL(s.sim.connectUrl).host} for Miniserver ${s.sim.serial}`);
    expect(tty.screen).toContain(`logging in as ${s.sim.user}`);
    expect(tty.screen).toContain("listing the tools");
    expect(tty.screen).toMatch(/result:\s+OK/);
    // the probe's step lines are turned into the progress line, never shown as they are
    expect(tty.screen).not.toContain("loxmcpd-progress");

    const piped = await sb.run(["login-check", "--fresh"], { timeoutMs: 60_000 });
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stderr).toBe("");
    expect(piped.stdout).not.toMatch(REDRAW);
    expect(piped.stdout).not.toContain("logging in as");
    expect(piped.stdout).toMatch(/^mode: /);

    const json = await pty(["login-check", "--json"]);
    expect(json.code, json.screen).toBe(0);
    expect(json.screen).not.toContain("logging in as");
    expect(json.screen).not.toMatch(REDRAW);
  });

  it("status --wait: names the state it waits in on a terminal; piped and --json add nothing", async () => {
    const tty = await pty(["status", "--wait", "0.5"]);
    expect(tty.code).toBe(1);
    expect(tty.screen).toContain("waiting 0.5s for loxmcpd to be ready; now down (daemon not running)");
    expect(tty.screen).toContain("loxmcpd: down");

    const piped = await sb.run(["status", "--wait", "0.5"]);
    expect(piped.code).toBe(1);
    expect(piped.stderr).toBe("");
    expect(piped.stdout).not.toContain("waiting 0.5s");
    expect(piped.stdout).not.toMatch(REDRAW);

    const json = await pty(["status", "--wait", "0.5", "--json"]);
    expect(json.screen).not.toContain("waiting 0.5s");
    expect(JSON.parse(json.screen.trim())).toMatchObject({ state: "down" });
  });

  it("start: shows that it waits for the socket and the login; piped only its lines", async () => {
    s = await withSimulator();
    sb.env = { ...sb.env, ...s.env(sb.loxmcpHome) };
    const tty = await pty(["start"]);
    expect(tty.code, tty.screen).toBe(0);
    expect(tty.screen).toContain("starting loxmcpd; waiting for");
    expect(tty.screen).toMatch(/loxmcpd started: pid \d+, state ready/);
    expect((await sb.run(["stop"])).code).toBe(0);

    const piped = await sb.run(["start"], { timeoutMs: 40_000 });
    expect(piped.code, piped.stderr).toBe(0);
    expect(piped.stdout).toMatch(/^loxmcpd started: pid \d+, state ready/);
    expect(piped.stderr).not.toContain("starting loxmcpd; waiting for");
    expect(piped.stderr + piped.stdout).not.toMatch(REDRAW);
  });

  it.skipIf(process.platform !== "linux")(
    "service install: each step on a terminal; piped only what was done",
    async () => {
      const bin = join(sb.root, "bin");
      mkdirSync(bin);
      writeFileSync(
        join(bin, "systemctl"),
        '#!/bin/sh\ncase "$*" in *is-active*) echo inactive; exit 3 ;; *is-enabled*) echo disabled; exit 1 ;; esac\nexit 0\n',
      );
      chmodSync(join(bin, "systemctl"), 0o755);
      const env = { PATH: `${bin}:${sb.env.PATH}` };
      const tty = await pty(["service", "install", "--allow-root"], env);
      expect(tty.code, tty.screen).toBe(0);
      expect(tty.screen).toContain("systemctl --user enable --now loxmcpd.service");
      expect(tty.screen).toContain(`\r${ESC}[2K`);

      const piped = await sb.run(["service", "install", "--allow-root"], {}, env);
      expect(piped.code, piped.stderr).toBe(0);
      expect(piped.stderr).toBe("");
      expect(piped.stdout).not.toMatch(REDRAW);
      expect(piped.stdout).toContain("wrote ");
    },
  );
});
