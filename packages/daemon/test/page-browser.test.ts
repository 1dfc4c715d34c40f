/**
 * The person's page in a real browser (Debian's chromium, driven by playwright-core), against the
 * REAL daemon, shim, CLI and simulator: an AI client's call is held → the person's shim raises a
 * desktop notification (a stand-in notify-send records it) with a one-time link → the page shows
 * the held call without a reload → approve with the PIN → the AI's repeat runs exactly once (the
 * simulator's execution log). Deny, emergency stop and resume; every view is photographed
 * (LOXMCP_UPDATE_SCREENSHOTS=1 writes them to docs/page/, see docs/page.md). Then the attacks: a
 * wrong PIN, a POST without the CSRF token, a foreign Origin, a foreign Host (DNS rebinding), a
 * reused sign-in secret, a state-changing GET and a request without the cookie are each refused,
 * and change nothing.
 */
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, request, type Server } from "node:http";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DaemonProcess, REPO_ROOT, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { runInPty } from "../../../test-support/pty.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { waitFor } from "../../../test-support/wait.js";
import { CLI_BIN, runCli, SHIM_BIN } from "../../cli/test/helpers.js";

// biome-ignore lint/suspicious/noExplicitAny: loose JSON from the daemon and the page
type J = any;

const CHROMIUM = [process.env.LOXMCP_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].find(
  (p): p is string => typeof p === "string" && existsSync(p),
);
// The CI installs chromium (.ci/run); elsewhere the file is skipped with a note when it is missing.
const suite = CHROMIUM || process.env.CI ? describe : describe.skip;
if (!CHROMIUM && !process.env.CI)
  console.warn(
    "page-browser.test.ts skipped: no chromium (apt-get install chromium, or set LOXMCP_CHROMIUM)",
  );

const PIN = "482917";
const SHOTS = process.env.LOXMCP_UPDATE_SCREENSHOTS ? join(REPO_ROOT, "docs", "page") : undefined;

let s: SimHandle;
let h: TempHome;
let d: DaemonProcess;
let browser: Browser;
let ctx: BrowserContext;
let page: Page;
let origin: string;
let fakeBin: string;
let notifyLog: string;
const clients: Client[] = [];
const servers: Server[] = [];

function env(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: h.home, LOXMCP_HOME: h.home, ...extra };
}
const cli = (args: string[], input?: string) => runCli(args, env(), input === undefined ? {} : { input });

function uuidOf(name: string): string {
  const c = s.sim.house().controls.find((x) => x.name === name);
  if (!c) throw new Error(`no control ${name}`);
  return c.uuid;
}

/** Executions of control_command the simulator recorded (each as often as it ran). */
function executed(): Array<{ uuid: string; command: string }> {
  return s.sim
    .stats()
    .executions.filter((e) => e.tool === "control_command")
    .flatMap((e) => Array.from({ length: e.count }, () => e.arguments as { uuid: string; command: string }));
}

const door = () => ({
  name: "control_command",
  arguments: { uuid: uuidOf("Front Door Intercom"), command: "open" },
});
const text = (r: J): string => (r?.content ?? []).map((c: J) => c.text ?? "").join("\n");
const meta = (r: J): J => r?._meta?.["loxmcp/policy"] ?? {};

/** An MCP client as Claude Desktop runs it: the real shim, with a notify-send that records. */
async function aiClient(name = "claude-desktop"): Promise<Client> {
  const c = new Client({ name, version: "1.0" });
  await c.connect(
    new StdioClientTransport({
      command: process.execPath,
      args: [SHIM_BIN, "--name", name],
      env: env({ PATH: `${fakeBin}:${process.env.PATH ?? "/usr/bin:/bin"}`, NOTIFY_LOG: notifyLog }),
      stderr: "pipe",
    }),
  );
  clients.push(c);
  return c;
}

/** The desktop notifications the stand-in notify-send received (its arguments each). */
function notifications(): string[][] {
  if (!existsSync(notifyLog)) return [];
  return readdirSync(notifyLog)
    .sort()
    .map((f) => readFileSync(join(notifyLog, f), "utf8").split("\0").slice(0, -1));
}

async function status(): Promise<J> {
  return d.status();
}

async function shot(p: Page, name: string): Promise<void> {
  const dir = SHOTS ?? join(h.home, "screenshots");
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.png`);
  // Messages that fade anyway would cover the view.
  await p.evaluate('(() => { const t = document.getElementById("toast"); if (t) t.hidden = true; })()');
  await p.screenshot({ path: file, fullPage: false });
  expect(statSync(file).size).toBeGreaterThan(2_000);
}

async function openLink(): Promise<string> {
  const r = await cli(["open", "--no-browser", "--json"]);
  expect(r.code, r.stderr).toBe(0);
  const link = JSON.parse(r.stdout) as { url: string; page: string; expiresInSec: number };
  expect(link.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/login#[\w-]{40,}$/);
  return link.url;
}

/** One raw HTTP request to the page, with any Host/Origin/Cookie the test wants. */
function raw(
  method: string,
  path: string,
  opts: { headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const u = new URL(origin);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: Number(u.port),
        method,
        path,
        // one connection per request, closed after it: the page's connections are limited
        agent: false,
        headers: { Host: u.host, Connection: "close", ...(opts.headers ?? {}) },
      },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}

async function session(p: Page): Promise<{ cookie: string; csrf: string }> {
  const c = (await p.context().cookies(origin)).find((x) => x.name.startsWith("loxmcp_page_"));
  if (!c) throw new Error("no page cookie");
  const csrf = await p.locator('meta[name="loxmcp-csrf"]').getAttribute("content");
  return { cookie: `${c.name}=${c.value}`, csrf: csrf ?? "" };
}

const card = (code: string) => page.locator(`article[data-code="${code}"]`);

beforeAll(async () => {
  s = await withSimulator();
  h = makeHome();
  mkdirSync(join(h.home, "config"), { recursive: true, mode: 0o700 });
  writeFileSync(join(h.home, "config", "config.json"), JSON.stringify({ policy: { mode: "confirm" } }));
  // A stand-in notify-send: records its arguments, one file per notification.
  fakeBin = join(h.home, "bin");
  notifyLog = join(h.home, "notifications");
  mkdirSync(fakeBin, { recursive: true });
  mkdirSync(notifyLog, { recursive: true });
  writeFileSync(
    join(fakeBin, "notify-send"),
    '#!/bin/sh\nf="$NOTIFY_LOG/$(date +%s%N)-$$"\nfor a in "$@"; do printf \'%s\\0\' "$a"; done > "$f"\n',
  );
  chmodSync(join(fakeBin, "notify-send"), 0o755);
  d = spawnDaemon(s.env(h.home));
  await d.waitReady(30_000);
  await d.waitStatus((st) => (st.policy as J)?.structure?.controls > 0, 30_000, "structure snapshot");
  browser = await chromium.launch({
    executablePath: CHROMIUM ?? "/usr/bin/chromium",
    // root in CI: no sandbox. rebind.test / attacker.test stand for other sites resolving to this host.
    args: ["--no-sandbox", "--host-resolver-rules=MAP rebind.test 127.0.0.1, MAP attacker.test 127.0.0.1"],
  });
  ctx = await browser.newContext({ viewport: { width: 900, height: 600 } });
  page = await ctx.newPage();
}, 120_000);

afterAll(async () => {
  for (const c of clients) await c.close().catch(() => {});
  for (const srv of servers) srv.close();
  await browser?.close().catch(() => {});
  await d?.stop().catch(() => d?.kill9());
  await s?.stop();
  h?.cleanup();
});

suite("the person's page in a real browser", () => {
  it("signs in once with the link of `loxmcp open`: the secret leaves the address bar and the history; a reused link is refused", async () => {
    const url = await openLink();
    origin = new URL(url).origin;
    await page.goto(url);
    await page.waitForURL(`${origin}/`);
    await page.getByText("live", { exact: true }).waitFor();
    expect(page.url()).toBe(`${origin}/`);
    const cookies = await ctx.cookies(origin);
    expect(cookies).toHaveLength(1);
    expect(cookies[0]).toMatchObject({ httpOnly: true, sameSite: "Strict", path: "/" });
    expect(await page.evaluate("document.cookie")).toBe(""); // HttpOnly: scripts cannot read it
    // The history has the clean URL only: going back leaves the page without meeting the secret.
    const secret = new URL(url).hash.slice(1);
    await page.goBack();
    expect(page.url()).not.toContain(secret);
    await page.goForward();
    expect(page.url()).toBe(`${origin}/`);

    // The same link again, in another browser profile: refused, and no cookie is set.
    const other = await browser.newContext();
    const p2 = await other.newPage();
    await p2.goto(url);
    await p2.getByText(/already used or has expired/).waitFor();
    expect(p2.url()).toBe(`${origin}/login`);
    expect(await other.cookies(origin)).toEqual([]);
    // Without a session the page itself says how to get in.
    await p2.goto(`${origin}/`);
    await p2.getByText("You are not signed in.").waitFor();
    await shot(p2, "signin");
    await other.close();
  });

  it("without a PIN, a held call shows up live with a desktop notification, cannot be approved on the page, and can be denied", async () => {
    await page.evaluate("window.marker = 42");
    let navigations = 0;
    page.on("framenavigated", (f) => {
      if (f === page.mainFrame()) navigations++;
    });
    const ai = await aiClient();
    s.sim.resetStats();
    const held = (await ai.callTool(door())) as J;
    expect(held.isError).toBe(true);
    const code = meta(held).approvalCode as string;
    expect(code).toMatch(/^[A-Z0-9]{6}$/);
    // The AI is told the person can approve on their page, and gets no way in itself.
    expect(text(held)).toMatch(/on their loxmcp page/);
    expect(JSON.stringify(held)).not.toMatch(/\/login#|127\.0\.0\.1:\d+/);

    await card(code).getByText("Front Door Intercom", { exact: true }).waitFor();
    expect(await page.evaluate("window.marker")).toBe(42);
    expect(navigations).toBe(0);
    expect(await card(code).locator(".tier").textContent()).toBe("T3");
    await page.locator("#nopin").waitFor();
    expect(await card(code).locator("form").isHidden()).toBe(true);
    await shot(page, "approvals-no-pin");

    // Even asked directly (cookie, CSRF token, the page's Origin), the page does not approve.
    const { cookie, csrf } = await session(page);
    const r = await raw("POST", "/api/approve", {
      headers: { Cookie: cookie, "X-CSRF-Token": csrf, Origin: origin, "Content-Type": "application/json" },
      body: JSON.stringify({ code, pin: "" }),
    });
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ reason: "terminal-required" });
    expect(JSON.parse(r.body).error).toMatch(/loxmcp pin set/);
    expect(((await status()).pendingApprovals as J[]).some((p) => p.approved)).toBe(false);

    // The desktop notification: names the action and carries a one-time link to the page.
    const note = await waitFor(
      () => notifications().find((n) => n.join(" ").includes("Front Door Intercom")),
      {
        what: "the desktop notification",
      },
    );
    expect(note).toContain("loxmcp: approval needed");
    const body = note.at(-1) ?? "";
    expect(body).toMatch(/claude-desktop asks to send "open" to Intercom "Front Door Intercom"/);
    const link = /(http:\/\/127\.0\.0\.1:\d+\/login#[\w-]+)/.exec(body)?.[1];
    expect(link).toBeDefined();
    const fromNote = await browser.newContext();
    const p3 = await fromNote.newPage();
    await p3.goto(link as string);
    await p3.waitForURL(`${origin}/`);
    await p3.locator(`article[data-code="${code}"]`).waitFor();
    await fromNote.close();

    // Deny on the page: gone at once; the AI's repeat is held again (a new code), nothing runs.
    await card(code).getByRole("button", { name: "Deny" }).click();
    await card(code).waitFor({ state: "detached" });
    const again = (await ai.callTool(door())) as J;
    expect(meta(again).approvalCode).not.toBe(code);
    expect(executed()).toEqual([]);
    await cli(["deny", meta(again).approvalCode]);
    await card(meta(again).approvalCode).waitFor({ state: "detached" });
  });

  it("with the PIN: a wrong PIN is refused and counted, the right one approves, the AI's repeat runs exactly once", async () => {
    const set = await runInPty([process.execPath, CLI_BIN, "pin", "set"], env(), [
      ["New approval PIN", PIN],
      ["again", PIN],
    ]);
    expect(set.code, set.screen).toBe(0);
    await page.locator("#nopin").waitFor({ state: "hidden" });

    const ai = clients[0] as Client;
    s.sim.resetStats();
    const held = (await ai.callTool(door())) as J;
    const code = meta(held).approvalCode as string;
    const c = card(code);
    await c.waitFor();
    expect(await c.locator(".left").textContent()).toMatch(/\d+ s left/);
    await shot(page, "approvals");

    await c.getByLabel(`Approval PIN for ${code}`).fill("000000");
    await c.getByRole("button", { name: "Approve" }).click();
    await c.getByText(/wrong PIN/).waitFor();
    expect(((await status()).policy as J).pin.failures).toBe(1);
    expect((await ai.callTool(door())).isError).toBe(true);
    expect(executed()).toEqual([]);

    await c.getByLabel(`Approval PIN for ${code}`).fill(PIN);
    await c.getByRole("button", { name: "Approve" }).click();
    await c.getByText(/Approved — it runs once/).waitFor();
    expect(((await status()).policy as J).pin.failures).toBe(0);
    await shot(page, "approved");

    const ran = (await ai.callTool(door())) as J;
    expect(ran.isError).toBeFalsy();
    await c.waitFor({ state: "detached" });
    const once = (await ai.callTool(door())) as J;
    expect(once.isError).toBe(true);
    expect(executed()).toEqual([{ uuid: uuidOf("Front Door Intercom"), command: "open" }]);
    // The audit names the page as the approver.
    const rows = ((await cli(["audit", "--json"])).stdout.trim().split("\n") as string[]).map((l) =>
      JSON.parse(l),
    );
    expect(
      rows.some((e: J) => e.tool === "loxmcp/approve" && e.client === "loxmcp-page" && /PIN/.test(e.reason)),
    ).toBe(true);
    expect(JSON.stringify(rows)).not.toContain(PIN);
    await cli(["deny", meta(once).approvalCode]);
  });

  it("emergency stop in one click (no PIN), resume with the PIN", async () => {
    s.sim.resetStats();
    await page.getByRole("button", { name: "Emergency stop" }).click();
    await page.locator("#estop").waitFor();
    await page.getByText(/Emergency stop active: \d+ blinds and gates stopped/).waitFor();
    expect(((await status()).policy as J).emergencyStop.active).toBe(true);
    expect(executed().length).toBeGreaterThan(0);
    expect(executed().every((e) => e.command === "stop")).toBe(true);
    const refused = (await (clients[0] as Client).callTool({
      name: "control_command",
      arguments: { uuid: uuidOf("Kitchen Lights"), command: "on" },
    })) as J;
    expect(text(refused)).toMatch(/emergency stop is active/);
    await shot(page, "emergency-stop");

    await page.locator("#resume-pin").fill("111111");
    await page.getByRole("button", { name: "Resume" }).click();
    await page
      .locator("#resume-err")
      .getByText(/wrong PIN/)
      .waitFor();
    expect(((await status()).policy as J).emergencyStop.active).toBe(true);
    await page.locator("#resume-pin").fill(PIN);
    await page.getByRole("button", { name: "Resume" }).click();
    await page.locator("#estop").waitFor({ state: "hidden" });
    expect(((await status()).policy as J).emergencyStop).toBeUndefined();
  });

  it("status, the audit filtered by client and decision, the house by room with tiers, tool changes accepted with the PIN", async () => {
    await page.getByRole("link", { name: "Status" }).click();
    await page.locator("#status").getByText("ready", { exact: true }).waitFor();
    await page.locator("#clients").getByText("claude-desktop").first().waitFor();
    await shot(page, "status");

    await page.getByRole("link", { name: "Audit" }).click();
    await page.locator("#f-client").fill("claude-desktop");
    await page.locator("#f-decision").selectOption("held");
    // Only held calls of that client (waiting for the filtered answer, not the first one drawn).
    await waitFor(
      async () => {
        const decisions = await page.locator("#audit tbody .dec").allTextContents();
        return decisions.length > 0 && decisions.every((x) => x === "held");
      },
      { what: "the audit filtered to held calls" },
    );
    const clientsShown = await page.locator("#audit tbody td:nth-child(2)").allTextContents();
    expect(clientsShown.every((x) => x.startsWith("claude-desktop"))).toBe(true);
    await shot(page, "audit");
    await page.locator("#f-decision").selectOption("any");
    await page.locator("#f-client").fill("loxmcp-page");
    await page.getByRole("button", { name: "Show" }).click();
    await page.locator("#audit tbody").getByText("loxmcp/stop-all").first().waitFor();

    await page.getByRole("link", { name: "House" }).click();
    const hall = page.locator(".room", { has: page.getByRole("heading", { name: /Hallway/ }) });
    await hall.waitFor();
    expect(await hall.locator("li", { hasText: "Front Door Intercom" }).locator(".tier").textContent()).toBe(
      "T3",
    );
    expect(await page.locator(".room li", { hasText: "Kitchen Lights" }).locator(".tier").textContent()).toBe(
      "T1",
    );
    await shot(page, "house");

    // A firmware update adds a tool: held until the person accepts it here, with the PIN.
    s.sim.changeTools({ add: [{ name: "door_unlock", write: true }] });
    await page.getByRole("link", { name: /Tool changes/ }).click();
    await page.locator("#tool-changes").getByText("door_unlock").waitFor({ timeout: 20_000 });
    await shot(page, "tools");
    await page.locator("#tools-pin").fill(PIN);
    await page.getByRole("button", { name: "Accept these changes" }).click();
    await page.getByText(/tool list \(\d+ tools\) is the one you accepted/).waitFor();
    expect(((await status()).policy as J).toolChanges).toBeUndefined();
    s.sim.resetTools();
    await page.locator("#tool-changes").getByText("door_unlock").waitFor({ timeout: 20_000 });
    await page.locator("#tools-pin").fill(PIN);
    await page.getByRole("button", { name: "Accept these changes" }).click();
    await page.getByText(/is the one you accepted/).waitFor();
  });

  it("fits a phone-sized screen", async () => {
    const phone = await ctx.newPage();
    await phone.setViewportSize({ width: 390, height: 760 });
    await phone.goto(`${origin}/#approvals`);
    const held = (await (clients[0] as Client).callTool(door())) as J;
    const code = meta(held).approvalCode as string;
    const c = phone.locator(`article[data-code="${code}"]`);
    await c.waitFor();
    // Nothing wider than the screen: the page does not scroll sideways.
    expect(await phone.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(390);
    const box = await c.getByRole("button", { name: "Approve" }).boundingBox();
    expect((box?.x ?? 0) + (box?.width ?? 0)).toBeLessThanOrEqual(390);
    await shot(phone, "phone");
    await phone.close();
    await cli(["deny", code]);
  });

  it("refuses, and changes nothing for: no CSRF token, a foreign Origin, a foreign Host, a reused secret, a state-changing GET, no cookie", async () => {
    const ai = clients[0] as Client;
    const code = meta(await ai.callTool(door())).approvalCode as string;
    const { cookie, csrf } = await session(page);
    const json = { "Content-Type": "application/json" };
    const ok = { Cookie: cookie, "X-CSRF-Token": csrf, Origin: origin, ...json };
    const refusals: Array<[string, Promise<{ status: number; body: string }>, number]> = [
      [
        "POST without the CSRF token",
        raw("POST", "/api/stop-all", { headers: { Cookie: cookie, Origin: origin, ...json }, body: "{}" }),
        403,
      ],
      [
        "POST with a wrong CSRF token",
        raw("POST", "/api/deny", {
          headers: { ...ok, "X-CSRF-Token": "x".repeat(43) },
          body: JSON.stringify({ code }),
        }),
        403,
      ],
      [
        "POST from a foreign Origin",
        raw("POST", "/api/stop-all", { headers: { ...ok, Origin: "http://attacker.test" }, body: "{}" }),
        403,
      ],
      [
        "POST without an Origin",
        raw("POST", "/api/stop-all", { headers: { ...ok, Origin: "" }, body: "{}" }),
        403,
      ],
      [
        "POST with a foreign Host (DNS rebinding)",
        raw("POST", "/api/deny", {
          headers: { ...ok, Host: `rebind.test:${new URL(origin).port}` },
          body: JSON.stringify({ code }),
        }),
        421,
      ],
      [
        "GET with a foreign Host",
        raw("GET", "/api/state", { headers: { Host: "localhost:1", Cookie: cookie } }),
        421,
      ],
      ["a state-changing GET", raw("GET", "/api/stop-all", { headers: { Cookie: cookie } }), 405],
      [
        "a state-changing GET (deny)",
        raw("GET", `/api/deny?code=${code}`, { headers: { Cookie: cookie } }),
        405,
      ],
      ["a state-changing GET (logout)", raw("GET", "/logout", { headers: { Cookie: cookie } }), 405],
      [
        "POST without the cookie",
        raw("POST", "/api/stop-all", { headers: { ...ok, Cookie: "" }, body: "{}" }),
        401,
      ],
      ["GET without the cookie", raw("GET", "/api/state"), 401],
      ["live updates without the cookie", raw("GET", "/events"), 401],
      [
        "POST as a form (text/plain)",
        raw("POST", "/api/stop-all", { headers: { ...ok, "Content-Type": "text/plain" }, body: "{}" }),
        415,
      ],
    ];
    for (const [what, p, want] of refusals) {
      const r = await p;
      expect(r.status, `${what}: ${r.body}`).toBe(want);
    }
    // A reused sign-in secret: the one from the first test, used once already.
    const link = await openLink();
    const secret = new URL(link).hash.slice(1);
    const first = await raw("POST", "/login", {
      headers: { Origin: origin, ...json },
      body: JSON.stringify({ secret }),
    });
    expect(first.status).toBe(200);
    const reused = await raw("POST", "/login", {
      headers: { Origin: origin, ...json },
      body: JSON.stringify({ secret }),
    });
    expect(reused.status).toBe(403);
    expect(reused.headers["set-cookie"]).toBeUndefined();
    // A GET of the sign-in page with the secret in the query changes nothing either.
    const asQuery = await raw("GET", `/login?s=${secret}`);
    expect(asQuery.headers["set-cookie"]).toBeUndefined();

    // A wrong PIN through the API is counted as on the socket.
    const wrong = await raw("POST", "/api/approve", {
      headers: ok,
      body: JSON.stringify({ code, pin: "999999" }),
    });
    expect(wrong.status).toBe(403);
    expect(JSON.parse(wrong.body).reason).toBe("pin-wrong");
    expect(((await status()).policy as J).pin.failures).toBe(1);

    // Nothing changed: no emergency stop, the held call still waits, unapproved.
    const st = await status();
    expect((st.policy as J).emergencyStop).toBeUndefined();
    expect((st.pendingApprovals as J[]).filter((p) => !p.approved)).toHaveLength(1);
    // The same session still works with its token.
    const fine = await raw("POST", "/api/deny", { headers: ok, body: JSON.stringify({ code }) });
    expect(fine.status).toBe(200);
  });

  it("a foreign site and a rebinding name get nothing from a browser either", async () => {
    const port = new URL(origin).port;
    // DNS rebinding: a name that now points to 127.0.0.1.
    const rebound = await ctx.newPage();
    const resp = await rebound.goto(`http://rebind.test:${port}/`);
    expect(resp?.status()).toBe(421);
    const rebindPost = await rebound.evaluate(async () => {
      const r = await fetch("/api/stop-all", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: "{}",
      });
      return r.status;
    });
    expect(rebindPost).toBe(421);
    await rebound.close();

    // Another site the person visits: a cross-site form POST, a no-cors fetch and an image GET.
    const evil = createServer((_req, res) => {
      res.writeHead(200, { "Content-Type": "text/html" });
      res.end(`<!doctype html><form id=f method=post action="${origin}/api/stop-all" enctype="text/plain">
        <input name='{"reason":"x","a":"' value='"}'></form>
        <img src="${origin}/api/stop-all"><img src="${origin}/logout">
        <script>
          fetch("${origin}/api/stop-all", { method: "POST", mode: "no-cors", credentials: "include",
            headers: { "Content-Type": "text/plain" }, body: "{}" }).catch(() => {});
          fetch("${origin}/api/state", { credentials: "include" }).then(() => { document.title = "read"; },
            () => { document.title = "blocked"; });
          setTimeout(() => document.getElementById("f").submit(), 300);
        </script>`);
    });
    servers.push(evil);
    await new Promise<void>((r) => evil.listen(0, "127.0.0.1", () => r()));
    const evilPort = (evil.address() as { port: number }).port;
    const refusedBefore = ((await status()).page as J).refused as number;
    const attacker = await ctx.newPage();
    await attacker.goto(`http://attacker.test:${evilPort}/`);
    await attacker.waitForURL(`${origin}/api/stop-all`, { timeout: 10_000 });
    expect(await attacker.content()).toMatch(/requests from other sites are refused/);
    await attacker.close();
    // They all reached the page and were refused (the form, the fetches, both images).
    expect(((await status()).page as J).refused - refusedBefore).toBeGreaterThanOrEqual(4);
    expect(((await status()).policy as J).emergencyStop).toBeUndefined();
    // The person's own session was not signed out by the foreign GET /logout either.
    const still = await raw("GET", "/api/state", { headers: { Cookie: (await session(page)).cookie } });
    expect(still.status).toBe(200);
  });
});
