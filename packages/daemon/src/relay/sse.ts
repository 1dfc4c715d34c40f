/** Server-sent events, read as they stream in (the relay's answers and its notification stream). */
/**
 * A streaming SSE line parser (the `event`, `data` (multi-line), `id` and `retry` fields; comments
 * ignored): an event is dispatched at its blank line, an unfinished one at the end is dropped.
 */
export class SseParser {
  private partial = "";
  private skipLf = false;
  private event = "";
  private data: string[] = [];
  private id: string | undefined;
  private any = false;

  constructor(
    private readonly onEvent: (event: string, data: string, id: string | undefined) => void,
    private readonly onRetry: (ms: number) => void,
  ) {}

  push(chunk: string): void {
    let text = this.partial + chunk;
    this.partial = "";
    if (this.skipLf) {
      this.skipLf = false;
      if (text.startsWith("\n")) text = text.slice(1);
    }
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(text.slice(start, i));
      if (c === 13) {
        if (i + 1 === text.length) this.skipLf = true;
        else if (text.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.partial = text.slice(start);
  }

  private line(line: string): void {
    if (line === "") {
      if (this.any) {
        const { event, id } = this;
        const data = this.data.join("\n");
        this.event = "";
        this.data = [];
        this.id = undefined;
        this.any = false;
        this.onEvent(event, data, id);
      }
      return;
    }
    if (line.charCodeAt(0) === 58) return; // ":" comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 32) value = value.slice(1);
    switch (field) {
      case "data":
        this.data.push(value);
        this.any = true;
        break;
      case "event":
        this.event = value;
        this.any = true;
        break;
      case "id":
        if (!value.includes("\0")) {
          this.id = value;
          this.any = true;
        }
        break;
      case "retry":
        if (/^\d+$/.test(value)) this.onRetry(Number(value));
        break;
    }
  }
}
