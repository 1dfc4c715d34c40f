/** Waiting for a condition with a deadline (tests never sleep for timing). */

export interface WaitOptions {
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /** Poll interval (default 25 ms). */
  intervalMs?: number;
  /** What we are waiting for, used in the error message. */
  what?: string;
}

export class WaitTimeoutError extends Error {
  readonly code = "WAIT_TIMEOUT";
  constructor(what: string, timeoutMs: number, lastError?: unknown) {
    const last = lastError instanceof Error ? ` (last error: ${lastError.message})` : "";
    super(`timed out after ${timeoutMs} ms waiting for ${what}${last}`);
    this.name = "WaitTimeoutError";
  }
}

/**
 * Calls `fn` until it returns a truthy value (which is returned) or the deadline passes.
 * A throwing `fn` counts as "not yet"; its last error is named in the timeout error.
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  opts: WaitOptions = {},
): Promise<Exclude<T, false | null | undefined | 0 | "">> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const intervalMs = opts.intervalMs ?? 25;
  const what = opts.what ?? "condition";
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as Exclude<T, false | null | undefined | 0 | "">;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) throw new WaitTimeoutError(what, timeoutMs, lastError);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Resolves with the promise's value, or rejects with a clear error after `timeoutMs`. */
export async function withDeadline<T>(p: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new WaitTimeoutError(what, timeoutMs)), timeoutMs);
      }),
    ]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}
