import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { crashSettings, describeReport, killLeftoverChildren, runCrashLoop } from './harness.js';

const { seed, cycles } = crashSettings();
/** ~0.5 s per cycle measured here; the rest is headroom for a loaded CI machine. */
const TEST_TIMEOUT_MS = 60_000 + cycles * 2_000;

describe('crash: snapshot install under SIGKILL', () => {
  afterEach(() => {
    killLeftoverChildren();
  });
  afterAll(() => {
    killLeftoverChildren();
  });

  it(
    `leaves the shard wholly in its old state or wholly in the installed one, never a mix, and clears staging (${cycles} kills, seed ${seed})`,
    async () => {
      const report = await runCrashLoop({ mode: 'snapshot', seed, cycles, storeDir: (dir) => join(dir, 'target'), nodeId: 1 });
      console.log(describeReport('snapshot', seed, report));
      expect(report.cycles).toBe(cycles);
      expect(report.killedDuring.install ?? 0).toBeGreaterThan(0);
    },
    TEST_TIMEOUT_MS,
  );
});
