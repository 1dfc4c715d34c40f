/** Newline-delimited JSON framing for the daemon socket (and the shim's stdio). */
import { isUtf8 } from "node:buffer";

/** Largest frame accepted on the socket or stdin: 4 MiB. */
export const MAX_FRAME_BYTES = 4 * 1024 * 1024;

export class FrameTooLargeError extends Error {
  readonly code = "FRAME_TOO_LARGE";
  constructor(readonly size: number) {
    super(
      `frame of more than ${MAX_FRAME_BYTES} bytes (saw ${size}) refused; split the request or send less data`,
    );
    this.name = "FrameTooLargeError";
  }
}

export interface LineDecoderOptions {
  /**
   * Drop lines that are not valid UTF-8 (counted in `invalidUtf8`) instead of decoding their
   * bad bytes as U+FFFD. Each bad byte would become 3 bytes when the line is written again, so
   * a relay that forwards lines (the shim) must not let such a line through.
   */
  strictUtf8?: boolean;
}

export interface DecodedChunk {
  /** Complete lines (without the newline and a trailing CR; blank lines are skipped). */
  lines: string[];
  /** Lines longer than `maxBytes`, dropped. */
  oversized: number;
  /** Lines dropped because they are not valid UTF-8 (only with `strictUtf8`). */
  invalidUtf8: number;
}

/**
 * Splits a byte stream into lines. Feed chunks with `push`; complete lines come back.
 * A line longer than `maxBytes` is counted in `oversized` once; after that the decoder
 * skips the rest of that line (up to the next newline) and carries on, so a caller that
 * wants to keep the connection (the shim on stdin) can, and one that wants to drop it can.
 */
export class LineDecoder {
  private parts: Buffer[] = [];
  private size = 0;
  private skipping = false;
  private readonly strictUtf8: boolean;

  constructor(
    private readonly maxBytes: number = MAX_FRAME_BYTES,
    opts: LineDecoderOptions = {},
  ) {
    this.strictUtf8 = opts.strictUtf8 === true;
  }

  push(chunk: Buffer): DecodedChunk {
    const lines: string[] = [];
    let oversized = 0;
    let invalidUtf8 = 0;
    let start = 0;
    while (start <= chunk.length) {
      const nl = chunk.indexOf(10, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (!this.skipping) {
        if (this.size + piece.length > this.maxBytes) {
          oversized++;
          this.parts = [];
          this.size = 0;
          this.skipping = nl === -1;
        } else if (piece.length > 0) {
          this.parts.push(piece);
          this.size += piece.length;
        }
      }
      if (nl === -1) break;
      if (this.skipping) {
        this.skipping = false;
      } else if (this.size > 0 || this.parts.length > 0) {
        const bytes = Buffer.concat(this.parts);
        if (this.strictUtf8 && !isUtf8(bytes)) {
          invalidUtf8++;
        } else {
          const line = bytes.toString("utf8").replace(/\r$/, "");
          if (line.trim().length > 0) lines.push(line);
        }
      }
      this.parts = [];
      this.size = 0;
      start = nl + 1;
    }
    return { lines, oversized, invalidUtf8 };
  }

  /** Bytes buffered of an unfinished line. */
  get pending(): number {
    return this.size;
  }
}

/** Serialises one message as a frame (JSON + newline). */
export function encodeFrame(message: unknown): string {
  return `${JSON.stringify(message)}\n`;
}
