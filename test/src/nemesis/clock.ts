/**
 * The clock fault's instrument: one node's process runs under libfaketime
 * (Debian's `faketime` package) for the whole run, with its fake time read
 * from a file the nemesis rewrites. libfaketime then fakes every clock the
 * process reads — `Date.now()`, `process.hrtime()`, `performance.now()` —
 * and libuv's timers, which run on the faked monotonic clock: the node's
 * tick loop runs fast or slow with it, and a clock stepped back holds every
 * timer (the tick loop too) until it has caught up again.
 *
 * How libfaketime reads the file (`FAKETIME_TIMESTAMP_FILE`, re-read on every
 * clock read with `FAKETIME_NO_CACHE=1`), measured with 0.9.10 and Node 20:
 * "+O xR" makes a clock read at real time t answer
 *
 *     t + O + (t - start) · (R - 1)
 *
 * where `start` is when the process started. The offset O is from real
 * time, not from the previous setting: a step writes the sum of every step
 * so far. The rate applies to the whole time since the process started, so
 * changing R alone would make the clock leap by (t - start) · ΔR; a change
 * of rate therefore moves O by (t - start) · (R_old - R_new) to keep the
 * clock continuous (`withRate`). The process start is taken when the node
 * is spawned, a few milliseconds before libfaketime initialises, so a rate
 * change may still step the clock by that much times ΔR.
 */
import { existsSync, renameSync, writeFileSync } from 'node:fs';

/** What the runner says when the library is missing (and CI installs). */
export const LIBFAKETIME_MISSING = "clock faults need Debian's faketime package: apt-get install faketime";

/**
 * The multi-threaded build: a node process reads clocks from its main thread,
 * its worker cores and libuv's pool at once, and the plain build keeps the
 * parsed file in unsynchronised statics, so one thread could read a half
 * updated setting (a spurious leap) while another re-reads the file.
 */
const LIBRARY_NAME = 'libfaketimeMT.so.1';

/** Where Debian (multiarch) and `make install` put the library. */
export function libfaketimeCandidates(): string[] {
  const multiarch = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
  return [`/usr/lib/${multiarch}/faketime`, '/usr/lib/faketime', '/usr/local/lib/faketime'].map((d) => `${d}/${LIBRARY_NAME}`);
}

/** The library's path, or an Error saying how to install it. */
export function findLibfaketime(): string {
  const candidates = libfaketimeCandidates();
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) throw new Error(`${LIBFAKETIME_MISSING} (no ${candidates.join(', ')})`);
  return found;
}

/** What the file says: the offset from real time, ms, and the rate. */
export interface ClockSpec {
  readonly offsetMs: number;
  readonly rate: number;
}

export const CLOCK_TRUE: ClockSpec = { offsetMs: 0, rate: 1 };

/** The file's text: "+1.500 x3", "-0.250 x1" (seconds). */
export function specText(s: ClockSpec): string {
  const seconds = (s.offsetMs / 1000).toFixed(3);
  return `${s.offsetMs >= 0 ? '+' : ''}${seconds} x${s.rate}`;
}

/** The process's clock at real time `realMs` under `s`, for a process started at `startMs` (the model above). */
export function fakeMs(s: ClockSpec, o: { realMs: number; startMs: number }): number {
  return o.realMs + s.offsetMs + (o.realMs - o.startMs) * (s.rate - 1);
}

/** `s` stepped by `deltaMs` (negative: back). */
export function withStep(s: ClockSpec, deltaMs: number): ClockSpec {
  return { offsetMs: s.offsetMs + deltaMs, rate: s.rate };
}

/**
 * `s` running at `rate` from now on, continuous with `s` now: `elapsedMs`
 * since the process started (undefined: no process runs, so no clock to
 * keep continuous; the next one starts at the offset).
 */
export function withRate(s: ClockSpec, rate: number, elapsedMs: number | undefined): ClockSpec {
  if (!(rate > 0)) throw new RangeError(`a clock rate must be positive, got ${rate}`);
  return { offsetMs: s.offsetMs + (elapsedMs ?? 0) * (s.rate - rate), rate };
}

/** One node's faked clock: the file, what it says now, and when the node's current process started. */
export class FakeClock {
  private current: ClockSpec = CLOCK_TRUE;
  /** When the node's current process started: on the real clock, and on its own. */
  private processStartMs: number | undefined;
  private processFakeStartMs = 0;

  constructor(
    private readonly o: {
      readonly node: number;
      readonly file: string;
      readonly library: string;
      /** A real monotonic clock, ms (the runner's performance.now()). */
      readonly nowMs: () => number;
    },
  ) {
    this.write();
  }

  get node(): number {
    return this.o.node;
  }

  get spec(): ClockSpec {
    return this.current;
  }

  /** The file's text now. */
  get text(): string {
    return specText(this.current);
  }

  /** The environment the node's process is started with. */
  env(): Record<string, string> {
    return { LD_PRELOAD: this.o.library, FAKETIME_TIMESTAMP_FILE: this.o.file, FAKETIME_NO_CACHE: '1' };
  }

  /** The node's process was just spawned / has exited. */
  processStarted(): void {
    this.processStartMs = this.o.nowMs();
    this.processFakeStartMs = fakeMs(this.current, { realMs: this.processStartMs, startMs: this.processStartMs });
  }

  processStopped(): void {
    this.processStartMs = undefined;
  }

  /**
   * How far the running process's clocks have advanced since it started,
   * by its own reckoning (steps and rates included); undefined when no
   * process runs. A step back by more than this takes its monotonic clock
   * below where it started, which Node does not survive: it aborts on
   * `now >= timer_base()` (env.cc) at the next timer it sets.
   */
  processAgeMs(): number | undefined {
    if (this.processStartMs === undefined) return undefined;
    return fakeMs(this.current, { realMs: this.o.nowMs(), startMs: this.processStartMs }) - this.processFakeStartMs;
  }

  step(deltaMs: number): void {
    this.set(withStep(this.current, deltaMs));
  }

  setRate(rate: number): void {
    this.set(withRate(this.current, rate, this.processStartMs === undefined ? undefined : this.o.nowMs() - this.processStartMs));
  }

  private set(s: ClockSpec): void {
    this.current = s;
    this.write();
  }

  /** Atomically (a rename): libfaketime re-reads the file on every clock read, and must never see it empty. */
  private write(): void {
    const tmp = `${this.o.file}.tmp`;
    writeFileSync(tmp, `${this.text}\n`);
    renameSync(tmp, this.o.file);
  }
}
