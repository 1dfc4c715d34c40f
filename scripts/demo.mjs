#!/usr/bin/env node
// `pnpm demo`: the main job on the embedded simulator.
// Starts a Loxone-like simulator, the loxmcp daemon against it, then two MCP clients through the
// real shim (as Claude / Cursor would), shows one shared login, a read, a comfort write, a
// security write stopped by the safety policy, and `loxmcp status`. `--keep` leaves it running.
import { execFile } from "node:child_process";
import { mkdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { startSimulator } from "@loxmcp/simulator";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const keep = process.argv.includes("--keep");
const home = join(root, ".loxmcp-demo");
const bins = {
  daemon: join(root, "packages/daemon/bin/loxmcpd.js"),
  shim: join(root, "packages/shim/bin/loxmcp-shim.js"),
  cli: join(root, "packages/cli/bin/loxmcp.js"),
};

// The simulator runs in this process: the CLI must run asynchronously (spawnSync would block
// the simulator's event loop while the daemon talks to it).
function cli(...args) {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bins.cli, ...args],
      { env, encoding: "utf8", timeout: 30_000 },
      (err, stdout, stderr) =>
        resolve({ status: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

const say = (s = "") => process.stdout.write(`${s}\n`);
const step = (s) => say(`\n\x1b[1m▶ ${s}\x1b[0m`);

function text(result) {
  return (result.content ?? [])
    .filter((c) => c.type === "text")
    .map((c) => c.text)
    .join("\n");
}
function clip(s, n = 400) {
  return s.length > n ? `${s.slice(0, n)} … (${s.length - n} more chars)` : s;
}

rmSync(home, { recursive: true, force: true });
mkdirSync(home, { recursive: true, mode: 0o700 });

step("Starting the Loxone simulator (connect service + 3 relays + OAuth + MCP)");
const sim = await startSimulator({});
say(`  connect ${sim.connectUrl}/${sim.serial}/mcp → relay ${sim.relayUrls[sim.currentRelay()]}`);

const env = {
  ...process.env,
  LOXMCP_HOME: home,
  LOXONE_SERIAL: sim.serial,
  LOXONE_USER: sim.user,
  LOXONE_PASSWORD: sim.password,
  LOXONE_CONNECT_URL: sim.connectUrl,
  LOXMCP_DAEMON_BIN: bins.daemon,
};

const clients = [];
let daemonPid;
async function shutdown(code) {
  for (const c of clients) await c.close().catch(() => {});
  await cli("stop");
  if (daemonPid) {
    try {
      process.kill(daemonPid, "SIGTERM");
    } catch {}
  }
  await sim.stop();
  process.exit(code);
}

try {
  step("Starting two MCP clients through loxmcp-shim (the first one starts the daemon)");
  const t0 = Date.now();
  for (const name of ["claude-demo", "cursor-demo"]) {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [bins.shim, "--name", name],
      env,
      stderr: "inherit",
    });
    const client = new Client({ name, version: "1.0.0" });
    await client.connect(transport);
    clients.push(client);
    say(`  ${name}: connected after ${Date.now() - t0} ms`);
  }
  const [claude, cursor] = clients;
  const { tools } = await claude.listTools();
  say(`  tools from the Miniserver: ${tools.map((t) => t.name).join(", ")}`);

  const stats = await (await fetch(`${sim.adminUrl}/stats`)).json();
  say(`  simulator saw ${stats.logins} login(s) and ${stats.sessions} MCP session(s) for 2 clients`);

  const find = tools.find((t) => /find/.test(t.name));
  const command = tools.find((t) => /command/.test(t.name));
  step("A read: the AI looks for lights in the living room");
  const found = await cursor.callTool({ name: find.name, arguments: { query: "light" } });
  say(clip(text(found)));

  const house = sim.house();
  const light = house.controls.find((c) => c.type === "LightControllerV2");
  const door = house.controls.find((c) => /Intercom|Door/i.test(c.type) || /door/i.test(c.name));
  step(`A comfort write (T1): turn on "${light.name}" in ${light.room}`);
  const on = await claude.callTool({ name: command.name, arguments: { uuid: light.uuid, command: "on" } });
  say(clip(text(on)));

  if (door) {
    const cmd = door.commands.find((c) => !c.includes("{")) ?? door.commands[0];
    const call = { name: command.name, arguments: { uuid: door.uuid, command: cmd } };
    step(`A security write (T3): "${cmd}" on "${door.name}" — the policy holds it for the person`);
    const held = await claude.callTool(call);
    say(`  isError=${Boolean(held.isError)}`);
    say(clip(text(held)));
    const code = /approve ([A-Z0-9]{4,})/.exec(text(held))?.[1];

    step("The AI repeats the call on its own: still held (it cannot approve itself)");
    const again = await claude.callTool(call);
    say(
      `  isError=${Boolean(again.isError)}; executions on the Miniserver: ${sim.stats().executions.filter((e) => e.tool === command.name && e.arguments?.uuid === door.uuid).length}`,
    );

    if (code) {
      step(`The person approves it in a terminal: loxmcp approve ${code}`);
      const ap = await cli("approve", code);
      say((ap.stdout + ap.stderr).trimEnd());
      step("The AI calls again with the same arguments: now it runs");
      const ran = await claude.callTool(call);
      say(`  isError=${Boolean(ran.isError)}`);
      say(clip(text(ran)));
    }
  }

  step("Emergency stop: loxmcp stop-all (blocks writes, stops every blind and gate)");
  const es = await cli("stop-all", "--reason", "demo");
  say(clip((es.stdout + es.stderr).trimEnd(), 600));
  const blocked = await claude.callTool({
    name: command.name,
    arguments: { uuid: light.uuid, command: "off" },
  });
  say(`  a light command now: isError=${Boolean(blocked.isError)} — ${clip(text(blocked), 160)}`);
  const rs = await cli("resume");
  say(`  loxmcp resume: ${(rs.stdout + rs.stderr).trim().split("\n")[0]}`);

  step("loxmcp audit -n 8 (every call, with decision and outcome)");
  const au = await cli("audit", "-n", "8");
  say((au.stdout + au.stderr).trimEnd());

  step("loxmcp status");
  const st = await cli("status");
  say(st.stdout.trimEnd());
  if (st.stderr.trim()) say(st.stderr.trimEnd());
  const statusJson = await cli("status", "--json");
  try {
    daemonPid = JSON.parse(statusJson.stdout).pid;
  } catch {}

  step("What next");
  say("  • Keep it running and look around: `pnpm demo --keep`, then in another terminal");
  say(`      LOXMCP_HOME=${home} pnpm exec loxmcp status   (or: logs -n 20, audit, structure show)`);
  say("  • Your own Miniserver: `pnpm exec loxmcp init`, then `pnpm exec loxmcp client-config claude`");
  if (keep) {
    say("\nDemo is running (Ctrl+C to stop). Point an MCP client at:");
    say(`  LOXMCP_HOME=${home} ${process.execPath} ${bins.shim}`);
    process.on("SIGINT", () => shutdown(0));
    process.on("SIGTERM", () => shutdown(0));
    for (const c of clients) await c.close().catch(() => {});
    clients.length = 0;
    await new Promise(() => {});
  }
  say("\nDemo finished: stopping the daemon and the simulator.");
  await shutdown(0);
} catch (err) {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  await shutdown(1);
}
