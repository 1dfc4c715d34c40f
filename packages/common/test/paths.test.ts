import { mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ensurePrivateDir, resolvePaths } from "../src/paths.js";

describe("resolvePaths", () => {
  it("puts everything under LOXMCP_HOME when set", () => {
    const p = resolvePaths({ LOXMCP_HOME: "/x/home" });
    expect(p.socket).toBe("/x/home/run/daemon.sock");
    expect(p.db).toBe("/x/home/state/loxmcp.db");
    expect(p.logFile).toBe("/x/home/log/daemon.log");
  });

  it("uses $XDG_RUNTIME_DIR/loxmcp for the socket when that dir is ours", () => {
    const xdg = mkdtempSync(join(tmpdir(), "xdg-"));
    expect(resolvePaths({ XDG_RUNTIME_DIR: xdg }).socket).toBe(join(xdg, "loxmcp", "daemon.sock"));
    expect(resolvePaths({ XDG_RUNTIME_DIR: join(xdg, "missing") }).socket).not.toContain("missing");
  });

  it("creates private dirs 0700 and tightens loose ones", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "priv-")), "a", "b");
    ensurePrivateDir(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });
});
