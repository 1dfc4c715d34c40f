/**
 * Where the CLI finds the shim, the daemon and the templates: a checkout (packages/…) or the npm
 * package `loxmcp` (bundled into <package>/dist), and there the commands npm linked on PATH.
 */
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { findOnPath } from "@loxmcp/common";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  daemonBin,
  detectInstallation,
  INSTALLATION,
  linkedBin,
  shimBin,
  templatePath,
} from "../src/locate.js";
import { REPO_ROOT } from "./helpers.js";

let tmp: string;
beforeEach(() => {
  tmp = realpathSync(mkdtempSync("/tmp/lxl-"));
});
afterEach(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** A package laid out as scripts/pack.mjs does, under `dir`. */
function fakePackage(dir: string): string {
  mkdirSync(join(dir, "bin"), { recursive: true });
  mkdirSync(join(dir, "dist"), { recursive: true });
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "loxmcp", version: "9.9.9" }));
  for (const f of ["loxmcp.js", "loxmcpd.js", "loxmcp-shim.cjs"]) writeFileSync(join(dir, "bin", f), "");
  return dir;
}

describe("the installation this CLI runs from", () => {
  it("in a checkout: the workspace, rooted at the repository", () => {
    expect(INSTALLATION).toEqual({ kind: "workspace", root: REPO_ROOT });
    expect(detectInstallation(join(REPO_ROOT, "packages", "cli", "dist"))).toEqual(INSTALLATION);
    expect(shimBin({})).toBe(join(REPO_ROOT, "packages/shim/bin/loxmcp-shim.js"));
    expect(daemonBin({})).toBe(join(REPO_ROOT, "packages/daemon/bin/loxmcpd.js"));
    expect(templatePath({}, "systemd/loxmcpd.service.in")).toBe(
      join(REPO_ROOT, "systemd/loxmcpd.service.in"),
    );
  });

  it("in the package: its directory (dist/ holds the bundle), whatever its parents are", () => {
    const pkg = fakePackage(join(tmp, "lib", "node_modules", "loxmcp"));
    expect(detectInstallation(join(pkg, "dist"))).toEqual({ kind: "package", root: pkg });
    // another package.json above dist/ is not ours: a checkout
    writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "@loxmcp/cli" }));
    expect(detectInstallation(join(pkg, "dist")).kind).toBe("workspace");
  });
});

describe("linkedBin: the command npm put on PATH for a file of the package", () => {
  it("global install: <prefix>/bin/<name> linking to <prefix>/lib/node_modules/loxmcp/bin/…", () => {
    const pkg = fakePackage(join(tmp, "lib", "node_modules", "loxmcp"));
    mkdirSync(join(tmp, "bin"));
    symlinkSync("../lib/node_modules/loxmcp/bin/loxmcpd.js", join(tmp, "bin", "loxmcpd"));
    expect(linkedBin("loxmcpd", join(pkg, "bin", "loxmcpd.js"), { PATH: "" }, pkg)).toBe(
      join(tmp, "bin", "loxmcpd"),
    );
    // no link for the shim: none
    expect(linkedBin("loxmcp-shim", join(pkg, "bin", "loxmcp-shim.cjs"), { PATH: "" }, pkg)).toBeUndefined();
  });

  it("local install: node_modules/.bin/<name>", () => {
    const pkg = fakePackage(join(tmp, "proj", "node_modules", "loxmcp"));
    mkdirSync(join(tmp, "proj", "node_modules", ".bin"));
    symlinkSync("../loxmcp/bin/loxmcp-shim.cjs", join(tmp, "proj", "node_modules", ".bin", "loxmcp-shim"));
    expect(linkedBin("loxmcp-shim", join(pkg, "bin", "loxmcp-shim.cjs"), { PATH: "" }, pkg)).toBe(
      join(tmp, "proj", "node_modules", ".bin", "loxmcp-shim"),
    );
  });

  it("elsewhere: the first one on PATH, only when it links to this very file", () => {
    const pkg = fakePackage(join(tmp, "opt", "loxmcp"));
    const other = fakePackage(join(tmp, "old", "loxmcp"));
    mkdirSync(join(tmp, "a"));
    mkdirSync(join(tmp, "b"));
    symlinkSync(join(other, "bin", "loxmcpd.js"), join(tmp, "a", "loxmcpd"));
    const env = { PATH: [join(tmp, "a"), join(tmp, "b")].join(":") };
    // the first loxmcpd on PATH belongs to another installation
    expect(linkedBin("loxmcpd", join(pkg, "bin", "loxmcpd.js"), env, pkg)).toBeUndefined();
    rmSync(join(tmp, "a", "loxmcpd"));
    symlinkSync(join(pkg, "bin", "loxmcpd.js"), join(tmp, "a", "loxmcpd"));
    expect(linkedBin("loxmcpd", join(pkg, "bin", "loxmcpd.js"), env, pkg)).toBe(join(tmp, "a", "loxmcpd"));
  });
});

describe("findOnPath", () => {
  it("returns the first file named so in an absolute PATH entry", () => {
    mkdirSync(join(tmp, "x"));
    mkdirSync(join(tmp, "y", "loxmcpd"), { recursive: true }); // a directory does not count
    writeFileSync(join(tmp, "x", "loxmcpd"), "#!/bin/sh\n");
    chmodSync(join(tmp, "x", "loxmcpd"), 0o755);
    expect(findOnPath("loxmcpd", { PATH: ["relative", join(tmp, "y"), join(tmp, "x")].join(":") })).toBe(
      join(tmp, "x", "loxmcpd"),
    );
    expect(findOnPath("loxmcpd", { PATH: join(tmp, "y") })).toBeUndefined();
    expect(findOnPath("loxmcpd", {})).toBeUndefined();
  });
});
