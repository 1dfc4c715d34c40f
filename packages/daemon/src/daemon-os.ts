/**
 * What the controller (daemon.ts) asks of the process and the operating system: the lock file a
 * failed start leaves behind, the process-wide TLS switch of --insecure-tls, and systemd's
 * readiness notification.
 */
import { execFile } from "node:child_process";
import { readFileSync, unlinkSync } from "node:fs";
import { join } from "node:path";
import { isLoopbackHost } from "@loxmcp/common";
import type { Logger } from "pino";

/**
 * The lock file is created empty (O_EXCL) and then gets our pid: when that write fails (disk
 * full, I/O error) the start fails, and the empty file is ours. Remove it, so that an exit for
 * want of space leaves no lock behind.
 */
export function removeOwnBrokenLock(stateDir: string, err: unknown): void {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code !== "ENOSPC" && code !== "EDQUOT" && code !== "EIO") return;
  const lock = join(stateDir, "daemon.lock");
  try {
    const content = readFileSync(lock, "utf8").trim();
    if (content === "" || content === String(process.pid)) unlinkSync(lock);
  } catch {
    // not there
  }
}

/**
 * --insecure-tls: certificate checks are off for this process, so every request is first
 * checked to go to a loopback host (the local simulator), and anything else is refused.
 */
export function insecureLoopbackFetch(logger: Logger): typeof fetch {
  process.env.NODE_TLS_REJECT_UNAUTHORIZED = "0";
  logger.warn(
    "--insecure-tls: TLS certificate verification is OFF (loopback simulator only); never use this with a real Miniserver",
  );
  const f: typeof fetch = (input, init) => {
    const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
    if (!isLoopbackHost(url.hostname)) {
      return Promise.reject(new Error(`--insecure-tls refuses to talk to non-loopback host ${url.hostname}`));
    }
    return fetch(input, init);
  };
  return f;
}

/** Tells systemd we are ready when NOTIFY_SOCKET is set (needs NotifyAccess=all: it runs systemd-notify). */
export function notifySystemd(logger: Logger): void {
  if (!process.env.NOTIFY_SOCKET) return;
  execFile("systemd-notify", ["--ready", `--pid=${process.pid}`], (err) => {
    if (err) logger.debug({ err: err.message }, "systemd-notify failed (readiness not signalled)");
  });
}
