/**
 * The start lock (`paths.startLock`): several callers racing to start the daemon let one of them
 * spawn while the others wait. Taken with an exclusive create of a complete file; a lock whose
 * owner is dead, or that is too old, is taken over.
 */
import { linkSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";

/** A held start lock; `release()` removes the file if it is still ours. */
export interface StartLock {
  release(): void;
}

/** True when a process with this pid exists (EPERM: it exists but belongs to someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes the start lock (O_EXCL create). A lock whose owner pid is dead, or older than
 * `staleMs`, is removed and taken over. Returns undefined when another live starter holds it.
 */
export function tryStartLock(file: string, staleMs: number): StartLock | undefined {
  const token = `${process.pid}:${Date.now()}:${Math.random()}`;
  const content = JSON.stringify({ pid: process.pid, token, at: new Date().toISOString() });
  for (let attempt = 0; attempt < 3; attempt++) {
    if (createComplete(file, content)) {
      const release = () => {
        process.off("exit", release);
        try {
          if (readFileSync(file, "utf8").includes(token)) unlinkSync(file);
        } catch {
          // already gone
        }
      };
      // A caller that exits while starting (SIGTERM → process.exit) must not leave the lock behind.
      process.once("exit", release);
      return { release };
    }
    let seen: string;
    try {
      seen = readFileSync(file, "utf8");
    } catch {
      continue; // vanished meanwhile: try again
    }
    let stale: boolean;
    try {
      const age = Date.now() - statSync(file).mtimeMs;
      const owner = (JSON.parse(seen) as { pid?: unknown }).pid;
      stale = age > staleMs || typeof owner !== "number" || !pidAlive(owner);
    } catch {
      stale = true; // corrupt (locks are written complete, see createComplete)
    }
    if (!stale) return undefined;
    try {
      // Only remove the very lock we judged stale, not one a racer just took over.
      if (readFileSync(file, "utf8") === seen) unlinkSync(file);
    } catch {
      // someone else removed it
    }
  }
  return undefined;
}

/**
 * Creates `file` with `content` only if it does not exist, atomically WITH its content (write a
 * private temp file, then hard-link it into place), so a racer never reads a half-written lock.
 */
function createComplete(file: string, content: string): boolean {
  const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
  writeFileSync(tmp, content, { mode: 0o600, flag: "wx" });
  try {
    linkSync(tmp, file);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return false;
    // No hard links on this filesystem: fall back to an exclusive create.
    try {
      writeFileSync(file, content, { mode: 0o600, flag: "wx" });
      return true;
    } catch (e2) {
      if ((e2 as NodeJS.ErrnoException).code === "EEXIST") return false;
      throw e2;
    }
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // ignore
    }
  }
}
