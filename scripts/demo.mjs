#!/usr/bin/env node
// `pnpm demo`: the main job on the embedded simulator.
// Starts a Loxone-like simulator, the loxmcp daemon against it, then two MCP clients through the
// real shim (as Claude / Cursor would), shows one shared login, a read, a comfort write, a
// security write stopped by the safety policy, and `loxmcp status`. `--keep` leaves it running.
import { execFile, spawn } from "node:child_process";
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

/** The CLI with `input` on its standard input (e.g. `--pin-stdin`). */
function cliWithInput(input, ...args) {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [bins.cli, ...args],
      { env, encoding: "utf8", timeout: 30_000 },
      (err, stdout, stderr) =>
        resolve({ status: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
    child.stdin.end(input);
  });
}

/**
 * The CLI on a pseudo-terminal (util-linux `script`), answering its prompts as a person would:
 * `answers` are [prompt substring, what to type]. Resolves with what the terminal showed.
 */
function cliAtTerminal(answers, ...args) {
  const q = (w) => `'${w.replace(/'/g, `'\\''`)}'`;
  return new Promise((resolve) => {
    const child = spawn(
      "script",
      ["-qec", [process.execPath, bins.cli, ...args].map(q).join(" "), "/dev/null"],
      {
        env,
        stdio: ["pipe", "pipe", "pipe"],
      },
    );
    let screen = "";
    let from = 0;
    const typeNext = () => {
      const next = answers[0];
      if (!next) return;
      const at = screen.indexOf(next[0], from);
      if (at < 0) return;
      from = at + next[0].length;
      answers.shift();
      child.stdin.write(`${next[1]}\r`);
      typeNext();
    };
    child.stdout.on("data", (c) => {
      screen += c.toString("utf8");
      typeNext();
    });
    child.on("error", () => resolve({ status: 127, screen: "" }));
    child.on("close", (status) => resolve({ status, screen }));
    setTimeout(() => child.kill("SIGKILL"), 30_000).unref();
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

  const PIN = "482917";
  step("The person sets an approval PIN at a terminal: loxmcp pin set");
  say(
    "  (the demo types it on a pseudo-terminal; the PIN is never echoed and is stored only as a scrypt hash)",
  );
  const piped = await cliWithInput(`${PIN}\n${PIN}\n`, "pin", "set");
  say(`  piped into it, as an agent's shell would: ${(piped.stderr || piped.stdout).trim()}`);
  const pinSet = await cliAtTerminal(
    [
      ["New approval PIN", PIN],
      ["again", PIN],
    ],
    "pin",
    "set",
  );
  const pinOk = pinSet.status === 0;
  say(
    `  at the terminal: ${pinOk ? "approval PIN set" : `not set (${pinSet.screen.trim() || "no `script` here"})`}`,
  );

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
    const code = /code ([A-Z0-9]{6}) is waiting/.exec(text(held))?.[1];

    step("The AI repeats the call on its own: still held (it cannot approve itself)");
    const again = await claude.callTool(call);
    say(
      `  isError=${Boolean(again.isError)}; executions on the Miniserver: ${sim.stats().executions.filter((e) => e.tool === command.name && e.arguments?.uuid === door.uuid).length}`,
    );

    if (code) {
      step(`An over-helpful agent runs \`loxmcp approve ${code}\` in its own shell: refused`);
      const agent = await cli("approve", code);
      say(`  exit ${agent.status}: ${(agent.stderr || agent.stdout).trim().split("\n").at(-1)}`);
      const wrong = await cliWithInput("000000\n", "approve", code, "--pin-stdin");
      say(`  guessing a PIN: ${(wrong.stderr || wrong.stdout).trim().split("\n").at(-1)}`);

      step(`The person approves it: loxmcp approve ${code} (it shows what, then asks for the PIN)`);
      const ap = pinOk
        ? await cliWithInput(`${PIN}\n`, "approve", code, "--pin-stdin")
        : await cli("approve", code);
      say((ap.stderr + ap.stdout).trimEnd());
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
  const rs = pinOk ? await cliWithInput(`${PIN}\n`, "resume", "--pin-stdin") : await cli("resume");
  say(`  loxmcp resume (with the PIN): ${(rs.stdout.trim() || rs.stderr.trim()).split("\n").at(-1)}`);

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
