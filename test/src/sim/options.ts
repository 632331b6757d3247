// What one simulator run is: a seed, a cluster size, a fault profile and the
// Raft options, all derived from the seed so that the seed alone (plus the
// cluster size) replays a run exactly.
import { SeededRng, type ReadMode } from '@flotilla/core';

/**
 * How hostile the world is. Rates are probabilities: per message for the
 * network, per simulator step for events, per Ready stage boundary for the
 * Ready pipeline. A step is a quarter of a tick (STEPS_PER_TICK).
 */
export interface FaultProfile {
  readonly name: string;
  /** Probability that a message vanishes. */
  readonly messageDropRate: number;
  /** Probability that a message is delivered twice (the copy with its own delay). */
  readonly messageDuplicateRate: number;
  /** Probability that a message is held back, by 1..messageDelayStepsMax extra steps (this reorders it). */
  readonly messageDelayRate: number;
  readonly messageDelayStepsMax: number;
  /** Of the delayed messages, the share held up to ten times longer: messages from a past term arrive. */
  readonly messageDelayLongRate: number;
  /** Per step: start a partition (two-way split, one-way cut, or a few cut links); it heals after up to partitionTicksMax. */
  readonly partitionRate: number;
  readonly partitionTicksMax: number;
  /**
   * Share of crashes, pauses and one-way partitions aimed at the current
   * leader rather than a random node: leadership churn with half-replicated
   * entries is where commit rules (§5.4.2) are tested.
   */
  readonly leaderTargetRate: number;
  /**
   * Per new leader: chance that it crashes or goes mute (can receive, not
   * send) within a few steps of winning, before its entries replicate — the
   * Figure 8 shape (Raft paper §5.4.2).
   */
  readonly leaderChurnRate: number;
  /** Per step: crash a random running node; it restarts after 1..downTicksMax ticks. */
  readonly crashRate: number;
  /** Per Ready stage boundary: crash right there (between send and persist, persist and send, apply and advance...). */
  readonly crashInReadyRate: number;
  readonly downTicksMax: number;
  /**
   * Per step: pause a running node (a GC or VM stall) for 1..pauseTicksMax
   * ticks: it neither ticks nor handles messages nor finishes its Ready. On
   * resuming it first catches up the ticks it missed, as a shell whose tick
   * loop follows a monotonic clock does (leases depend on it).
   */
  readonly pauseRate: number;
  readonly pauseTicksMax: number;
  /** Per Ready stage boundary: stop and resume on a later step (a slow disk or apply), so messages and ticks interleave. */
  readonly readyStallRate: number;
  /** Per step: a node snapshots its state machine at its applied index and compacts its log. */
  readonly compactRate: number;
  /** Per step: the operator proposes a membership change on the leader. */
  readonly membershipRate: number;
  /** Per step: the leader is asked to transfer leadership. */
  readonly transferRate: number;
  /** Per step: a random voter campaigns out of turn. */
  readonly campaignRate: number;
  /** Per step: a client proposes a fresh value on a random node. */
  readonly proposeRate: number;
  /** Per step: a client issues a linearizable read on a random node. */
  readonly readRate: number;
}

const BASE: FaultProfile = {
  name: 'base',
  messageDropRate: 0,
  messageDuplicateRate: 0,
  messageDelayRate: 0,
  messageDelayStepsMax: 0,
  messageDelayLongRate: 0,
  partitionRate: 0,
  partitionTicksMax: 0,
  leaderTargetRate: 0.3,
  leaderChurnRate: 0,
  crashRate: 0,
  crashInReadyRate: 0,
  downTicksMax: 0,
  pauseRate: 0,
  pauseTicksMax: 0,
  readyStallRate: 0.05,
  compactRate: 0.004,
  membershipRate: 0,
  transferRate: 0.001,
  campaignRate: 0,
  proposeRate: 0.15,
  readRate: 0.1,
};

/**
 * The profiles CI rotates through. Each stresses one kind of fault hard and
 * `chaos` mixes them all; `membership` keeps the others mild so that changes
 * actually commit.
 */
export const PROFILES: readonly FaultProfile[] = [
  { ...BASE, name: 'calm', messageDropRate: 0.01, messageDelayRate: 0.05, messageDelayStepsMax: 8, campaignRate: 0.0005 },
  {
    ...BASE,
    name: 'lossy',
    messageDropRate: 0.12,
    messageDuplicateRate: 0.06,
    messageDelayRate: 0.25,
    messageDelayStepsMax: 40,
    messageDelayLongRate: 0.05,
    readyStallRate: 0.15,
    campaignRate: 0.001,
  },
  {
    ...BASE,
    name: 'partitions',
    messageDropRate: 0.02,
    messageDelayRate: 0.05,
    messageDelayStepsMax: 12,
    partitionRate: 0.006,
    partitionTicksMax: 60,
    pauseRate: 0.001,
    pauseTicksMax: 30,
    transferRate: 0.002,
    campaignRate: 0.001,
  },
  {
    ...BASE,
    name: 'crashes',
    messageDropRate: 0.03,
    messageDelayRate: 0.1,
    messageDelayStepsMax: 16,
    crashRate: 0.003,
    crashInReadyRate: 0.003,
    downTicksMax: 50,
    pauseRate: 0.001,
    pauseTicksMax: 30,
    readyStallRate: 0.2,
    compactRate: 0.008,
  },
  {
    ...BASE,
    name: 'membership',
    messageDropRate: 0.02,
    messageDelayRate: 0.05,
    messageDelayStepsMax: 8,
    crashRate: 0.001,
    crashInReadyRate: 0.001,
    downTicksMax: 30,
    partitionRate: 0.001,
    partitionTicksMax: 30,
    compactRate: 0.01,
    membershipRate: 0.03,
    transferRate: 0.002,
  },
  {
    ...BASE,
    name: 'chaos',
    messageDropRate: 0.06,
    messageDuplicateRate: 0.04,
    messageDelayRate: 0.15,
    messageDelayStepsMax: 30,
    messageDelayLongRate: 0.05,
    partitionRate: 0.003,
    partitionTicksMax: 50,
    crashRate: 0.002,
    crashInReadyRate: 0.002,
    downTicksMax: 40,
    pauseRate: 0.001,
    pauseTicksMax: 30,
    readyStallRate: 0.15,
    compactRate: 0.008,
    membershipRate: 0.01,
    transferRate: 0.003,
    campaignRate: 0.001,
    leaderChurnRate: 0.1,
  },
  {
    ...BASE,
    name: 'churn',
    messageDropRate: 0.03,
    messageDelayRate: 0.1,
    messageDelayStepsMax: 12,
    leaderTargetRate: 0.7,
    leaderChurnRate: 0.6,
    crashRate: 0.003,
    crashInReadyRate: 0.002,
    downTicksMax: 15,
    pauseRate: 0.002,
    pauseTicksMax: 15,
    partitionRate: 0.003,
    partitionTicksMax: 15,
    readyStallRate: 0.2,
    transferRate: 0.004,
    campaignRate: 0.002,
  },
];

export function profileByName(name: string): FaultProfile {
  const p = PROFILES.find((x) => x.name === name);
  if (p === undefined) throw new RangeError(`unknown fault profile ${JSON.stringify(name)} (known: ${PROFILES.map((x) => x.name).join(', ')})`);
  return p;
}

/** Raft options a run uses; varied per seed so flow control, batching and caps get exercised. */
export interface SimRaftOptions {
  readonly checkQuorum: boolean;
  readonly preVote: boolean;
  readonly readMode: ReadMode;
  readonly electionTimeoutTicks: number;
  readonly heartbeatIntervalTicks: number;
  readonly appendBytesMax: number;
  readonly inflightCountMax: number;
  readonly inflightBytesMax: number;
  readonly uncommittedBytesMax: number;
  readonly applyBytesMax: number;
}

/**
 * A deliberately broken shell, to prove the checker can fail:
 * `sendBeforePersist` sends `messagesAfterPersist` (votes, acks) before the
 * Ready's writes are durable and crashes often in that window.
 */
export type ShellBug = 'none' | 'sendBeforePersist';

export interface SimOptions {
  readonly seed: number;
  readonly nodeCount: number;
  readonly profile: FaultProfile;
  readonly raft: SimRaftOptions;
  /** Ticks of the fault phase. */
  readonly faultTicks: number;
  /** After healing: ticks within which a leader must commit a fresh proposal (and serve a read) on every live node. */
  readonly livenessTicksMax: number;
  readonly shellBug: ShellBug;
}

/** Simulator steps per tick: a message takes one step, so a round trip is half a tick. */
export const STEPS_PER_TICK = 4;

/** Fault-phase length CI uses; see test/README.md for how it was tuned against the time budget. */
export const DEFAULT_FAULT_TICKS = 1000;

/**
 * 40 election timeouts: after healing, every crashed node restarts, and a
 * node added late may need a fresh snapshot that includes it. A wide margin
 * over the slowest recovery long seed sweeps show, so a seed that fails here
 * is stuck, not slow.
 */
export const DEFAULT_LIVENESS_TICKS_MAX = 400;

export interface SimOverrides {
  readonly nodeCount?: number;
  readonly profile?: FaultProfile;
  readonly faultTicks?: number;
  readonly livenessTicksMax?: number;
  readonly shellBug?: ShellBug;
  readonly readMode?: ReadMode;
}

/** Mixes the seed so option choices do not correlate with the simulator's own stream. */
const OPTIONS_STREAM_SALT = 0x5eed0f7;

/**
 * Derives a run from its seed. The profile rotates with the seed so that
 * consecutive seeds cover every profile; everything else is drawn from a
 * stream of the seed. Overrides (from the environment or a test) win.
 */
export function optionsForSeed(seed: number, overrides: SimOverrides = {}): SimOptions {
  const rng = new SeededRng((seed ^ OPTIONS_STREAM_SALT) >>> 0);
  const profile = overrides.profile ?? PROFILES[seed % PROFILES.length]!;
  // Most runs use the production defaults (check-quorum, pre-vote); a few turn them off.
  const checkQuorum = !rng.chance(0.1);
  const preVote = !rng.chance(0.15);
  const leaseWanted = rng.chance(0.3);
  const readMode: ReadMode = overrides.readMode ?? (leaseWanted && checkQuorum ? 'lease' : 'safe');
  const small = rng.chance(0.4);
  const raft: SimRaftOptions = {
    checkQuorum: checkQuorum || readMode === 'lease',
    preVote,
    readMode,
    electionTimeoutTicks: 10,
    heartbeatIntervalTicks: 1,
    // Small limits force batching, window stalls and capped proposals in some runs.
    appendBytesMax: small ? 64 + rng.intBelow(256) : 1 << 20,
    inflightCountMax: small ? 1 + rng.intBelow(4) : 256,
    inflightBytesMax: small ? 4096 : 32 << 20,
    uncommittedBytesMax: small ? 200 + rng.intBelow(400) : 64 << 20,
    applyBytesMax: small ? 32 + rng.intBelow(128) : 64 << 20,
  };
  return {
    seed,
    nodeCount: overrides.nodeCount ?? 3,
    profile,
    raft,
    faultTicks: overrides.faultTicks ?? DEFAULT_FAULT_TICKS,
    livenessTicksMax: overrides.livenessTicksMax ?? DEFAULT_LIVENESS_TICKS_MAX,
    shellBug: overrides.shellBug ?? 'none',
  };
}

/** One line naming everything a run depends on, for failure reports. */
export function describeOptions(o: SimOptions): string {
  const r = o.raft;
  return (
    `seed=${o.seed} nodes=${o.nodeCount} profile=${o.profile.name} faultTicks=${o.faultTicks} shellBug=${o.shellBug} ` +
    `checkQuorum=${r.checkQuorum} preVote=${r.preVote} readMode=${r.readMode} appendBytesMax=${r.appendBytesMax} ` +
    `inflightCountMax=${r.inflightCountMax} uncommittedBytesMax=${r.uncommittedBytesMax} applyBytesMax=${r.applyBytesMax}`
  );
}

/** The environment command that replays a run. */
export function replayCommand(o: SimOptions): string {
  const parts = [`FLOTILLA_SEED=${o.seed}`, `FLOTILLA_SIM_NODES=${o.nodeCount}`, `FLOTILLA_SIM_PROFILE=${o.profile.name}`];
  if (o.faultTicks !== DEFAULT_FAULT_TICKS) parts.push(`FLOTILLA_SIM_TICKS=${o.faultTicks}`);
  if (o.shellBug !== 'none') parts.push(`FLOTILLA_SIM_SHELL_BUG=${o.shellBug}`);
  return `cd test && ${parts.join(' ')} FLOTILLA_SIM_TRACE=1 npx vitest run test/sim.test.ts`;
}
