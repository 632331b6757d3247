// The nemesis schedule is a pure function of the seed and the run's shape: the same seed plans the same
// faults, episodes never overlap and end within the run, and a short run meets many different faults.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ADMIN_KINDS, EPISODE_KINDS, FAULT_KINDS, planSchedule, type Schedule } from '../src/nemesis/schedule.js';

const plan = (seed: number, nodeCount = 3, durationMs = 30_000): Schedule =>
  planSchedule({ seed, nodeCount, durationMs, warmupMs: 2_000, faults: FAULT_KINDS, admin: ADMIN_KINDS });

describe('nemesis schedule', () => {
  it('is the same for the same seed, and differs between seeds', () => {
    expect(plan(42)).toEqual(plan(42));
    expect(plan(42)).not.toEqual(plan(43));
  });

  it('keeps episodes after the warm-up, inside the run, one at a time, on nodes that exist', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 31 }), fc.constantFrom(3, 5), fc.integer({ min: 5_000, max: 3_600_000 }), (seed, nodeCount, durationMs) => {
        const s = plan(seed, nodeCount, durationMs);
        let end = 2_000;
        for (const e of s.episodes) {
          expect(e.atMs).toBeGreaterThanOrEqual(end);
          end = e.atMs + e.durationMs;
          expect(end).toBeLessThanOrEqual(durationMs);
          const f = e.fault;
          const nodes = 'node' in f ? [f.node] : f.kind === 'partition' ? f.minority : f.kind === 'one-way' ? [f.from, ...f.to] : f.links.flat();
          for (const n of nodes) expect(s.nodeIds).toContain(n);
          if (f.kind === 'partition') expect(f.minority.length * 2).toBeLessThan(nodeCount);
          if (f.kind === 'one-way') expect(f.to).not.toContain(f.from);
          if (f.kind === 'disk-full') expect(f.node).toBe(s.diskNode);
        }
        for (const a of s.admin) expect(a.atMs).toBeGreaterThanOrEqual(2_000);
        for (const kind of ADMIN_KINDS) expect(s.admin.some((a) => a.kind === kind)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('goes through the fault kinds before repeating one', () => {
    const s = plan(7, 5, 600_000);
    const first = s.episodes.slice(0, EPISODE_KINDS.length).map((e) => e.fault.kind);
    expect(new Set(first).size).toBe(EPISODE_KINDS.length);
  });

  it('plans only the faults asked for, and no small disk without disk-full', () => {
    const s = planSchedule({ seed: 5, nodeCount: 3, durationMs: 120_000, warmupMs: 2_000, faults: ['kill', 'pause'], admin: [] });
    expect(new Set(s.episodes.map((e) => e.fault.kind))).toEqual(new Set(['kill', 'pause']));
    expect(s.diskNode).toBeNull();
    expect(s.admin).toEqual([]);
  });
});
