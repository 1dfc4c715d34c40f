import { parseArgs } from "node:util";
import { startSimulator } from "./simulator.js";
import type { SimulatorOptions } from "./types.js";

const USAGE = `usage: loxmcp-sim [--port N] [--serial S] [--user U] [--password P] [--access-ttl s]
                  [--refresh-ttl s] [--relays N] [--rate-limit N] [--session-ttl s]`;

function die(message: string): never {
  process.stderr.write(`loxmcp-sim: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || v.trim() === "")
    die(`--${name} needs a non-negative number, got "${v}"`);
  return n;
}

async function main(): Promise<void> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        port: { type: "string" },
        serial: { type: "string" },
        user: { type: "string" },
        password: { type: "string" },
        "access-ttl": { type: "string" },
        "refresh-ttl": { type: "string" },
        relays: { type: "string" },
        "rate-limit": { type: "string" },
        "session-ttl": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      allowPositionals: false,
      strict: true,
    }));
  } catch (err) {
    die(err instanceof Error ? err.message : String(err));
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const s = (k: string) => (typeof values[k] === "string" ? (values[k] as string) : undefined);
  const opts: SimulatorOptions = {};
  const set = <K extends keyof SimulatorOptions>(k: K, v: SimulatorOptions[K] | undefined) => {
    if (v !== undefined) opts[k] = v;
  };
  set("port", num("port", s("port")));
  set("serial", s("serial"));
  set("user", s("user"));
  set("password", s("password"));
  set("accessTtl", num("access-ttl", s("access-ttl")));
  set("refreshTtl", num("refresh-ttl", s("refresh-ttl")));
  set("relays", num("relays", s("relays")));
  set("connectRateLimit", num("rate-limit", s("rate-limit")));
  set("sessionTtl", num("session-ttl", s("session-ttl")));

  let sim: Awaited<ReturnType<typeof startSimulator>>;
  try {
    sim = await startSimulator(opts);
  } catch (err) {
    die(err instanceof Error ? err.message : String(err));
  }
  const { connectUrl, serial, user, password, adminUrl, relayUrls } = sim;
  process.stdout.write(`${JSON.stringify({ connectUrl, serial, user, password, adminUrl, relayUrls })}\n`);

  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    sim.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

await main();
