// The leader's per-follower flow control: the inflight window and the
// probe / replicate / snapshot state machine (etcd-raft's tracker package).
import { describe, expect, it } from 'vitest';
import { AssertionError } from '../src/assert.js';
import { Inflights } from '../src/progress/inflights.js';
import { Progress, type ProgressState } from '../src/progress/progress.js';

const UNLIMITED_BYTES = Number.MAX_SAFE_INTEGER;

function progressIn(state: ProgressState, options: { match: number; next: number; pendingSnapshot?: number; inflightCountMax?: number }): Progress {
  const p = new Progress({ next: options.next, match: options.match, inflightCountMax: options.inflightCountMax ?? 256, inflightBytesMax: UNLIMITED_BYTES, isLearner: false });
  if (state === 'snapshot') p.becomeSnapshot(options.pendingSnapshot ?? 0);
  else if (state === 'replicate') p.becomeReplicate();
  // The transitions above reset next; put the table's value back.
  p.next = options.next;
  return p;
}

/** Adds `count` consecutive appends starting at `firstIndex`, `bytes` each. */
function addRun(inflights: Inflights, options: { firstIndex: number; count: number; bytes?: number }): void {
  for (let i = 0; i < options.count; i++) inflights.add(options.firstIndex + i, options.bytes ?? 1);
}

describe('Inflights', () => {
  it('is full once it holds countMax appends', () => {
    const inflights = new Inflights(10, UNLIMITED_BYTES);
    addRun(inflights, { firstIndex: 0, count: 9 });
    expect(inflights.full()).toBe(false);
    inflights.add(9, 1);
    expect(inflights.full()).toBe(true);
    expect(inflights.size).toBe(10);
  });

  it('is full once its bytes reach bytesMax, letting one append overshoot', () => {
    const inflights = new Inflights(10, 1000);
    inflights.add(1, 400);
    inflights.add(2, 400);
    expect(inflights.full()).toBe(false);
    // 800 + 300 overshoots the budget: allowed for this one append, the next must wait.
    inflights.add(3, 300);
    expect(inflights.sizeBytes).toBe(1100);
    expect(inflights.full()).toBe(true);
    inflights.freeLE(1);
    expect(inflights.sizeBytes).toBe(700);
    expect(inflights.full()).toBe(false);
  });

  it('is full at exactly bytesMax', () => {
    const inflights = new Inflights(10, 1000);
    inflights.add(1, 999);
    expect(inflights.full()).toBe(false);
    inflights.add(2, 1);
    expect(inflights.full()).toBe(true);
  });

  it('refuses an append when full', () => {
    const inflights = new Inflights(2, UNLIMITED_BYTES);
    addRun(inflights, { firstIndex: 1, count: 2 });
    expect(() => inflights.add(3, 1)).toThrow(AssertionError);
  });

  it('refuses an index that does not increase', () => {
    const inflights = new Inflights(4, UNLIMITED_BYTES);
    inflights.add(5, 1);
    expect(() => inflights.add(5, 1)).toThrow(AssertionError);
    expect(() => inflights.add(4, 1)).toThrow(AssertionError);
  });

  describe('freeLE', () => {
    // Window holding the appends ending at 1..10, 10 bytes each.
    const cases: Array<{ freeTo: number; size: number; sizeBytes: number }> = [
      { freeTo: 0, size: 10, sizeBytes: 100 },
      { freeTo: 1, size: 9, sizeBytes: 90 },
      { freeTo: 4, size: 6, sizeBytes: 60 },
      { freeTo: 9, size: 1, sizeBytes: 10 },
      { freeTo: 10, size: 0, sizeBytes: 0 },
      { freeTo: 99, size: 0, sizeBytes: 0 },
    ];
    for (const { freeTo, size, sizeBytes } of cases) it(`freeing up to ${freeTo} leaves ${size} appends (${sizeBytes} bytes)`, () => {
      const inflights = new Inflights(10, UNLIMITED_BYTES);
      addRun(inflights, { firstIndex: 1, count: 10, bytes: 10 });
      inflights.freeLE(freeTo);
      expect(inflights.size).toBe(size);
      expect(inflights.sizeBytes).toBe(sizeBytes);
      expect(inflights.full()).toBe(size === 10);
    });
  });

  it('keeps appends in order across the end of its ring', () => {
    const inflights = new Inflights(10, UNLIMITED_BYTES);
    addRun(inflights, { firstIndex: 1, count: 10 });
    inflights.freeLE(7); // the ring now starts in its 8th slot
    addRun(inflights, { firstIndex: 11, count: 7 }); // wraps into slots 1..7
    expect(inflights.size).toBe(10);
    expect(inflights.full()).toBe(true);

    // Freeing walks the ring in index order: 8, 9, 10 (before the wrap), then 11.. (after).
    inflights.freeLE(9);
    expect(inflights.size).toBe(8);
    inflights.freeLE(12);
    expect(inflights.size).toBe(5);
    inflights.freeLE(17);
    expect(inflights.size).toBe(0);
    expect(inflights.sizeBytes).toBe(0);
  });

  it('wraps around many times without losing count', () => {
    const inflights = new Inflights(3, UNLIMITED_BYTES);
    for (let index = 1; index <= 100; index++) {
      inflights.add(index, 2);
      if (index >= 3) inflights.freeLE(index - 2);
      expect(inflights.size).toBe(Math.min(index, 2));
    }
    expect(inflights.sizeBytes).toBe(4);
  });

  it('clone copies the window in order and is independent of the original', () => {
    const inflights = new Inflights(4, UNLIMITED_BYTES);
    addRun(inflights, { firstIndex: 1, count: 4, bytes: 5 });
    inflights.freeLE(2);
    addRun(inflights, { firstIndex: 5, count: 2, bytes: 5 }); // wraps
    const copy = inflights.clone();
    expect(copy.size).toBe(4);
    expect(copy.sizeBytes).toBe(20);
    copy.freeLE(4);
    expect(copy.size).toBe(2);
    expect(inflights.size).toBe(4);
    inflights.freeLE(6);
    expect(copy.size).toBe(2);
  });

  it('reset empties the window', () => {
    const inflights = new Inflights(2, UNLIMITED_BYTES);
    addRun(inflights, { firstIndex: 1, count: 2 });
    inflights.reset();
    expect(inflights.size).toBe(0);
    expect(inflights.sizeBytes).toBe(0);
    expect(inflights.full()).toBe(false);
    // Indexes may start over after a reset (a new leader term).
    inflights.add(1, 1);
    expect(inflights.size).toBe(1);
  });

  it('fresh windows share no slots: an append to one leaves the others empty', () => {
    // Until its first append a window holds no storage of its own (memory per quiesced replica).
    const [a, b, emptyClone] = [new Inflights(4, UNLIMITED_BYTES), new Inflights(4, UNLIMITED_BYTES), new Inflights(4, UNLIMITED_BYTES).clone()];
    addRun(a, { firstIndex: 7, count: 3, bytes: 2 });
    expect([a.size, b.size, emptyClone.size]).toEqual([3, 0, 0]);
    addRun(b, { firstIndex: 1, count: 1, bytes: 9 });
    addRun(emptyClone, { firstIndex: 3, count: 2, bytes: 1 });
    a.freeLE(8);
    expect([a.size, a.sizeBytes, b.size, b.sizeBytes, emptyClone.size, emptyClone.sizeBytes]).toEqual([1, 2, 1, 9, 2, 2]);
    b.freeLE(1);
    expect(b.size).toBe(0);
    expect(a.size).toBe(1);
  });

  it('rejects non-positive limits', () => {
    expect(() => new Inflights(0, 1)).toThrow(AssertionError);
    expect(() => new Inflights(1, 0)).toThrow(AssertionError);
  });
});

describe('Progress state transitions', () => {
  const probeCases: Array<{ from: ProgressState; match: number; next: number; pendingSnapshot: number; expectedNext: number }> = [
    { from: 'replicate', match: 1, next: 5, pendingSnapshot: 0, expectedNext: 2 },
    { from: 'probe', match: 1, next: 5, pendingSnapshot: 0, expectedNext: 2 },
    // After a snapshot the follower has at least the snapshot's index.
    { from: 'snapshot', match: 1, next: 5, pendingSnapshot: 10, expectedNext: 11 },
    // A failed snapshot (pending reset to 0) falls back to the match.
    { from: 'snapshot', match: 1, next: 5, pendingSnapshot: 0, expectedNext: 2 },
    { from: 'snapshot', match: 20, next: 21, pendingSnapshot: 10, expectedNext: 21 },
  ];
  for (const { from, match, next, pendingSnapshot, expectedNext } of probeCases) it(`becomeProbe from ${from} (match ${match}, pending snapshot ${pendingSnapshot}) probes at ${expectedNext}`, () => {
    const p = progressIn(from, { match, next, pendingSnapshot });
    p.becomeProbe();
    expect(p.state).toBe('probe');
    expect(p.match).toBe(match);
    expect(p.next).toBe(expectedNext);
    expect(p.pendingSnapshot).toBe(0);
    expect(p.probeSent).toBe(false);
  });

  it('becomeReplicate streams from just past the match with an empty window', () => {
    const p = progressIn('probe', { match: 1, next: 5 });
    p.probeSent = true;
    p.becomeReplicate();
    expect(p.state).toBe('replicate');
    expect(p.next).toBe(2);
    expect(p.probeSent).toBe(false);
    expect(p.inflights.size).toBe(0);
  });

  it('becomeSnapshot records the pending snapshot and keeps match and next', () => {
    const p = progressIn('replicate', { match: 1, next: 5 });
    p.inflights.add(4, 10);
    p.becomeSnapshot(10);
    expect(p.state).toBe('snapshot');
    expect(p.pendingSnapshot).toBe(10);
    expect(p.match).toBe(1);
    expect(p.next).toBe(5);
    expect(p.inflights.size).toBe(0);
  });

  describe('maybeUpdate', () => {
    // match 3, next 5 before each update.
    const cases: Array<{ index: number; updated: boolean; match: number; next: number }> = [
      { index: 2, updated: false, match: 3, next: 5 },
      { index: 3, updated: false, match: 3, next: 5 },
      { index: 4, updated: true, match: 4, next: 5 },
      { index: 5, updated: true, match: 5, next: 6 },
      { index: 8, updated: true, match: 8, next: 9 },
    ];
    for (const { index, updated, match, next } of cases) it(`an ack of ${index} gives match ${match}, next ${next} (updated: ${updated})`, () => {
      const p = progressIn('probe', { match: 3, next: 5 });
      p.probeSent = true;
      expect(p.maybeUpdate(index)).toBe(updated);
      expect(p.match).toBe(match);
      expect(p.next).toBe(next);
      // Only an ack that moves the match releases the probe.
      expect(p.probeSent).toBe(!updated);
    });
  });

  describe('maybeDecreaseTo', () => {
    const cases: Array<{ name: string; state: ProgressState; match: number; next: number; rejected: number; hint: number; decreased: boolean; expectedNext: number }> = [
      { name: 'replicate: rejection at the match is stale', state: 'replicate', match: 5, next: 10, rejected: 5, hint: 5, decreased: false, expectedNext: 10 },
      { name: 'replicate: rejection below the match is stale', state: 'replicate', match: 5, next: 10, rejected: 4, hint: 4, decreased: false, expectedNext: 10 },
      { name: 'replicate: rejection above the match restarts from match+1', state: 'replicate', match: 5, next: 10, rejected: 9, hint: 9, decreased: true, expectedNext: 6 },
      { name: 'probe: rejection of anything but the last probe is stale', state: 'probe', match: 0, next: 10, rejected: 5, hint: 5, decreased: false, expectedNext: 10 },
      { name: 'probe: rejection of the last probe steps back one', state: 'probe', match: 0, next: 10, rejected: 9, hint: 9, decreased: true, expectedNext: 9 },
      { name: 'probe: next 2 steps back to 1', state: 'probe', match: 0, next: 2, rejected: 1, hint: 1, decreased: true, expectedNext: 1 },
      { name: 'probe: never below 1', state: 'probe', match: 0, next: 1, rejected: 0, hint: 0, decreased: true, expectedNext: 1 },
      { name: 'probe: jumps to the follower hint + 1', state: 'probe', match: 0, next: 10, rejected: 9, hint: 2, decreased: true, expectedNext: 3 },
      { name: 'probe: a hint of 0 probes from 1', state: 'probe', match: 0, next: 10, rejected: 9, hint: 0, decreased: true, expectedNext: 1 },
      { name: 'probe: never below match+1', state: 'probe', match: 4, next: 10, rejected: 9, hint: 2, decreased: true, expectedNext: 5 },
      { name: 'probe: a hint past the rejection is capped at the rejection', state: 'probe', match: 0, next: 10, rejected: 9, hint: 20, decreased: true, expectedNext: 9 },
    ];
    for (const { name, state, match, next, rejected, hint, decreased, expectedNext } of cases) it(`${name}`, () => {
      const p = progressIn(state, { match, next });
      if (state === 'probe') p.probeSent = true;
      expect(p.maybeDecreaseTo(rejected, hint)).toBe(decreased);
      expect(p.next).toBe(expectedNext);
      expect(p.match).toBe(match);
      // A decrease in probe state allows the next probe at once.
      if (state === 'probe') expect(p.probeSent).toBe(!decreased);
    });
  });

  describe('isPaused', () => {
    it('probe: paused while a probe is outstanding', () => {
      const p = progressIn('probe', { match: 0, next: 1 });
      expect(p.isPaused()).toBe(false);
      p.sentEntries({ entryCount: 3, bytes: 30, lastIndex: 3 });
      expect(p.isPaused()).toBe(true);
      // A probe does not advance next: the match point is still unknown.
      expect(p.next).toBe(1);
    });

    it('probe: an empty probe also pauses', () => {
      const p = progressIn('probe', { match: 0, next: 1 });
      p.sentEntries({ entryCount: 0, bytes: 0, lastIndex: 0 });
      expect(p.isPaused()).toBe(true);
    });

    it('replicate: paused only while the inflight window is full', () => {
      const p = progressIn('replicate', { match: 0, next: 1, inflightCountMax: 2 });
      expect(p.isPaused()).toBe(false);
      p.sentEntries({ entryCount: 2, bytes: 20, lastIndex: 2 });
      expect(p.next).toBe(3);
      expect(p.isPaused()).toBe(false);
      p.sentEntries({ entryCount: 1, bytes: 10, lastIndex: 3 });
      expect(p.next).toBe(4);
      expect(p.isPaused()).toBe(true);
      p.inflights.freeLE(2);
      expect(p.isPaused()).toBe(false);
    });

    it('replicate: an empty append takes no window slot', () => {
      const p = progressIn('replicate', { match: 0, next: 1, inflightCountMax: 1 });
      p.sentEntries({ entryCount: 0, bytes: 0, lastIndex: 0 });
      expect(p.inflights.size).toBe(0);
      expect(p.next).toBe(1);
      expect(p.isPaused()).toBe(false);
    });

    it('snapshot: always paused', () => {
      const p = progressIn('snapshot', { match: 0, next: 1, pendingSnapshot: 10 });
      expect(p.isPaused()).toBe(true);
    });

    it('snapshot: sending an append is our bug', () => {
      const p = progressIn('snapshot', { match: 0, next: 1, pendingSnapshot: 10 });
      expect(() => p.sentEntries({ entryCount: 1, bytes: 10, lastIndex: 1 })).toThrow(AssertionError);
    });
  });
});
