import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { crashSettings, describeReport, killLeftoverChildren, runCrashLoop } from './harness.js';

const { seed, cycles } = crashSettings();
/** ~0.4 s per cycle measured here; the rest is headroom for a loaded CI machine. */
const TEST_TIMEOUT_MS = 60_000 + cycles * 2_000;

describe('crash: log, hard state and apply under SIGKILL', () => {
  afterEach(() => {
    killLeftoverChildren();
  });
  afterAll(() => {
    killLeftoverChildren();
  });

  it(
    `keeps every acknowledged entry, hard state, apply and compaction, atomically per group commit (${cycles} kills, seed ${seed})`,
    async () => {
      const report = await runCrashLoop({ mode: 'log', seed, cycles, storeDir: (dir) => dir, nodeId: 1 });
      console.log(describeReport('log', seed, report));
      expect(report.cycles).toBe(cycles);
      expect(report.acks).toBeGreaterThan(0);
    },
    TEST_TIMEOUT_MS,
  );
});
