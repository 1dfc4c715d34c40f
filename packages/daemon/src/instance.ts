/**
 * Single instance per user: a pid lock file (`<state>/daemon.lock`, created with O_EXCL) plus
 * a probe of the socket. A second daemon that finds a live one answering on the socket says
 * so and exits 0; a lock held by a dead pid, and a socket file nobody listens on, are stale and
 * removed.
 */
import { closeSync, existsSync, lstatSync, openSync, readFileSync, unlinkSync, writeSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { encodeFrame, LineDecoder, type LoxmcpPaths, pidAlive } from "@loxmcp/common";

export class InstanceError extends Error {
  readonly code = "INSTANCE_CONFLICT";
  constructor(message: string) {
    super(message);
    this.name = "InstanceError";
  }
}

export type SocketProbe =
  | { kind: "live"; pid?: number }
  | { kind: "stale" }
  | { kind: "absent" }
  | { kind: "not-socket" };

/** Is something answering on `socketPath`? Asks `loxmcp/status` for its pid. */
export function probeSocket(socketPath: string, timeoutMs = 2_000): Promise<SocketProbe> {
  if (!existsSync(socketPath)) return Promise.resolve({ kind: "absent" });
  try {
    if (!lstatSync(socketPath).isSocket()) return Promise.resolve({ kind: "not-socket" });
  } catch {
    return Promise.resolve({ kind: "absent" });
  }
  return new Promise((resolve) => {
    const s = connect(socketPath);
    const decoder = new LineDecoder();
    let connected = false;
    const done = (r: SocketProbe) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done(connected ? { kind: "live" } : { kind: "stale" }), timeoutMs);
    s.once("connect", () => {
      connected = true;
      s.write(encodeFrame({ jsonrpc: "2.0", id: "probe", method: "loxmcp/status", params: {} }));
    });
    s.on("data", (chunk: Buffer) => {
      for (const line of decoder.push(chunk).lines) {
        try {
          const m = JSON.parse(line) as { id?: unknown; result?: { pid?: unknown } };
          if (m.id === "probe") {
            const pid = m.result?.pid;
            done(typeof pid === "number" ? { kind: "live", pid } : { kind: "live" });
          }
        } catch {
          // not JSON: keep waiting
        }
      }
    });
    s.on("error", (err: NodeJS.ErrnoException) => {
      if (connected) done({ kind: "live" });
      else done(err.code === "ENOENT" ? { kind: "absent" } : { kind: "stale" });
    });
    s.on("close", () => {
      if (connected) done({ kind: "live" });
    });
  });
}

/** On Linux, tells whether a live pid is a loxmcpd (pid reuse after a reboot). Elsewhere: assume yes. */
function looksLikeDaemon(pid: number): boolean {
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return cmd.includes("loxmcpd") || cmd.includes("daemon/dist/main") || cmd.includes("vitest");
  } catch {
    return true;
  }
}

export type InstanceResult =
  | { kind: "acquired"; lockFile: string; release(): void }
  | { kind: "running"; pid?: number };

/**
 * Takes the single-instance lock. Returns `running` when another daemon answers on the
 * socket, `acquired` otherwise (a stale socket file is removed). Throws `InstanceError` when a
 * live daemon holds the lock but does not answer.
 */
export async function acquireInstance(paths: LoxmcpPaths, waitForOtherMs = 5_000): Promise<InstanceResult> {
  const first = await probeSocket(paths.socket);
  if (first.kind === "live")
    return first.pid === undefined ? { kind: "running" } : { kind: "running", pid: first.pid };
  if (first.kind === "not-socket") {
    throw new InstanceError(
      `${paths.socket} exists and is not a socket; move it away and start loxmcpd again`,
    );
  }

  const lockFile = join(paths.state, "daemon.lock");
  for (let attempt = 0; attempt < 5; attempt++) {
    let fd: number;
    try {
      fd = openSync(lockFile, "wx", 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const holder = readLockPid(lockFile);
      if (holder !== undefined && holder !== process.pid && pidAlive(holder) && looksLikeDaemon(holder)) {
        // A live daemon that is still starting: wait for it to answer.
        const deadline = Date.now() + waitForOtherMs;
        while (Date.now() < deadline) {
          const p = await probeSocket(paths.socket, 500);
          if (p.kind === "live") return { kind: "running", pid: p.pid ?? holder };
          if (!pidAlive(holder)) break;
          await new Promise((r) => setTimeout(r, 100));
        }
        if (pidAlive(holder)) {
          throw new InstanceError(
            `another loxmcpd (pid ${holder}) holds ${lockFile} but does not answer on ${paths.socket}; stop it (kill ${holder}) and start again`,
          );
        }
      }
      // Stale lock (dead pid, unreadable): remove and retry.
      try {
        unlinkSync(lockFile);
      } catch {
        // someone else removed it
      }
      continue;
    }
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);

    // We hold the lock: a socket file still there is stale (or a live daemon without the lock).
    const again = await probeSocket(paths.socket);
    if (again.kind === "live") {
      releaseLock(lockFile);
      return again.pid === undefined ? { kind: "running" } : { kind: "running", pid: again.pid };
    }
    if (again.kind === "stale") {
      try {
        unlinkSync(paths.socket);
      } catch {
        // gone already
      }
    }
    return { kind: "acquired", lockFile, release: () => releaseLock(lockFile) };
  }
  throw new InstanceError(`could not take ${lockFile}; remove it if no loxmcpd is running`);
}

function readLockPid(lockFile: string): number | undefined {
  try {
    const n = Number.parseInt(readFileSync(lockFile, "utf8").trim(), 10);
    return Number.isInteger(n) && n > 0 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** Removes the lock if it is still ours. */
function releaseLock(lockFile: string): void {
  if (readLockPid(lockFile) === process.pid) {
    try {
      unlinkSync(lockFile);
    } catch {
      // gone already
    }
  }
}
