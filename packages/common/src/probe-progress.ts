/** Lines the daemon's `--probe` prints on stderr to show progress (read by `loxmcp login-check`). */
export const PROGRESS_PREFIX = "loxmcpd-progress: ";
