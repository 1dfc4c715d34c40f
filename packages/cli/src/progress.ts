/**
 * Progress while a command waits (login, daemon start, status --wait, service install): one
 * spinner line on stderr, `⠹ logging in to the Miniserver … 4s`, rewritten in place and erased
 * when the command prints its answer. Only on a terminal: when stderr is not a TTY (scripts,
 * pipes, CI logs), with TERM=dumb, or with --json the progress is a no-op and writes nothing.
 */

export interface Progress {
  /** True when something is drawn (stderr is a terminal). */
  readonly active: boolean;
  /** Says what is being waited for now (replaces the previous step). */
  step(text: string): void;
  /** Erases the spinner line; a later `step` draws it again. */
  stop(): void;
}

/** The progress of a non-terminal run or of `--json`: does nothing. */
export const NO_PROGRESS: Progress = {
  active: false,
  step() {},
  stop() {},
};

const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const ASCII_FRAMES = ["-", "\\", "|", "/"];
const INTERVAL_MS = 100;

export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** Whether progress may be drawn on `stream` (a terminal that understands `\r` and erase-line). */
export function progressEnabled(stream: ProgressStream, env: Record<string, string | undefined>): boolean {
  return stream.isTTY === true && env.TERM !== "dumb";
}

/** A spinner line on a terminal stream. `print` writes a whole line above it. */
export class Spinner implements Progress {
  readonly active = true;
  private text = "";
  private frame = 0;
  private startedAt = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private drawn = false;
  private readonly frames: string[];

  constructor(
    private readonly stream: ProgressStream,
    env: Record<string, string | undefined> = {},
    private readonly now: () => number = Date.now,
  ) {
    // The Linux console and non-UTF-8 locales have no braille glyphs.
    const utf8 = /UTF-?8/i.test(`${env.LC_ALL ?? ""}${env.LC_CTYPE ?? ""}${env.LANG ?? ""}`);
    this.frames = env.TERM === "linux" || !utf8 ? ASCII_FRAMES : FRAMES;
    this.startedAt = this.now();
  }

  step(text: string): void {
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.draw(), INTERVAL_MS);
      this.timer.unref();
    }
    this.text = text;
    this.draw();
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.erase();
  }

  /** Writes `line` (with its newline) to `to` without mixing it into the spinner line. */
  print(to: { write(s: string): unknown }, line: string): void {
    const was = this.drawn;
    this.erase();
    to.write(`${line}\n`);
    if (was && this.timer !== undefined) this.draw();
  }

  private erase(): void {
    if (!this.drawn) return;
    this.stream.write("\r\x1b[2K");
    this.drawn = false;
  }

  private draw(): void {
    const secs = Math.floor((this.now() - this.startedAt) / 1000);
    const frame = this.frames[this.frame++ % this.frames.length];
    let line = `${frame} ${this.text}${secs >= 1 ? ` … ${secs}s` : " …"}`;
    // Never wrap: a wrapped line cannot be rewritten in place.
    // (a terminal of unknown size, e.g. a pty nobody sized, reports 0 columns)
    const cols = (this.stream.columns ?? 0) >= 20 ? (this.stream.columns as number) : 80;
    if (line.length > cols - 1) line = `${line.slice(0, Math.max(10, cols - 2))}…`;
    this.stream.write(`\r\x1b[2K${line}`);
    this.drawn = true;
  }
}
