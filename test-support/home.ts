/** A short private temp LOXMCP_HOME per test (Unix socket paths must stay under ~100 bytes). */
import { mkdtempSync, rmSync } from "node:fs";

export interface TempHome {
  /** The directory to use as LOXMCP_HOME, e.g. /tmp/lx-AbC123. */
  home: string;
  /** Removes the directory and everything under it. */
  cleanup(): void;
}

export function makeHome(prefix = "/tmp/lx-"): TempHome {
  const home = mkdtempSync(prefix);
  return {
    home,
    cleanup() {
      // LOXMCP_TEST_KEEP_HOME=1 keeps it (daemon log, database) to read after a failure.
      if (process.env.LOXMCP_TEST_KEEP_HOME === "1") return;
      rmSync(home, { recursive: true, force: true });
    },
  };
}
