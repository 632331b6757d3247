// Shared by the node-sim test files: one block of seeds per `it`, each failure
// reported with its seed and replay command (npm run sim -- --seed N ...).
import { expect, it } from 'vitest';
import { NodeSim, SimFailure, nodeSimOptionsForSeed, type NodeSimOverrides } from '../src/node-sim/index.js';

/** Fault ticks per CI run: 20 s of virtual time, about 0.25 s of real time per seed on the CI machine. */
export const CI_FAULT_TICKS = 200;
const SEEDS_PER_BLOCK = 25;
/** Per block of 25 seeds (about 6-15 s); only catches a hung run. */
export const BLOCK_TIMEOUT_MS = 300_000;

/** Registers `count` seeds from `from` in blocks; every seed must pass. */
export function seedBlocks(from: number, count: number, overrides: NodeSimOverrides = {}): void {
  for (let block = from; block < from + count; block += SEEDS_PER_BLOCK) {
    const last = Math.min(block + SEEDS_PER_BLOCK, from + count) - 1;
    it(`seeds ${block}..${last}`, async () => {
      const failures: string[] = [];
      for (let seed = block; seed <= last; seed++) {
        try {
          await new NodeSim(nodeSimOptionsForSeed(seed, { faultTicks: CI_FAULT_TICKS, ...overrides })).run();
        } catch (err) {
          failures.push(err instanceof SimFailure ? err.message : `seed ${seed}: ${(err as Error).stack}`);
        }
      }
      expect(failures, failures.join('\n\n')).toEqual([]);
    }, BLOCK_TIMEOUT_MS);
  }
}
