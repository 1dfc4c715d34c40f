/**
 * Notices that the machine slept or the process was frozen, both ways:
 * - **frozen** (SIGSTOP, a stopped VM, a debugger, a long stall): timers fire far too late — the
 *   monotonic clock went on, but nothing ran;
 * - **suspended** (a laptop's lid closed): the monotonic clock stops during a suspend on Linux and
 *   macOS, so timers are not late at all; the wall clock, however, jumped ahead of it.
 *
 * `check()` compares both clocks with the previous check: it is cheap and synchronous, so it runs on
 * a short interval AND before anything is sent, which matters because after a wake the I/O that
 * piled up (a client's call) is handled before any timer runs.
 */

/** The two clocks compared (injectable for tests). */
export interface WakeClock {
  /** Wall clock, epoch ms (Date.now()). */
  wall(): number;
  /** Monotonic clock, ms (performance.now(); stops during a system suspend). */
  mono(): number;
}

export const systemClock: WakeClock = {
  wall: () => Date.now(),
  mono: () => performance.now(),
};

export interface Wake {
  /** frozen: timers ran far too late; suspended: the wall clock jumped ahead of the monotonic one. */
  kind: "frozen" | "suspended";
  /** About how long nothing ran (ms). */
  sleptMs: number;
}

export interface WakeDetectorOptions {
  clock?: WakeClock;
  /** Interval of the background check (default 1 s). */
  tickMs?: number;
  /** A gap this much larger than expected counts as a wake (default 4 s). */
  thresholdMs?: number;
  /** Called synchronously from `check()` when a wake is seen. */
  onWake: (wake: Wake) => void;
}

export class WakeDetector {
  private readonly clock: WakeClock;
  private readonly tickMs: number;
  private readonly thresholdMs: number;
  private lastWall = 0;
  private lastMono = 0;
  private timer: NodeJS.Timeout | undefined;
  /** How many wakes were seen. */
  wakes = 0;

  constructor(private readonly o: WakeDetectorOptions) {
    this.clock = o.clock ?? systemClock;
    this.tickMs = Math.max(10, o.tickMs ?? 1_000);
    this.thresholdMs = Math.max(1, o.thresholdMs ?? 4_000);
  }

  get running(): boolean {
    return this.timer !== undefined;
  }

  start(): void {
    if (this.timer) return;
    this.lastWall = this.clock.wall();
    this.lastMono = this.clock.mono();
    this.timer = setInterval(() => this.check(), this.tickMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Compares the clocks with the last check; reports (once) and returns a wake if one happened
   * since. Does nothing before `start()`.
   */
  check(): Wake | undefined {
    if (!this.timer) return undefined;
    const wall = this.clock.wall();
    const mono = this.clock.mono();
    const dWall = wall - this.lastWall;
    const dMono = mono - this.lastMono;
    this.lastWall = wall;
    this.lastMono = mono;
    let wake: Wake | undefined;
    // The wall clock ran ahead of the monotonic one: the machine was suspended (a wall clock set
    // back, or slewed by NTP, never counts).
    if (dWall - dMono > this.thresholdMs) wake = { kind: "suspended", sleptMs: Math.round(dWall - dMono) };
    // No check for much longer than a tick: timers did not run, the process was frozen.
    else if (dMono - this.tickMs > this.thresholdMs) wake = { kind: "frozen", sleptMs: Math.round(dMono) };
    if (!wake) return undefined;
    this.wakes++;
    this.o.onWake(wake);
    return wake;
  }
}
