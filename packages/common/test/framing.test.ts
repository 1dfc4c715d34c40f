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
    expect(first).toEqual({ lines: [], oversized: 1, invalidUtf8: 0 });
    const second = d.push(Buffer.from('abcdef\n{"x":1}\n'));
    expect(second).toEqual({ lines: ['{"x":1}'], oversized: 0, invalidUtf8: 0 });
  });

  it("round-trips encodeFrame output", () => {
    const d = new LineDecoder();
    const msg = { jsonrpc: "2.0", id: 1, method: "ping", params: { text: "a\nb" } };
    expect(d.push(Buffer.from(encodeFrame(msg))).lines.map((l) => JSON.parse(l))).toEqual([msg]);
  });

  it("with strictUtf8 drops lines that are not valid UTF-8 (also split across chunks) and keeps the rest", () => {
    const d = new LineDecoder(1024, { strictUtf8: true });
    const bad = Buffer.concat([Buffer.from('{"s":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}\n')]);
    expect(d.push(Buffer.concat([bad, Buffer.from('{"ok":"é€😀"}\n')]))).toEqual({
      lines: ['{"ok":"é€😀"}'],
      oversized: 0,
      invalidUtf8: 1,
    });
    // A valid multi-byte character split over two chunks is fine; a truncated one is not.
    const euro = Buffer.from("€");
    expect(d.push(Buffer.concat([Buffer.from('{"a":"'), euro.subarray(0, 1)])).lines).toEqual([]);
    expect(d.push(Buffer.concat([euro.subarray(1), Buffer.from('"}\n')]))).toEqual({
      lines: ['{"a":"€"}'],
      oversized: 0,
      invalidUtf8: 0,
    });
    expect(
      d.push(Buffer.concat([Buffer.from('{"a":"'), euro.subarray(0, 2), Buffer.from('"}\n')])),
    ).toMatchObject({ lines: [], invalidUtf8: 1 });
    // Overlong encodings and UTF-16 surrogates encoded as UTF-8 are invalid too.
    expect(d.push(Buffer.from([0xc0, 0xaf, 0x0a])).invalidUtf8).toBe(1);
    expect(d.push(Buffer.from([0xed, 0xa0, 0x80, 0x0a])).invalidUtf8).toBe(1);
  });

  it("without strictUtf8 keeps decoding bad bytes as U+FFFD (other callers unchanged)", () => {
    const d = new LineDecoder(1024);
    const r = d.push(Buffer.from([0x61, 0xff, 0x0a]));
    expect(r).toEqual({ lines: ["a\ufffd"], oversized: 0, invalidUtf8: 0 });
  });

  it("a valid line comes out byte for byte (a relay forwarding it never grows it)", () => {
    const d = new LineDecoder(1024, { strictUtf8: true });
    const raw = Buffer.from('\ufeff{"x":"\u2028 ü 𝄞"}');
    const [line] = d.push(Buffer.concat([raw, Buffer.from("\n")])).lines;
    expect(Buffer.from(line ?? "")).toEqual(raw);
  });
});
