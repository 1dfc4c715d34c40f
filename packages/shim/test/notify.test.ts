/**
 * The person's desktop notification (notify.ts) with stand-in `notify-send` / `osascript` that
 * record their arguments: once per held call, the action's text passed as arguments (never into a
 * script), a link only when the daemon gives one, and nothing at all when switched off or when no
 * notifier exists. (The end-to-end path — the real shim, the daemon's link, the browser — is in
 * packages/daemon/test/page-browser.test.ts.)
 */
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { resolvePaths } from "@loxmcp/common";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { waitFor } from "../../../test-support/wait.js";
import { HeldNotifier, which } from "../src/notify.js";

let root: string;
let bin: string;
let log: string;

function fake(name: string): void {
  const file = join(bin, name);
  writeFileSync(
    file,
    '#!/bin/sh\nf="$NOTIFY_LOG/$(date +%s%N)-$$"\nfor a in "$@"; do printf \'%s\\0\' "$a"; done > "$f"\n',
  );
  chmodSync(file, 0o755);
}

function calls(): string[][] {
  return readdirSync(log)
    .sort()
    .map((f) => readFileSync(join(log, f), "utf8").split("\0").slice(0, -1));
}

function notifier(platform: NodeJS.Platform, extra: Record<string, string> = {}): HeldNotifier {
  const env = { PATH: bin, NOTIFY_LOG: log, LOXMCP_HOME: join(root, "home"), ...extra };
  return new HeldNotifier({
    env,
    paths: resolvePaths(env),
    name: "claude-desktop",
    log: { debug: () => {} },
    platform,
  });
}

const held = { code: "K7Q2XM", what: 'send "open" to Intercom "Front <Door> & Co" in Hall' };

beforeEach(() => {
  root = mkdtempSync("/tmp/lxn-");
  bin = join(root, "bin");
  log = join(root, "log");
  mkdirSync(bin);
  mkdirSync(log);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe("desktop notification for a held call", () => {
  it("Linux: notify-send once per held call, markup escaped; without a daemon it points to `loxmcp open`", async () => {
    fake("notify-send");
    const n = notifier("linux");
    n.held(held);
    n.held(held); // the AI repeating the call: same code, no second notification
    await waitFor(() => calls().length === 1, { what: "notify-send to run" });
    n.held({ ...held, code: "ABCDEF" });
    await waitFor(() => calls().length === 2, { what: "a second notification for another code" });
    const [args] = calls();
    expect(args).toContain("loxmcp: approval needed");
    const body = args?.at(-1) ?? "";
    expect(body).toContain(
      'claude-desktop asks to send "open" to Intercom "Front &lt;Door&gt; &amp; Co" in Hall.',
    );
    expect(body).toMatch(/loxmcp open/);
    expect(body).not.toMatch(/http:/);
  });

  it("macOS: osascript gets the texts as arguments, not inside its script", async () => {
    fake("osascript");
    notifier("darwin").held(held);
    await waitFor(() => calls().length === 1, { what: "osascript to run" });
    const [args] = calls();
    expect(args?.slice(0, 6)).toEqual([
      "-e",
      "on run argv",
      "-e",
      "display notification (item 2 of argv) with title (item 1 of argv)",
      "-e",
      "end run",
    ]);
    expect(args?.[7]).toContain("Front <Door> & Co");
    expect(args?.join(" ")).not.toContain("/login#");
  });

  it("silent: LOXMCP_NOTIFY=0, no notifier on PATH, or another platform", async () => {
    fake("notify-send");
    notifier("linux", { LOXMCP_NOTIFY: "0" }).held(held);
    rmSync(join(bin, "notify-send"));
    notifier("linux").held({ ...held, code: "QQQQQQ" });
    fake("notify-send");
    notifier("win32").held({ ...held, code: "WWWWWW" });
    // A last one that does run, so that the ones before had their chance.
    notifier("linux").held({ ...held, code: "ZZZZZZ" });
    // The ones before gave up before their first await (run() checks synchronously), so one file only.
    await waitFor(() => calls().length === 1, { what: "the last notification" });
    expect(calls()).toHaveLength(1);
    expect(calls()[0]?.at(-1)).toContain("claude-desktop asks");
    expect(which("notify-send", { PATH: bin })).toBe(join(bin, "notify-send"));
    expect(which("notify-send", { PATH: join(root, "nothing") })).toBeUndefined();
    expect(existsSync(log)).toBe(true);
  });
});
