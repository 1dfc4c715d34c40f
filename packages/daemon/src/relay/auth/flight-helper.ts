/**
 * The child side of flight-child.ts: `loxmcpd --oauth-helper`, started by the daemon with an IPC
 * channel. It takes one "run" message, opens the daemon's database (no migration, no repair: the
 * daemon owns the file), flies one login or refresh (flight.ts), reports the result or the error
 * and exits. Its log lines go to the daemon; the password is asked from the daemon when the login
 * form needs it. Started any other way (no IPC channel) it refuses and exits 2.
 */
import type { Logger } from "pino";
import { type Database, openOwnedDatabase } from "../../store/db.js";
import { TokenStore } from "../../store/tokens.js";
import { VERSION } from "../../version.js";
import { HelperFailedError } from "./errors.js";
import { flightErrorData, LocalFlight } from "./flight.js";
import type { FromChild, ToChild } from "./flight-child.js";

const LEVELS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

function send(m: FromChild): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected || !process.send) return resolve();
    process.send(m, undefined, {}, () => resolve());
  });
}

/** Log fields as plain JSON (errors as name, message and code): what the daemon's logger writes. */
function plain(obj: unknown): Record<string, unknown> {
  try {
    return JSON.parse(
      JSON.stringify(obj ?? {}, (_k, v: unknown) =>
        v instanceof Error
          ? {
              type: v.name,
              message: v.message,
              ...((v as { code?: unknown }).code ? { code: (v as { code?: unknown }).code } : {}),
            }
          : v,
      ),
    ) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/** A logger with pino's call shapes that hands every line to the daemon. */
function ipcLogger(minLevel: number, bindings: Record<string, unknown> = {}): Logger {
  const at =
    (level: string) =>
    (a: unknown, b?: unknown): void => {
      if ((LEVELS[level] ?? 30) < minLevel) return;
      const [obj, msg] = typeof a === "string" ? [{}, a] : [a, b];
      const line: FromChild = { type: "log", level, obj: { ...bindings, ...plain(obj) } };
      if (typeof msg === "string") line.msg = msg;
      void send(line);
    };
  const logger = {
    level: Object.keys(LEVELS).find((k) => LEVELS[k] === minLevel) ?? "info",
    trace: at("trace"),
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    fatal: at("fatal"),
    isLevelEnabled: (level: string) => (LEVELS[level] ?? 30) >= minLevel,
    child: (more: Record<string, unknown>) => ipcLogger(minLevel, { ...bindings, ...more }),
  };
  return logger as unknown as Logger;
}

export async function oauthHelperMain(): Promise<never> {
  if (!process.send) {
    process.stderr.write("loxmcpd --oauth-helper is started by loxmcpd itself, not by hand\n");
    process.exit(2);
  }
  // The daemon went away: nothing to report to.
  process.on("disconnect", () => process.exit(1));
  const run = await new Promise<Extract<ToChild, { type: "run" }>>((resolve) => {
    process.once("message", (m) => resolve(m as Extract<ToChild, { type: "run" }>));
  });
  let waitingPassword: { resolve(v: string): void; reject(e: Error): void } | undefined;
  process.on("message", (raw) => {
    const m = raw as ToChild;
    if (m.type !== "password" || !waitingPassword) return;
    const w = waitingPassword;
    waitingPassword = undefined;
    if (m.ok) w.resolve(m.value);
    else w.reject(new Error(m.message));
  });
  let db: Database | undefined;
  let store: TokenStore | undefined;
  let outcome: FromChild;
  try {
    if (run.version !== VERSION) {
      // loxmcp was upgraded (or downgraded) under a running daemon: this script is another version
      // than the daemon that started it and may not fit its database.
      throw new HelperFailedError(
        `the installed loxmcpd is version ${VERSION}, the running daemon ${run.version}: run \`loxmcp restart\` to log in with the installed one`,
      );
    }
    try {
      // A short wait for the daemon's lock: what cannot be written goes back to the daemon anyway.
      db = openOwnedDatabase(run.dbPath, 1000);
    } catch (err) {
      throw new HelperFailedError(
        `the OAuth helper could not open the database ${run.dbPath}: ${(err as Error).message}; will retry later`,
      );
    }
    store = new TokenStore(db);
    const flight = new LocalFlight({
      ...run.settings,
      store,
      user: () => run.user,
      password: () =>
        new Promise<string>((resolve, reject) => {
          waitingPassword = { resolve, reject };
          void send({ type: "password?" });
        }),
      logger: ipcLogger(LEVELS[run.logLevel] ?? 30),
    });
    const challenge: { resourceMetadataUrl?: URL; scope?: string; error?: string } = {};
    const c = run.request.challenge;
    if (c.resourceMetadataUrl) challenge.resourceMetadataUrl = new URL(c.resourceMetadataUrl);
    if (c.scope) challenge.scope = c.scope;
    if (c.error) challenge.error = c.error;
    const result = await flight.run({ serverUrl: run.request.serverUrl, challenge });
    outcome = { type: "done", result, unsaved: store.takeUnsaved() };
  } catch (err) {
    outcome = { type: "failed", error: flightErrorData(err), unsaved: store?.takeUnsaved() ?? [] };
  } finally {
    db?.close();
  }
  await send(outcome);
  process.exit(0);
}
