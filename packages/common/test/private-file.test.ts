import { execFileSync } from "node:child_process";
import {
  closeSync,
  mkdtempSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openPrivateAppend, UnsafeFileError } from "../src/private-file.js";

describe("openPrivateAppend", () => {
  const tmp = () => mkdtempSync(join(tmpdir(), "pf-"));

  it("creates the file 0600 and appends; tightens a loose one of ours", () => {
    const dir = tmp();
    const file = join(dir, "daemon.log");
    let fd = openPrivateAppend(file);
    writeSync(fd, "a\n");
    closeSync(fd);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    writeFileSync(file, "a\n", { mode: 0o644 });
    execFileSync("chmod", ["644", file]);
    fd = openPrivateAppend(file);
    writeSync(fd, "b\n");
    closeSync(fd);
    expect(readFileSync(file, "utf8")).toBe("a\nb\n");
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it("refuses a symbolic link without touching its target", () => {
    const dir = tmp();
    const target = join(dir, "precious");
    writeFileSync(target, "keep me\n", { mode: 0o644 });
    execFileSync("chmod", ["644", target]);
    const link = join(dir, "daemon.log");
    symlinkSync(target, link);
    expect(() => openPrivateAppend(link)).toThrow(UnsafeFileError);
    expect(() => openPrivateAppend(link)).toThrow(
      `refusing the log file ${link}: it is a symbolic link; remove it (the daemon creates a new one) and start again`,
    );
    expect(readFileSync(target, "utf8")).toBe("keep me\n");
    expect(statSync(target).mode & 0o777).toBe(0o644);
  });

  it("refuses a FIFO (without blocking) and a directory", () => {
    const dir = tmp();
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    expect(() => openPrivateAppend(fifo)).toThrow("is not a regular file");
    expect(() => openPrivateAppend(dir)).toThrow("is not a regular file");
  });
});
