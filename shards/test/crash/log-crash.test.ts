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
    `leaves the store exactly before or after each interrupted round — log, hard state, applied index and data in the Host's one transaction — and keeps every acknowledged one (${cycles} kills, seed ${seed})`,
    async () => {
      const report = await runCrashLoop({ mode: 'log', seed, cycles, storeDir: (dir) => dir, nodeId: 1 });
      console.log(describeReport('log', seed, report));
      expect(report.cycles).toBe(cycles);
      expect(report.acks).toBeGreaterThan(0);
      // Each kill was checked against the operation it interrupted; this makes sure some of them
      // interrupted a round that wrote log entries and applied in the same transaction.
      const combined = report.interrupted['round:log+apply'];
      expect(combined, 'no kill interrupted a combined log + apply round').toBeDefined();
      expect(combined!.before + combined!.after + combined!.same).toBeGreaterThan(0);
      // And some interrupted a round whose transaction also checkpointed the log tail.
      const checkpoint = report.interrupted['round:checkpoint'];
      expect(checkpoint, 'no kill interrupted a round that checkpointed the log tail').toBeDefined();
    },
    TEST_TIMEOUT_MS,
  );
});
