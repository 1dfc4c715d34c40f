import { describe, expect, it } from "vitest";
import { encodeFrame, LineDecoder } from "../src/framing.js";

describe("LineDecoder", () => {
  it("splits lines across chunk boundaries and ignores blank lines", () => {
    const d = new LineDecoder(1024);
    expect(d.push(Buffer.from('{"a":1}\n{"b"')).lines).toEqual(['{"a":1}']);
    expect(d.push(Buffer.from(":2}\r\n\n")).lines).toEqual(['{"b":2}']);
    expect(d.pending).toBe(0);
  });

  it("reports an oversized line once and resumes after its newline", () => {
    const d = new LineDecoder(8);
    const first = d.push(Buffer.from("0123456789"));
    expect(first).toEqual({ lines: [], oversized: 1 });
    const second = d.push(Buffer.from('abcdef\n{"x":1}\n'));
    expect(second).toEqual({ lines: ['{"x":1}'], oversized: 0 });
  });

  it("round-trips encodeFrame output", () => {
    const d = new LineDecoder();
    const msg = { jsonrpc: "2.0", id: 1, method: "ping", params: { text: "a\nb" } };
    expect(d.push(Buffer.from(encodeFrame(msg))).lines.map((l) => JSON.parse(l))).toEqual([msg]);
  });
});
