/** The one .env parser (daemon config and CLI): quotes, comments, `export ` prefixes. */
import { describe, expect, it } from "vitest";
import { parseDotenv } from "../src/dotenv.js";

describe("parseDotenv", () => {
  it("reads quotes, comments and export prefixes", () => {
    expect(
      parseDotenv("A=1\n# c\nexport B=\"two words\"\n  export C='x=y'\n\nD=4 # trailing\r\nE=`a'b\"c`\n"),
    ).toEqual({ A: "1", B: "two words", C: "x=y", D: "4", E: "a'b\"c" });
  });
});
