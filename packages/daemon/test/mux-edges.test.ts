/** Ids come back exactly as written, on the fast path for plain integers and the full scan otherwise. */
import { describe, expect, it } from "vitest";
import { encodeAnswer, parseFrame, RAW_ID_PREFIX } from "../src/mux/jsonrpc-edges.js";

const roundTrip = (line: string): string => {
  const m = parseFrame(line) as { id: unknown };
  return encodeAnswer({ jsonrpc: "2.0", id: m.id, result: {} });
};

describe("ids as written", () => {
  it("a plain integer id as the SDK writes it is kept as the number", () => {
    expect((parseFrame('{"jsonrpc":"2.0","id":5,"method":"ping"}') as { id: unknown }).id).toBe(5);
    expect(roundTrip('{"jsonrpc":"2.0","id":-7,"method":"ping"}')).toBe(
      '{"jsonrpc":"2.0","id":-7,"result":{}}\n',
    );
  });

  it("an id written otherwise, or a later duplicate id, comes back as the client wrote it", () => {
    expect(roundTrip('{"jsonrpc":"2.0","id":1.50,"method":"ping"}')).toBe(
      '{"id":1.50,"jsonrpc":"2.0","result":{}}\n',
    );
    expect(roundTrip('{"jsonrpc":"2.0","id":5,"method":"ping","id":5.0}')).toBe(
      '{"id":5.0,"jsonrpc":"2.0","result":{}}\n',
    );
    expect(roundTrip('{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}')).toBe(
      '{"id":9007199254740993,"jsonrpc":"2.0","result":{}}\n',
    );
    // A nested "id" is not the request's: the full scan still finds the top-level one.
    const nested = parseFrame('{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"id":1e2}}') as {
      id: unknown;
    };
    expect(nested.id).toBe(3);
  });

  it("a client string imitating the marker is never spliced", () => {
    const m = parseFrame(
      `{"jsonrpc":"2.0","id":"${RAW_ID_PREFIX.replace("\u0000", "\\u0000")}1","method":"ping"}`,
    ) as {
      id: unknown;
    };
    expect(typeof m.id).toBe("object");
  });
});
