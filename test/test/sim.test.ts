// The deterministic cluster simulator, run over many seeds (see test/README.md).
//
// CI: SEEDS_PER_CLUSTER_SIZE seeds for 3-node and for 5-node clusters, every
// fault profile in rotation, in blocks of SEEDS_PER_BLOCK so progress shows.
// FLOTILLA_SEED=<n> replays one seed (with FLOTILLA_SIM_NODES, and
// FLOTILLA_SIM_TRACE=1 to print every event); FLOTILLA_SIM_SEEDS=<n> runs n
// seeds per cluster size instead (long mode).
import { describe, expect, it } from 'vitest';
import {
  CollectingTracer,
  envTracer,
  optionsForSeed,
  profileByName,
  RAFT_SAFETY_CODES,
  runSeed,
  SimFailure,
  simEnvironment,
  Simulator,
  type SimOptions,
} from '../src/sim/index.js';

/** 2 × 500 seeds of 1000 fault ticks take about 50 s on the 2-core CI machine (test/README.md). */
const SEEDS_PER_CLUSTER_SIZE = 500;
const SEEDS_PER_BLOCK = 50;
/** Per block; a block of 50 seeds takes 3-6 s, so this only catches a hung run. */
const BLOCK_TIMEOUT_MS = 120_000;

const env = simEnvironment();

/**
 * Seeds that found bugs in core/src, kept as regression cases. Each failed
 * before its fix (with the simulator as it is now) and passes after it.
 */
const REGRESSIONS: readonly { bug: string; seed: number; nodeCount: number; profile: string }[] = [
  // Liveness: every append of a full inflight window (or every ack) was lost, and the leader never
  // sent that follower anything again: heartbeat responses did not reopen the window.
  // Fixed in raft.ts onHeartbeatResponse + Inflights.freeFirstOne.
  { bug: 'replication resumes after a full inflight window is lost', seed: 50, nodeCount: 3, profile: 'lossy' },
  { bug: 'replication resumes after a full inflight window is lost', seed: 63, nodeCount: 3, profile: 'calm' },
  // A snapshot restored between ready() and advance() swapped the config under the conf changes of
  // that Ready's committed entries: replicas diverged on membership, or applyConfChange threw.
  // Fixed with Raft.applyingCommittedEntries (set by RawNode) checked in restore().
  { bug: "no snapshot is restored while a Ready's committed entries are being applied", seed: 95, nodeCount: 3, profile: 'membership' },
  { bug: "no snapshot is restored while a Ready's committed entries are being applied", seed: 130, nodeCount: 5, profile: 'membership' },
  { bug: "no snapshot is restored while a Ready's committed entries are being applied", seed: 1177, nodeCount: 5, profile: 'membership' },
  // The leader appended a conf change that cannot apply (removing every voter); once committed,
  // every replica threw InvalidConfChangeError applying it. Fixed by a dry run in appendProposal.
  { bug: 'the leader refuses a conf change that cannot apply instead of committing it', seed: 4, nodeCount: 3, profile: 'membership' },
  { bug: 'the leader refuses a conf change that cannot apply instead of committing it', seed: 109, nodeCount: 5, profile: 'membership' },
];

function runSeeds(options: { nodeCount: number; firstSeed: number; seedCount: number }): void {
  for (let seed = options.firstSeed; seed < options.firstSeed + options.seedCount; seed++) {
    runSeed(optionsForSeed(seed, { ...env.overrides, nodeCount: options.nodeCount }));
  }
}

/** Runs the simulation, returning its failure (or undefined when the run passed). */
function failureOf(sim: Simulator): SimFailure | undefined {
  try {
    sim.run();
    return undefined;
  } catch (err) {
    if (err instanceof SimFailure) return err;
    throw err;
  }
}

if (env.seed !== undefined) {
  const options = optionsForSeed(env.seed, env.overrides);
  describe('replay', () => {
    it(`seed ${env.seed} (${options.nodeCount} nodes, ${options.profile.name}) stays safe and live`, () => {
      runSeed(options, envTracer(env));
    }, BLOCK_TIMEOUT_MS);
  });
} else {
  const seedCount = env.seedCount ?? SEEDS_PER_CLUSTER_SIZE;
  const firstSeed = env.firstSeed ?? 0;
  const sizes = env.overrides.nodeCount !== undefined ? [env.overrides.nodeCount] : [3, 5];
  for (const nodeCount of sizes) {
    describe(`${nodeCount}-node clusters under faults`, () => {
      for (let from = firstSeed; from < firstSeed + seedCount; from += SEEDS_PER_BLOCK) {
        const count = Math.min(SEEDS_PER_BLOCK, firstSeed + seedCount - from);
        it(`seeds ${from}..${from + count - 1} keep every safety property and recover after healing`, () => {
          runSeeds({ nodeCount, firstSeed: from, seedCount: count });
        }, BLOCK_TIMEOUT_MS);
      }
    });
  }

  describe('simulator', () => {
    it('replays a seed exactly: the same seed gives the same trace twice', () => {
      const options = optionsForSeed(7, { nodeCount: 5, profile: profileByName('chaos') });
      const first = new CollectingTracer();
      const second = new CollectingTracer();
      const a = runSeed(options, first);
      const b = runSeed(options, second);
      expect(first.lines.length).toBeGreaterThan(10_000);
      const firstDifference = first.lines.findIndex((line, i) => line !== second.lines[i]);
      expect(firstDifference, `traces differ at line ${firstDifference}`).toBe(-1);
      expect(second.lines.length).toBe(first.lines.length);
      expect(b.stats).toEqual(a.stats);
      // Tracing observes without perturbing: the untraced run takes the same path.
      expect(runSeed(options).stats).toEqual(a.stats);
      // And the seed matters: the next one takes another path.
      const other = new CollectingTracer();
      runSeed(optionsForSeed(8, { nodeCount: 5, profile: profileByName('chaos') }), other);
      expect(other.lines).not.toEqual(first.lines);
    }, BLOCK_TIMEOUT_MS);

    it('catches a shell that sends messagesAfterPersist before persisting and crashes in between', () => {
      const caught: SimFailure[] = [];
      for (let seed = 0; seed < 20; seed++) {
        const failure = failureOf(new Simulator(optionsForSeed(seed, { nodeCount: 3, shellBug: 'sendBeforePersist' })));
        if (failure !== undefined) caught.push(failure);
      }
      // Most runs lose a vote or an acknowledged entry; at least one must be caught.
      expect(caught.length).toBeGreaterThan(0);
      // The failure names the seed and how to replay it.
      expect(caught[0]!.message).toContain(`FLOTILLA_SEED=${caught[0]!.options.seed}`);
      expect(caught[0]!.message).toContain('FLOTILLA_SIM_SHELL_BUG=sendBeforePersist');
    }, BLOCK_TIMEOUT_MS);

    it("catches the same broken shell with Raft's own safety properties alone (promise checks off)", () => {
      let found: SimFailure | undefined;
      let tried: SimOptions | undefined;
      for (let seed = 0; seed < 200 && found === undefined; seed++) {
        tried = optionsForSeed(seed, { nodeCount: 3, shellBug: 'sendBeforePersist' });
        const sim = new Simulator(tried);
        sim.checker.checkPromises = false;
        const failure = failureOf(sim);
        if (failure !== undefined && RAFT_SAFETY_CODES.has(failure.code)) found = failure;
      }
      expect(found, 'no seed in 0..199 broke Election Safety, Log Matching, Leader Completeness or State Machine Safety').toBeDefined();
      // Control: the same seed with a correct shell passes, so the bug is what failed it.
      expect(failureOf(new Simulator({ ...tried!, shellBug: 'none' }))).toBeUndefined();
    }, BLOCK_TIMEOUT_MS);
  });

  describe('regressions: seeds that found core bugs', () => {
    for (const r of REGRESSIONS) {
      it(`${r.bug} (seed ${r.seed}, ${r.nodeCount} nodes, ${r.profile})`, () => {
        runSeed(optionsForSeed(r.seed, { nodeCount: r.nodeCount, profile: profileByName(r.profile) }));
      }, BLOCK_TIMEOUT_MS);
    }
  });
}
