import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { makeHome, type TempHome } from "../../../test-support/home.js";
import { createLogger, SecretRegistry, scrub } from "../src/log.js";

let h: TempHome | undefined;
afterEach(() => {
  h?.cleanup();
  h = undefined;
});

describe("logger", () => {
  it("writes JSON to a 0600 file in a 0700 dir with secrets redacted and scrubbed", () => {
    h = makeHome();
    const dir = join(h.home, "log");
    const file = join(dir, "daemon.log");
    const registry = new SecretRegistry();
    registry.add("SENTINEL-pass-123");
    registry.add("tok_live_abcdef");
    const { logger, close } = createLogger({ level: "debug", file, logDir: dir, registry });
    logger.info(
      {
        password: "p1",
        headers: { authorization: "Bearer abc.def", cookie: "sid=1", "set-cookie": ["sid=2"] },
        tokens: { access_token: "a1", refresh_token: "r1", code: "c1" },
        body: { code_verifier: "v1" },
        err: Object.assign(new Error("login failed for SENTINEL-pass-123"), { code: "ECONNREFUSED" }),
      },
      "upstream said tok_live_abcdef and https://x/cb?code=authcode1&state=s",
    );
    logger.debug("Authorization: Bearer eyJhbGciOi.xyz used");
    close();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, "utf8");
    for (const secret of [
      "p1",
      "abc.def",
      "sid=1",
      "sid=2",
      "a1",
      "r1",
      "c1",
      "v1",
      "SENTINEL-pass-123",
      "tok_live_abcdef",
      "authcode1",
      "eyJhbGciOi",
    ]) {
      expect(text).not.toContain(`"${secret}"`);
      if (secret.length > 3) expect(text).not.toContain(secret);
    }
    const first = JSON.parse(text.split("\n")[0]!);
    expect(first.password).toBe("[redacted]");
    expect(first.err.code).toBe("ECONNREFUSED");
    expect(first.msg).toContain("state=s");
  });

  it("scrub replaces raw, JSON-escaped and URL-encoded forms", () => {
    const s = 'p"a&ss/word';
    const text = `raw ${s} json ${JSON.stringify(s)} url ${encodeURIComponent(s)}`;
    const out = scrub(text, [s]);
    expect(out).not.toContain("a&ss");
    expect(out).not.toContain("a%26ss");
    expect(out.match(/\[redacted\]/g)?.length).toBe(3);
  });
});
