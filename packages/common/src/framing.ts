/** Newline-delimited JSON framing for the daemon socket (and the shim's stdio). */

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

/**
 * Splits a byte stream into lines. Feed chunks with `push`; complete lines come back.
 * A line longer than `maxBytes` throws `FrameTooLargeError` once; after that the decoder
 * skips the rest of that line (up to the next newline) and carries on, so a caller that
 * wants to keep the connection (the shim on stdin) can, and one that wants to drop it can.
 */
export class LineDecoder {
  private parts: Buffer[] = [];
  private size = 0;
  private skipping = false;

  constructor(private readonly maxBytes: number = MAX_FRAME_BYTES) {}

  push(chunk: Buffer): { lines: string[]; oversized: number } {
    const lines: string[] = [];
    let oversized = 0;
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
        const line = Buffer.concat(this.parts).toString("utf8").replace(/\r$/, "");
        if (line.trim().length > 0) lines.push(line);
      }
      this.parts = [];
      this.size = 0;
      start = nl + 1;
    }
    return { lines, oversized };
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
