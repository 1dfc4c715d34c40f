/**
 * What the long-lived daemon keeps out of its memory (issue "Lean hot path"), checked on the real
 * daemon process: a module-load hook (node --import) records every module each process loads, and
 * a wrapper records every call of the global fetch. After a fresh login, a token refresh and MCP
 * calls over the real socket, the daemon has loaded none of zod, ajv, the SDK's Client, types or
 * auth module, the HTML parser or the cookie jar, and never called fetch (no undici); the OAuth
 * helper child (another pid) did the login and the refresh.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DaemonProcess, spawnDaemon } from "../../../test-support/daemon.js";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { type SimHandle, withSimulator } from "../../../test-support/sim.js";
import { SocketClientTransport } from "../../../test-support/socket-client.js";
import { waitFor } from "../../../test-support/wait.js";

/** Module paths the daemon must never load (the helper child may). */
const NEVER_IN_DAEMON: Array<[string, RegExp]> = [
  ["zod", /\/node_modules\/zod\//],
  ["ajv", /\/node_modules\/ajv(-formats)?\//],
  ["the SDK's Client", /@modelcontextprotocol\/sdk\/dist\/esm\/client\/index\.js$/],
  ["the SDK's types", /@modelcontextprotocol\/sdk\/dist\/esm\/types\.js$/],
  ["the SDK's auth module", /@modelcontextprotocol\/sdk\/dist\/esm\/client\/auth\.js$/],
  ["the HTML parser", /\/node_modules\/node-html-parser\//],
  ["the cookie jar", /\/node_modules\/(tough-cookie|tldts)\//],
];

let h: TempHome;
let s: SimHandle;
let d: DaemonProcess;
let record: string;

beforeAll(async () => {
  h = makeHome();
  // 6 s tokens: refreshed (margin: half the lifetime) a few seconds into the test.
  s = await withSimulator({ accessTtl: 6 });
  record = join(h.home, "loaded.txt");
  const hooks = join(h.home, "hooks.mjs");
  writeFileSync(
    hooks,
    `import { appendFileSync } from "node:fs";
export async function load(url, context, next) {
  appendFileSync(${JSON.stringify(record)}, process.pid + " " + url + "\\n");
  return next(url, context);
}
`,
  );
  const register = join(h.home, "register.mjs");
  writeFileSync(
    register,
    `import { register } from "node:module";
import { appendFileSync } from "node:fs";
register(${JSON.stringify(pathToFileURL(hooks).href)});
const fetch0 = globalThis.fetch;
globalThis.fetch = function (...a) {
  appendFileSync(${JSON.stringify(record)}, process.pid + " FETCH " + String(a[0]).slice(0, 60) + "\\n");
  return fetch0.apply(this, a);
};
`,
  );
  d = spawnDaemon({ ...s.env(h.home), NODE_OPTIONS: `--import ${pathToFileURL(register).href}` });
  await d.waitReady();
});

afterAll(async () => {
  await d?.stop().catch(() => d.kill9());
  await s?.stop();
  h?.cleanup();
});

describe("the daemon's memory holds only what its hot path needs", () => {
  it("after a login, a refresh and calls: no zod, ajv, SDK Client/types/auth, HTML parser, cookie jar or fetch in the daemon", async () => {
    const client = new Client({ name: "lean-test", version: "1" });
    await client.connect(new SocketClientTransport(d.socketPath));
    const { tools } = await client.listTools();
    const read = tools.find((t) => t.annotations?.readOnlyHint)?.name ?? "system_status";
    for (let i = 0; i < 20; i++) await client.callTool({ name: read, arguments: {} });
    await waitFor(
      async () => {
        await client.callTool({ name: read, arguments: {} });
        return s.sim.stats().refreshes >= 1;
      },
      { what: "a token refresh", timeoutMs: 20_000, intervalMs: 500 },
    );
    await client.close();

    const lines = readFileSync(record, "utf8").split("\n").filter(Boolean);
    const byPid = new Map<string, string[]>();
    for (const l of lines) {
      const [pid, ...rest] = l.split(" ");
      byPid.set(pid as string, [...(byPid.get(pid as string) ?? []), rest.join(" ")]);
    }
    const daemon = byPid.get(String(d.pid)) ?? [];
    expect(daemon.length, "the hook saw the daemon's modules").toBeGreaterThan(50);
    for (const [what, re] of NEVER_IN_DAEMON) {
      expect(
        daemon.filter((u) => re.test(u)),
        `${what} loaded in the daemon`,
      ).toEqual([]);
    }
    expect(
      daemon.filter((u) => u.startsWith("FETCH")),
      "fetch called in the daemon",
    ).toEqual([]);
    // The login and the refresh were flown by helper children: each loaded the SDK's auth module.
    const helpers = [...byPid.entries()].filter(
      ([pid, urls]) => pid !== String(d.pid) && urls.some((u) => /sdk\/dist\/esm\/client\/auth\.js$/.test(u)),
    );
    expect(helpers.length).toBeGreaterThanOrEqual(2);
    expect(s.sim.stats()).toMatchObject({ logins: 1 });
  });
});
