// The whole-node simulation (test/README.md, "Whole-node simulation"): replay,
// broken builds caught, and the first block of seeds (node-sim-2.test.ts runs
// the second, in parallel on the other core).
import { describe, expect, it } from 'vitest';
import { NodeSim, SimFailure, nodeSimOptionsForSeed, replayCommand, type NodeSimOverrides, type SimBug } from '../src/node-sim/index.js';
import { BLOCK_TIMEOUT_MS, CI_FAULT_TICKS, seedBlocks } from './node-sim-seeds.js';

/** Seeds a broken build is given to be caught, from its first: each is caught well within (the note lists the first catching seed). */
const BUG_SEEDS = 40;

async function failureOf(seed: number, bug: SimBug): Promise<SimFailure | undefined> {
  try {
    await new NodeSim(nodeSimOptionsForSeed(seed, { faultTicks: CI_FAULT_TICKS, bug })).run();
    return undefined;
  } catch (err) {
    if (err instanceof SimFailure) return err;
    throw err;
  }
}

describe('whole-node simulation', () => {
  it('replays a seed exactly: the same seed gives the same trace twice, another seed another', async () => {
    const options = nodeSimOptionsForSeed(3, { faultTicks: 100 });
    const a = await new NodeSim(options).run();
    const b = await new NodeSim(options).run();
    expect(a.trace.length).toBeGreaterThan(50);
    const first = a.trace.findIndex((line, i) => line !== b.trace[i]);
    expect(first, `traces differ at line ${first}: ${a.trace[first]} vs ${b.trace[first]}`).toBe(-1);
    expect(b.trace.length).toBe(a.trace.length);
    expect(b.stats).toEqual(a.stats);
    const other = await new NodeSim(nodeSimOptionsForSeed(4, { faultTicks: 100 })).run();
    expect(other.trace).not.toEqual(a.trace);
  }, BLOCK_TIMEOUT_MS);

  it("a failure's replay command draws the same run: its flags rebuild the options the seed drew", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const drawn = nodeSimOptionsForSeed(seed, { faultTicks: CI_FAULT_TICKS });
      const flags = replayCommand(drawn).split(' ');
      const flag = (name: string) => Number(flags[flags.indexOf(name) + 1]);
      expect(nodeSimOptionsForSeed(flag('--seed'), { nodeCount: flag('--nodes'), faultTicks: flag('--fault-ticks') }), `seed ${seed}`).toEqual(drawn);
    }
    const extended = nodeSimOptionsForSeed(7, { faultTicks: CI_FAULT_TICKS, writeBurstMax: 4, crashAfterWrites: true });
    const flags = replayCommand(extended).split(' ');
    expect(flags[flags.indexOf('--write-bursts') + 1]).toBe('4');
    expect(flags).toContain('--crash-after-writes');
  });

  describe('catches deliberately broken builds', () => {
    // `from`: where the search starts. A deposed leader is met only while one node is cut off with
    // clients on it and the rest elects and writes past it. Before node leases that was rare (seed 101
    // the first); with them, a leader's reads skip the round whenever its lease holds, so the broken
    // build only differs once the lease has run out, and seed 5 catches it.
    const bugs: readonly { bug: SimBug; what: string; from: number }[] = [
      { bug: 'ackBeforePersist', what: 'append responses and votes sent before persisting', from: 1 },
      { bug: 'staleLeaderRead', what: 'linearizable reads served by a leader without a quorum check', from: 1 },
      { bug: 'applyBeforeCommit', what: 'entries applied before they commit', from: 1 },
      { bug: 'splitLosesRightHalf', what: "a split that loses its right half's writes", from: 1 },
      // Needs a leader cut off past its lease while the rest elects and writes: seed 82 the first (since followers
      // held by a promise retry their campaign every tick).
      { bug: 'leaseOutlivesPromise', what: 'a node lease that never runs out', from: 75 },
    ];
    for (const { bug, what, from } of bugs) {
      it(`${what} (${bug})`, async () => {
        let caught: SimFailure | undefined;
        for (let seed = from; seed < from + BUG_SEEDS && caught === undefined; seed++) caught = await failureOf(seed, bug);
        expect(caught, `no seed in ${from}..${from + BUG_SEEDS - 1} caught ${bug}`).toBeDefined();
        // The failure names its seed and the one command that replays it, bug included.
        expect(caught!.message).toContain(`--seed ${caught!.options.seed}`);
        expect(caught!.message).toContain(`--bug ${bug}`);
        // Control: the same seed passes with the correct code, so the bug is what failed it.
        expect(await failureOf(caught!.options.seed, 'none')).toBeUndefined();
      }, BLOCK_TIMEOUT_MS);
    }
  });

  // Each failed on the build that found it; the simulation has grown since, so only 3014 and 5834 are known to
  // take the same path today (each fails without its fix). Each bug also has a test of its own where one
  // could be built (shards/test/host: quiescence, shard-lifecycle).
  describe('regressions: seeds that found bugs above the core', () => {
    const REGRESSIONS: readonly ({ seed: number; faultTicks: number; found: string } & Omit<NodeSimOverrides, 'bug'>)[] = [
      { seed: 35, faultTicks: 200, found: 'the placement driver could not run a step on a range split off elsewhere' },
      { seed: 85, faultTicks: 200, found: 'a follower never heard the commit of an entry it held, under a leader quiesced meanwhile' },
      { seed: 148, faultTicks: 300, found: 'an empty meta replica answered KEY_OUT_OF_RANGE and its node never heartbeat' },
      { seed: 1612, faultTicks: 300, found: 'a range whose replicas all restarted had no leader and no meta record' },
      { seed: 3014, faultTicks: 300, found: 'a leader deposed while quiesced kept calling itself leader after the heal' },
      { seed: 5834, faultTicks: 300, found: 'an empty replica voted for a stale candidate: two leaders in one term' },
      { seed: 495, faultTicks: 200, found: 'a replica re-added past a split kept an orphan right half no driver collects' },
      { seed: 2085, faultTicks: 300, nodeCount: 5, writeBurstMax: 4, crashAfterWrites: true, found: 'a replica collected as the driver moved its range back: the move found it present, then lost it' },
      { seed: 1140, faultTicks: 300, nodeCount: 5, found: 'followers promised to a leader that came back too far behind to win: no election for ever' },
      { seed: 7106, faultTicks: 300, nodeCount: 5, writeBurstMax: 4, crashAfterWrites: true, found: 'a learner removed and re-added was promoted on its removed replica\'s match, holding no range' },
      { seed: 143, faultTicks: 200, nodeCount: 5, found: 'with delta heartbeats, a driver that heard a holder before its range never looked at the stale replica again' },
      { seed: 30039, faultTicks: 300, nodeCount: 5, found: 'a write in the log of a leader whose replica was removed failed SHARD_NOT_FOUND; the router retried it and the entry committed too (a conditional put ran twice)' },
      { seed: 76109, faultTicks: 400, nodeCount: 5, writeBurstMax: 4, crashAfterWrites: true, clockFaults: true, found: "a right half whose only holder was a candidate: the other nodes adopted it empty on its vote requests before applying the split, dropping the split's data" },
      // With merges: each failed on the build before its fix, and each passes on it (they ran before the pin).
      { seed: 2, faultTicks: 300, nodeCount: 3, merges: true, found: "two neighbours in different cores' stores merged: the target waited for ever" },
      { seed: 6, faultTicks: 300, nodeCount: 3, merges: true, found: 'an admin merge took in a range another frozen range named as its target' },
      { seed: 145, faultTicks: 300, nodeCount: 5, merges: true, found: 'a node kept routing to a merged-away range: its read by id found no descriptor' },
      { seed: 12030, faultTicks: 300, nodeCount: 5, writeBurstMax: 4, crashAfterWrites: true, clockFaults: true, merges: true, found: 'an empty replica of a range merged away before the driver started was never collected' },
      { seed: 209, faultTicks: 300, nodeCount: 5, writeBurstMax: 4, crashAfterWrites: true, merges: true, found: "a merge alignment and replica balance traded a pair's replicas for ever (a tombstone pinned the moved one to another core)" },
      { seed: 47, faultTicks: 300, nodeCount: 5, writeBurstMax: 4, crashAfterWrites: true, merges: true, found: "a snapshot of a range merged and split again covered a stale replica only in part: refused as an overlap for ever" },
      { seed: 659, faultTicks: 300, nodeCount: 3, merges: true, found: "an admin merge took in a frozen range's target while the frozen range had no leader to report: it stayed frozen for good" },
      { seed: 4194, faultTicks: 400, nodeCount: 5, writeBurstMax: 4, crashAfterWrites: true, merges: true, found: "replica balance moved the meta range's replica off its leader: the driver restarted, undid the move as a stray learner, and planned it again for ever" },
      { seed: 12062, faultTicks: 300, nodeCount: 5, writeBurstMax: 4, crashAfterWrites: true, clockFaults: true, merges: true, found: 'a replica asked for while it applied its own removal was answered present, then destroyed: its learner never caught up' },
      { seed: 78146, faultTicks: 300, nodeCount: 5, merges: true, found: "a move of the meta range handed the driver to another node as it was paused: the paused driver left the move's learner for good" },
      { seed: 79303, faultTicks: 400, nodeCount: 5, writeBurstMax: 4, crashAfterWrites: true, clockFaults: true, merges: true, found: "a merged-away range's replica kept for its target's lagging replica there was never looked at again once that replica went" },
      { seed: 79550, faultTicks: 400, nodeCount: 5, writeBurstMax: 4, crashAfterWrites: true, clockFaults: true, merges: true, found: 'a leader cut off, its clock stepped back past its run-out lease, held that lease again and served stale reads' },
      { seed: 82065, faultTicks: 300, nodeCount: 3, writeBurstMax: 4, crashAfterWrites: true, clockFaults: true, merges: true, found: 'a frozen range merged away unseen (its target split again before reporting) had its merge resumed for ever' },
      { seed: 86019, faultTicks: 400, nodeCount: 5, writeBurstMax: 4, crashAfterWrites: true, clockFaults: true, found: 'a static member moved off its only range restarted holding no replica and created the bootstrap ranges again' },
      { seed: 91385, faultTicks: 500, nodeCount: 3, clockFaults: true, merges: true, found: "a node adopted a merge target's replica into another core than the source frozen into it: the target's merge gate waited for ever" },
      { seed: 40030, faultTicks: 400, nodeCount: 5, writeBurstMax: 4, crashAfterWrites: true, merges: true, found: 'a replica with data of a range merged away while its node was down, the driver that saw the merge since replaced, was never collected' },
      { seed: 104237, faultTicks: 500, nodeCount: 5, writeBurstMax: 4, crashAfterWrites: true, clockFaults: true, merges: true, found: "a node's replica removed and added back: a late answer of the destroyed one gave the leader a match the new one lacked, and it probed it for ever" },
    ];
    for (const r of REGRESSIONS) {
      it(`${r.found} (seed ${r.seed})`, async () => {
        const { seed, found: _found, ...overrides } = r;
        await new NodeSim(nodeSimOptionsForSeed(seed, overrides)).run();
      }, BLOCK_TIMEOUT_MS);
    }
  });

  describe('seeds', () => seedBlocks(1, 100));
  // Range merges: the driver merges cold neighbours, admin merges now and then, among splits and faults.
  describe('seeds with merges', () => seedBlocks(1, 50, { merges: true }));
});
