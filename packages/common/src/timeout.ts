/**
 * A promise raced against a timer that is always cleared (and never keeps the process alive):
 * after `ms`, `onTimeout` decides — return a value to settle with it, or throw to reject.
 */
export async function withTimeout<T, U = never>(
  p: Promise<T>,
  ms: number,
  onTimeout: () => U,
): Promise<T | U> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<U>((resolve, reject) => {
    timer = setTimeout(
      () => {
        try {
          resolve(onTimeout());
        } catch (err) {
          reject(err);
        }
      },
      Math.max(0, ms),
    );
    timer.unref();
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
