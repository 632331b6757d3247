// The clock fault's parts: the libfaketime file a step or a change of rate writes (continuous at a change
// of rate, a jump of exactly the step at a step), the track of clock episodes in the nemesis schedule, and
// libfaketime reading what we write (a real process, stepped a minute either way).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { CLOCK_TRUE, FakeClock, fakeMs, findLibfaketime, specText, withRate, withStep, type ClockSpec } from '../src/nemesis/clock.js';
import { EPISODE_KINDS, FAULT_KINDS, planSchedule, type Fault, type FaultKind } from '../src/nemesis/schedule.js';

describe('libfaketime file', () => {
  it.each([
    [{ offsetMs: 0, rate: 1 }, '+0.000 x1'],
    [{ offsetMs: 30_000, rate: 1 }, '+30.000 x1'],
    [{ offsetMs: -1_250, rate: 3 }, '-1.250 x3'],
    [{ offsetMs: 12_345.6789, rate: 0.7 }, '+12.346 x0.7'],
  ])('%o is written as "%s"', (spec, text) => {
    expect(specText(spec)).toBe(text);
  });

  it('changes rate without a leap and steps by exactly the step', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 60_000 }), fc.oneof(fc.record({ stepMs: fc.integer({ min: -60_000, max: 60_000 }) }), fc.record({ rate: fc.constantFrom(0.5, 0.7, 1, 1.5, 2, 3) }))), { maxLength: 20 }),
        (changes) => {
          const startMs = 1_000;
          let s: ClockSpec = CLOCK_TRUE;
          let realMs = startMs;
          for (const [waitMs, change] of changes) {
            realMs += waitMs;
            const before = fakeMs(s, { realMs, startMs });
            s = 'stepMs' in change ? withStep(s, change.stepMs) : withRate(s, change.rate, realMs - startMs);
            const after = fakeMs(s, { realMs, startMs });
            expect(after - before).toBeCloseTo('stepMs' in change ? change.stepMs : 0, 6);
            if ('rate' in change) expect(s.rate).toBe(change.rate);
          }
        },
      ),
    );
  });

  it("knows how far the process's own clock has run since it started (a step back past that aborts Node)", () => {
    let nowMs = 0;
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-clock-age-'));
    try {
      const clock = new FakeClock({ node: 1, file: join(dir, 'n1.faketime'), library: 'unused', nowMs: () => nowMs });
      clock.step(-30_000); // before the process: it simply starts 30 s behind
      nowMs = 1_000;
      clock.processStarted();
      nowMs = 3_000;
      expect(clock.processAgeMs()).toBeCloseTo(2_000, 6);
      clock.step(10_000);
      expect(clock.processAgeMs()).toBeCloseTo(12_000, 6);
      clock.setRate(3);
      nowMs = 4_000;
      expect(clock.processAgeMs()).toBeCloseTo(15_000, 6);
      clock.setRate(1);
      clock.step(-14_000);
      expect(clock.processAgeMs()).toBeCloseTo(1_000, 6);
      clock.processStopped();
      expect(clock.processAgeMs()).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps the offset when no process runs (a new one starts at it)', () => {
    expect(withRate({ offsetMs: 5_000, rate: 3 }, 1, undefined)).toEqual({ offsetMs: 5_000, rate: 1 });
  });
});

describe('clock track of the nemesis schedule', () => {
  const plan = (seed: number, nodeCount: number, durationMs: number, faults: readonly FaultKind[] = FAULT_KINDS) => planSchedule({ seed, nodeCount, durationMs, warmupMs: 2_000, faults, admin: [] });

  it('changes one clock at a time, inside the run, a step back no longer than its episode', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 }), fc.constantFrom(3, 5), fc.integer({ min: 5_000, max: 3_600_000 }), (seed, nodeCount, durationMs) => {
        const s = plan(seed, nodeCount, durationMs);
        expect(s.nodeIds).toContain(s.clockNode);
        let end = 2_000;
        for (const e of s.clockEpisodes) {
          expect(e.atMs).toBeGreaterThanOrEqual(end);
          end = e.atMs + e.durationMs;
          expect(end).toBeLessThanOrEqual(durationMs);
          if (e.change.kind === 'step' && e.change.deltaMs < 0) expect(e.durationMs).toBeGreaterThan(-e.change.deltaMs);
          if (e.change.kind === 'rate') expect(e.change.rate).not.toBe(1);
          if (e.gatherLeads) {
            // Met with a cut: a step back of seconds, just after a cut of the clock node long enough for the rest to elect and write.
            expect(e.change.kind === 'step' && e.change.deltaMs <= -4_000).toBe(true);
            const cutsClockNode = (f: Fault) => (f.kind === 'isolate' && f.node === s.clockNode) || (f.kind === 'partition' && f.minority.includes(s.clockNode!));
            expect(s.episodes.some((o) => e.atMs - o.atMs >= 0 && e.atMs - o.atMs <= 300 && o.durationMs >= 4_000 && cutsClockNode(o.fault))).toBe(true);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('meets a cut of the clock node with a step back, having made it leader just before', () => {
    const s = planSchedule({ seed: 6, nodeCount: 3, durationMs: 25_000, warmupMs: 2_000, faults: ['clock', 'isolate', 'partition'], admin: [] });
    expect(s.clockEpisodes.some((e) => e.gatherLeads)).toBe(true);
  });

    it('meets every kind of change in a 90 s run: steps both ways, fast and slow', () => {
    const changes = plan(1, 3, 90_000).clockEpisodes.map((e) => (e.change.kind === 'step' ? (e.change.deltaMs > 0 ? 'forward' : 'back') : e.change.rate > 1 ? 'fast' : 'slow'));
    expect(new Set(changes)).toEqual(new Set(['forward', 'back', 'fast', 'slow']));
  });

  it('leaves the other episodes of a seed as they were, and plans no clock without clock faults', () => {
    const withClock = plan(9, 5, 120_000);
    const without = plan(9, 5, 120_000, EPISODE_KINDS);
    expect(withClock.episodes).toEqual(without.episodes);
    expect(withClock.clockEpisodes.length).toBeGreaterThan(0);
    expect(without.clockNode).toBeNull();
    expect(without.clockEpisodes).toEqual([]);
  });
});

describe('libfaketime reads the file we write', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-clock-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Date.now() of a process started under the clock, minus ours. A minute of step is unmistakable on any machine. */
  const offsetSeenMs = (clock: FakeClock): number => {
    const before = Date.now();
    const theirs = Number(execFileSync(process.execPath, ['-e', 'process.stdout.write(String(Date.now()))'], { env: { ...process.env, ...clock.env() } }).toString());
    return theirs - before;
  };

  it('is installed (CI installs Debian\'s faketime package)', () => {
    expect(() => findLibfaketime()).not.toThrow();
  });

  it('steps a process\'s clock a minute forward, then two back', () => {
    const clock = new FakeClock({ node: 1, file: join(dir, 'n1.faketime'), library: findLibfaketime(), nowMs: () => performance.now() });
    expect(Math.abs(offsetSeenMs(clock))).toBeLessThan(30_000);
    clock.step(60_000);
    expect(readFileSync(join(dir, 'n1.faketime'), 'utf8')).toBe('+60.000 x1\n');
    expect(offsetSeenMs(clock)).toBeGreaterThan(30_000);
    clock.step(-120_000);
    expect(offsetSeenMs(clock)).toBeLessThan(-30_000);
  });
});
