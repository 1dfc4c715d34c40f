/** The one "is this host certainly this machine" rule (plain http:// is allowed only there). */
import { describe, expect, it } from "vitest";
import { isLoopbackHost } from "../src/loopback.js";

const host = (url: string) => new URL(url).hostname;

describe("isLoopbackHost", () => {
  it("accepts localhost, 127.0.0.0/8 and ::1 (bracketed or not, any case)", () => {
    for (const h of [
      "localhost",
      "LOCALHOST",
      "127.0.0.1",
      "127.255.3.4",
      "::1",
      "[::1]",
      "0:0:0:0:0:0:0:1",
    ]) {
      expect(isLoopbackHost(h), h).toBe(true);
    }
    for (const u of ["http://localhost:8080/", "http://127.1/", "http://[::1]:9/", "http://[0:0::1]/"]) {
      expect(isLoopbackHost(host(u)), u).toBe(true);
    }
  });

  it("refuses names that only look local, other addresses and garbage", () => {
    for (const h of [
      "127.example.com",
      "127.0.0.1.nip.io",
      "evil.localhost",
      "localhost.example.com",
      "128.0.0.1",
      "10.0.0.1",
      "127.0.0.256",
      "::2",
      "::ffff:127.0.0.1",
      "0.0.0.0",
      "",
    ]) {
      expect(isLoopbackHost(h), h).toBe(false);
    }
  });
});
