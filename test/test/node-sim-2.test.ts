// The second block of whole-node simulation seeds (see node-sim.test.ts); a file of its own so vitest runs it on the other core.
import { describe } from 'vitest';
import { seedBlocks } from './node-sim-seeds.js';

describe('whole-node simulation', () => {
  describe('seeds', () => seedBlocks(101, 100));
  // Clients with several puts in flight at once: leaders fold them into batch entries.
  describe('seeds with write bursts', () => seedBlocks(1, 50, { writeBurstMax: 4 }));
  // Half the write crashes strike right after the write: durable, but nothing it promised was sent.
  describe('seeds with crashes after writes', () => seedBlocks(1, 50, { crashAfterWrites: true }));
  // Node clocks that run fast or slow and step forward or back: node leases stay safe, nothing livelocks.
  describe('seeds with clock faults', () => seedBlocks(1, 50, { clockFaults: true }));
});
