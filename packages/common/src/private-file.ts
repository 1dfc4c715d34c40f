/**
 * Opening a private file to append to (the daemon log) without trusting what is at its path:
 * a symbolic link is not followed, and the file must be a regular file of ours. Otherwise a
 * link planted at the log path would have the daemon chmod and grow whatever it points to.
 */
import { closeSync, constants, fchmodSync, fstatSync, openSync } from "node:fs";

export class UnsafeFileError extends Error {
  readonly code = "UNSAFE_FILE";
  constructor(
    readonly path: string,
    problem: string,
  ) {
    super(
      `refusing the log file ${path}: it ${problem}; remove it (the daemon creates a new one) and start again`,
    );
    this.name = "UnsafeFileError";
  }
}

/**
 * Opens `file` write-only for appending, creating it 0600; never follows a symbolic link
 * (O_NOFOLLOW) nor blocks on a FIFO (O_NONBLOCK, a no-op for regular files). Throws
 * UnsafeFileError when it is a link, not a regular file, or not owned by us; else returns the
 * fd with mode 0600.
 */
export function openPrivateAppend(file: string): number {
  const flags =
    constants.O_WRONLY |
    constants.O_APPEND |
    constants.O_CREAT |
    (constants.O_NOFOLLOW ?? 0) |
    (constants.O_NONBLOCK ?? 0);
  let fd: number;
  try {
    fd = openSync(file, flags, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // Linux and macOS say ELOOP for O_NOFOLLOW on a link, FreeBSD EMLINK; ENXIO: a FIFO nobody reads.
    // EISDIR: a directory.
    if (code === "ELOOP" || code === "EMLINK") throw new UnsafeFileError(file, "is a symbolic link");
    if (code === "ENXIO" || code === "EISDIR") throw new UnsafeFileError(file, "is not a regular file");
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UnsafeFileError(file, "is not a regular file");
    const uid = typeof process.getuid === "function" ? process.getuid() : undefined;
    if (uid !== undefined && st.uid !== uid) {
      throw new UnsafeFileError(file, `is owned by uid ${st.uid}, not by us (uid ${uid})`);
    }
    if ((st.mode & 0o777) !== 0o600) fchmodSync(fd, 0o600);
    return fd;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}
