/**
 * Flies each login and refresh in a short-lived child process: `node <daemon entry> --oauth-helper`
 * (flight-helper.ts), spoken to over its IPC channel. The child opens the same SQLite file and runs
 * the same flight as the in-process one (flight.ts); the tokens it stores are what the daemon reads
 * next (the token store notices another connection's writes). What the daemon gains: the SDK's
 * auth module with its zod schemas, the HTML parser, the cookie jar, fetch and whatever a login
 * allocates never load into the long-lived process (docs/benchmarks.md measures it), and the
 * Miniserver's login pages are parsed in a process that ends right after.
 *
 * The boundary: the password crosses only when the child asks for it (over the IPC channel, never
 * argv or the environment; the daemon's password command runs in the daemon). The child's log
 * lines are written by the daemon's logger (same file, same scrubbing). Its error comes back as
 * `FlightErrorData` and is revived into the class the manager classifies. A child that dies or
 * hangs fails the flight as "retry later", never as a rejected login.
 */
import { type ChildProcess, fork } from "node:child_process";
import type { Logger } from "pino";
import type { TokenStore, TokenStoreChange } from "../../store/tokens.js";
import { VERSION } from "../../version.js";
import { HelperFailedError } from "./errors.js";
import {
  type FlightErrorData,
  type FlightRequest,
  type FlightResult,
  type FlightRunner,
  type FlightSettings,
  reviveFlightError,
} from "./flight.js";

export interface ChildFlightOptions {
  /** The daemon's entry script; run with `--oauth-helper` it becomes the helper. */
  entry: string;
  /** The database file the child opens (the daemon's). */
  dbPath: string;
  /** The daemon's store: what the child could not write is handed to it (nothing is lost). */
  store: Pick<TokenStore, "adopt">;
  user: () => string;
  password: () => Promise<string>;
  logger: Logger;
  /** A child still running after this long is killed (default 20 × httpTimeoutMs + 30 s). */
  deadlineMs?: number | undefined;
  /** The version the child must be (default: this daemon's); for tests. */
  version?: string | undefined;
}

/** What the daemon sends the child. */
export type ToChild =
  | {
      type: "run";
      /** The daemon's version: a helper of another version (an upgrade installed under a running daemon) refuses. */
      version: string;
      settings: FlightSettings;
      dbPath: string;
      user: string;
      logLevel: string;
      request: {
        serverUrl: string;
        challenge: { resourceMetadataUrl?: string; scope?: string; error?: string };
      };
    }
  | { type: "password"; ok: true; value: string }
  | { type: "password"; ok: false; message: string };

/** What the child sends the daemon. */
export type FromChild =
  | { type: "log"; level: string; obj: Record<string, unknown>; msg?: string }
  | { type: "password?" }
  | { type: "done"; result: FlightResult; unsaved: TokenStoreChange[] }
  | { type: "failed"; error: FlightErrorData; unsaved: TokenStoreChange[] };

/** The log levels a child's line may be written at. */
const LEVELS = new Set(["trace", "debug", "info", "warn", "error", "fatal"]);

/** Environment variables the child does not get: credentials it is handed only when it asks. */
const WITHHELD = /^LOXONE_PASSWORD/;

/** Flights in a child; `settings` (plain data) is what the child's flight is built from. */
export function childFlight(settings: FlightSettings, o: ChildFlightOptions): FlightRunner {
  // Every request to the authorization server is bounded by httpTimeoutMs; a login is a handful of
  // them. This only stops a child that hangs for another reason.
  const deadlineMs = o.deadlineMs ?? 20 * settings.httpTimeoutMs + 30_000;
  const plain = JSON.parse(JSON.stringify(settings)) as FlightSettings;
  return (req) => runChild(plain, o, req, deadlineMs);
}

function runChild(
  settings: FlightSettings,
  o: ChildFlightOptions,
  req: FlightRequest,
  deadlineMs: number,
): Promise<FlightResult> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!WITHHELD.test(k)) env[k] = v;
  return new Promise<FlightResult>((resolve, reject) => {
    let settled = false;
    let stderr = "";
    let child: ChildProcess;
    const finish = (err: Error | undefined, result?: FlightResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (child.connected) child.disconnect();
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      if (err) reject(err);
      else resolve(result as FlightResult);
    };
    const helperFailed = (what: string) => {
      // Node's crash output starts with a code location: the line that says what went wrong is
      // the one naming an error (or our own "loxmcpd: …"). The whole stderr goes to the log.
      const lines = stderr
        .split("\n")
        .map((l) => l.trim())
        .filter(Boolean);
      const line = lines.find((l) => /^(\w*Error\b|loxmcpd:)/.test(l)) ?? lines[0] ?? "";
      if (lines.length > 0)
        o.logger.warn(
          { component: "oauth", stderr: stderr.slice(-2000) },
          `the OAuth helper process ${what}`,
        );
      return new HelperFailedError(
        `the OAuth helper process ${what}${line ? ` (${line.slice(0, 200)})` : ""}; will retry later`,
      );
    };
    try {
      child = fork(o.entry, ["--oauth-helper"], {
        execArgv: [],
        env,
        serialization: "advanced",
        stdio: ["ignore", "ignore", "pipe", "ipc"],
      });
    } catch (err) {
      reject(new HelperFailedError(`the OAuth helper process could not start: ${(err as Error).message}`));
      return;
    }
    const timer = setTimeout(
      () => finish(helperFailed(`did not finish in ${deadlineMs / 1000} s`)),
      deadlineMs,
    );
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      if (stderr.length < 4096) stderr += d;
    });
    const send = (m: ToChild) => {
      if (!settled && child.connected) child.send(m);
    };
    child.on("message", (raw) => {
      const m = raw as FromChild;
      if ((m.type === "done" || m.type === "failed") && Array.isArray(m.unsaved) && m.unsaved.length > 0) {
        // The child could not write these (database busy or full): the daemon's store keeps them
        // in memory and writes them as soon as it can, as it does with its own.
        o.store.adopt(m.unsaved);
        o.logger.warn(
          { component: "oauth", unsaved: m.unsaved.length },
          "the OAuth helper could not write to the database; the daemon keeps its changes until it can",
        );
      }
      if (m.type === "log") {
        const log = o.logger as unknown as Record<string, (obj: unknown, msg?: string) => void>;
        const at = LEVELS.has(m.level) ? m.level : "info";
        log[at]?.call(o.logger, { ...m.obj, component: "oauth" }, m.msg);
      } else if (m.type === "password?") {
        o.password().then(
          (value) => send({ type: "password", ok: true, value }),
          (err: unknown) =>
            send({ type: "password", ok: false, message: err instanceof Error ? err.message : String(err) }),
        );
      } else if (m.type === "done") {
        finish(undefined, m.result);
      } else if (m.type === "failed") {
        finish(reviveFlightError(m.error));
      }
    });
    child.on("error", (err) => finish(helperFailed(`failed: ${err.message}`)));
    // "close": the process ended and its IPC channel and stderr are drained (no message still on its way).
    child.on("close", (code, signal) => {
      finish(helperFailed(`exited (${signal ?? `code ${code}`}) before it answered`));
    });
    const challenge: Extract<ToChild, { type: "run" }>["request"]["challenge"] = {};
    if (req.challenge.resourceMetadataUrl)
      challenge.resourceMetadataUrl = req.challenge.resourceMetadataUrl.href;
    if (req.challenge.scope) challenge.scope = req.challenge.scope;
    if (req.challenge.error) challenge.error = req.challenge.error;
    send({
      type: "run",
      version: o.version ?? VERSION,
      settings,
      dbPath: o.dbPath,
      user: o.user(),
      logLevel: o.logger.level,
      request: { serverUrl: req.serverUrl, challenge },
    });
  });
}
