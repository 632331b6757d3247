/**
 * The nemesis's plan for one run, a pure function of the seed and the run's
 * shape: which faults, on which nodes and links, when and for how long, and
 * when the admin operations (split, move, leader transfer) are asked for.
 * Executing it (executor.ts) is wall-clock driven, so two runs of one seed
 * face the same faults at the same moments, not the same interleavings.
 */
import { SeededRng } from '@flotilla/core';

export const FAULT_KINDS = ['kill', 'pause', 'isolate', 'partition', 'one-way', 'slow', 'lossy', 'corrupt', 'alone', 'disk-full', 'clock'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
/** The kinds planned as episodes one after another; `clock` has a track of its own (ClockEpisode). */
export type EpisodeKind = Exclude<FaultKind, 'clock'>;
export const EPISODE_KINDS = FAULT_KINDS.filter((k): k is EpisodeKind => k !== 'clock');
export const ADMIN_KINDS = ['split', 'move', 'transfer-leader'] as const;
export type AdminKind = (typeof ADMIN_KINDS)[number];

export type Fault =
  /** kill -9, restarted when the episode ends. */
  | { readonly kind: 'kill'; readonly node: number }
  /** SIGSTOP, SIGCONT when the episode ends. */
  | { readonly kind: 'pause'; readonly node: number }
  /** Every link to and from the node black-holed (its HTTP port still answers). */
  | { readonly kind: 'isolate'; readonly node: number }
  /** Links between the minority and the rest black-holed, both ways. */
  | { readonly kind: 'partition'; readonly minority: readonly number[] }
  /** `from` cannot reach `to` (its messages vanish or its connections are refused); the other way works. */
  | { readonly kind: 'one-way'; readonly from: number; readonly to: readonly number[]; readonly cut: 'blackhole' | 'refuse' }
  /** Delayed and throttled links. */
  | { readonly kind: 'slow'; readonly links: readonly Link[]; readonly delayMs: number; readonly bytesPerSecMax: number }
  /** Links whose connections are reset at random. */
  | { readonly kind: 'lossy'; readonly links: readonly Link[]; readonly resetChancePerSec: number }
  /** Links whose new connections carry a malformed frame after the hello. */
  | { readonly kind: 'corrupt'; readonly links: readonly Link[] }
  /** Every other node killed: the node is alone (no quorum anywhere); they restart when the episode ends. */
  | { readonly kind: 'alone'; readonly node: number }
  /** The node's data directory fills up; space returns when the episode ends. */
  | { readonly kind: 'disk-full'; readonly node: number };

export type Link = readonly [from: number, to: number];

/** What a clock episode does to the clock node's clock (clock.ts: libfaketime). */
export type ClockChange =
  /** Stepped by `deltaMs`, both clocks (wall and monotonic) at once; negative: back, and the node's timers wait until its clock has caught up. */
  | { readonly kind: 'step'; readonly deltaMs: number }
  /** Runs `rate` times as fast (timers and tick loop too) until the episode ends, then at the true rate again, keeping what it gained or lost. */
  | { readonly kind: 'rate'; readonly rate: number };

/**
 * A change of the clock node's clock. Clock episodes run on a track of their
 * own, one at a time, overlapping the other faults: a clock matters to a
 * lease when the network takes a promise away, so a clock that misbehaves
 * during a partition is the case to meet.
 */
export interface ClockEpisode {
  readonly atMs: number;
  /** A rate change lasts this long; after a step nothing else happens to the clock for this long (after a step back, at least until its timers run again). */
  readonly durationMs: number;
  readonly change: ClockChange;
  /** Met with a cut of the clock node (planClock): `GATHER_LEADS_BEFORE_MS` before it, the node is made leader of every user range it holds. */
  readonly gatherLeads: boolean;
}

/**
 * How long before a clock change met with a cut the clock node is made
 * leader: a transfer takes about 250 ms; much longer, and the placement
 * driver, balancing leaders, moves them away again first (seen at 1.7 s).
 */
export const GATHER_LEADS_BEFORE_MS = 800;

export interface Episode {
  readonly atMs: number;
  readonly durationMs: number;
  readonly fault: Fault;
}

export interface AdminAction {
  readonly atMs: number;
  readonly kind: AdminKind;
  /** Picks the range and nodes among those the cluster has when the action runs. */
  readonly pick: number;
}

export interface Schedule {
  readonly seed: number;
  readonly nodeIds: readonly number[];
  /** One after another, never overlapping; each healed before the next starts. */
  readonly episodes: readonly Episode[];
  readonly admin: readonly AdminAction[];
  /** The node whose data directory sits on a small filesystem (disk-full episodes), if any. */
  readonly diskNode: number | null;
  /** The node whose process runs under libfaketime (clock faults), if any. */
  readonly clockNode: number | null;
  /** Changes of the clock node's clock, one after another; overlapping the episodes. */
  readonly clockEpisodes: readonly ClockEpisode[];
}

export interface ScheduleOptions {
  readonly seed: number;
  readonly nodeCount: number;
  /** The fault phase: episodes start after `warmupMs` and end by `durationMs`. */
  readonly durationMs: number;
  readonly warmupMs: number;
  readonly faults: readonly FaultKind[];
  readonly admin: readonly AdminKind[];
}

/**
 * Episode lengths. Short runs (CI's ~30 s) fit several faults; long ones
 * hold faults long enough for elections, repairs, snapshots and leaks to
 * show, and keep a node alone for a minute: long past every timeout it
 * meets (elections, request deadlines, the placement driver's down timeout),
 * so a node without a quorum must stay bounded however long that lasts.
 */
const LONG_RUN_MS = 5 * 60_000;
const SHORT = { episodeMs: [2_000, 6_000], gapMs: [500, 2_000], aloneMs: [4_000, 7_000] } as const;
const LONG = { episodeMs: [4_000, 30_000], gapMs: [1_000, 10_000], aloneMs: [60_000, 60_000] } as const;
/** Admin actions per minute of fault phase (at least one of each kind asked for). */
const ADMIN_ACTIONS_PER_MIN = 4;
/**
 * The clock track. A peer whose clock stepped or ran fast gives no lease
 * until its clock was measured sound over 10 s again (shards/src/host/
 * node-leases.ts RATE_WINDOW_LONG_MS), so clock changes come 8–14 s apart:
 * most of them meet leases in force. The first waits for the nodes to have
 * measured each other (they start a few seconds before the run's clock).
 * Fast rates of 2 and 3 outrun the leases' 25 % drift margin, 1.5 does not;
 * slow ones of 0.5 make a leader's lease outlast the promise behind it if
 * nothing measured the rates. A step back holds the node's timers for its
 * length, so it is no longer than the episode.
 *
 * A clock threatens a lease when the leader's clock would stretch it and
 * the leader is cut off from the rest, who elect another and write (2.5–3 s
 * after the cut on this suite's clusters). A step back does it best: it
 * also holds the leader's timers, so it does not step down for want of a
 * quorum meanwhile and answers reads for as long as it believes its lease.
 * So when an episode cutting the clock node off (isolate, or a partition
 * with it in the minority) for at least `snapCutMinMs` starts within
 * `snapMs` of where a clock change would come, the change moves to just
 * after the cut's start (`cutOffsetMs`: within the lease the leader held
 * when cut off, and before it steps down for want of a quorum) and is a
 * step back of `snapStepBackMs`; the clock node is made leader of every
 * range shortly before, so the lease at stake is one the workload reads
 * under. Then no peer's segment reaches the leader to show it the step:
 * nothing but the lease check itself stands between a stretched lease and
 * a stale read. (Unsnapped steps come with the network whole, where the
 * peers' next segments show the step too.)
 */
const CLOCK_SHORT = { firstMs: 8_000, gapMs: [8_000, 14_000], snapMs: 6_000, snapCutMinMs: 4_000, cutOffsetMs: [0, 300], snapStepBackMs: [4_000, 8_000], episodeMs: [2_000, 6_000], stepForwardMs: [1_000, 30_000], stepBackMs: [500, 4_000] } as const;
const CLOCK_LONG = { firstMs: 8_000, gapMs: [8_000, 20_000], snapMs: 15_000, snapCutMinMs: 4_000, cutOffsetMs: [0, 300], snapStepBackMs: [4_000, 25_000], episodeMs: [4_000, 30_000], stepForwardMs: [1_000, 120_000], stepBackMs: [500, 25_000] } as const;
const CLOCK_RATES_FAST = [1.5, 2, 3] as const;
const CLOCK_RATES_SLOW = [0.5, 0.7] as const;
/** After a step back: time for the node's timers to run again before the next change. */
const CLOCK_STEP_BACK_SETTLE_MS = 1_000;
/** Forks the clock track's randomness, so adding `clock` leaves a seed's other episodes as they were. */
const CLOCK_SEED_SALT = 0x85ebca6b;

const between = (rng: SeededRng, [lo, hi]: readonly [number, number]) => lo + rng.intBelow(hi - lo + 1);

function shuffled<T>(rng: SeededRng, items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = rng.intBelow(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

function pick<T>(rng: SeededRng, items: readonly T[]): T {
  return items[rng.intBelow(items.length)]!;
}

function someLinks(rng: SeededRng, nodeIds: readonly number[]): Link[] {
  const all: Link[] = nodeIds.flatMap((a) => nodeIds.filter((b) => b !== a).map((b) => [a, b] as const));
  return shuffled(rng, all).slice(0, 1 + rng.intBelow(Math.max(1, Math.floor(all.length / 2))));
}

function faultOf(rng: SeededRng, kind: EpisodeKind, nodeIds: readonly number[], diskNode: number | null): Fault {
  const node = pick(rng, nodeIds);
  switch (kind) {
    case 'kill':
    case 'pause':
    case 'isolate':
    case 'alone':
      return { kind, node };
    case 'partition': {
      // A minority: at most (n - 1) / 2 nodes, at least one.
      const size = 1 + rng.intBelow(Math.max(1, Math.floor((nodeIds.length - 1) / 2)));
      return { kind, minority: shuffled(rng, nodeIds).slice(0, size).sort((a, b) => a - b) };
    }
    case 'one-way': {
      const others = nodeIds.filter((n) => n !== node);
      const to = rng.chance(0.5) ? others : [pick(rng, others)];
      return { kind, from: node, to, cut: rng.chance(0.5) ? 'blackhole' : 'refuse' };
    }
    case 'slow':
      return { kind, links: someLinks(rng, nodeIds), delayMs: between(rng, [20, 300]), bytesPerSecMax: between(rng, [64, 1024]) * 1024 };
    case 'lossy':
      return { kind, links: someLinks(rng, nodeIds), resetChancePerSec: between(rng, [1, 5]) };
    case 'corrupt':
      return { kind, links: someLinks(rng, nodeIds) };
    case 'disk-full':
      return { kind, node: diskNode! };
  }
}

export function planSchedule(o: ScheduleOptions): Schedule {
  if (!Number.isSafeInteger(o.nodeCount) || o.nodeCount < 3) throw new RangeError(`a fault run needs at least 3 nodes, got ${o.nodeCount}`);
  const rng = new SeededRng(o.seed);
  const nodeIds = Array.from({ length: o.nodeCount }, (_, i) => i + 1);
  const shape = o.durationMs >= LONG_RUN_MS ? LONG : SHORT;
  const diskNode = o.faults.includes('disk-full') ? pick(rng, nodeIds) : null;
  const episodes: Episode[] = [];
  const episodeKinds = o.faults.filter((k): k is EpisodeKind => k !== 'clock');
  // Kinds in a shuffled cycle, so a short run meets as many different faults as fit.
  let cycle: EpisodeKind[] = [];
  let atMs = o.warmupMs;
  while (episodeKinds.length > 0) {
    if (cycle.length === 0) cycle = shuffled(rng, episodeKinds);
    const kind = cycle.pop()!;
    const durationMs = between(rng, kind === 'alone' ? shape.aloneMs : shape.episodeMs);
    if (atMs + durationMs > o.durationMs) break;
    episodes.push({ atMs, durationMs, fault: faultOf(rng, kind, nodeIds, diskNode) });
    atMs += durationMs + between(rng, shape.gapMs);
  }
  const faultPhaseMs = Math.max(0, o.durationMs - o.warmupMs);
  const admin: AdminAction[] = [];
  if (o.admin.length > 0 && faultPhaseMs > 0) {
    const count = Math.max(o.admin.length, Math.round((faultPhaseMs / 60_000) * ADMIN_ACTIONS_PER_MIN));
    const kinds = [...o.admin, ...Array.from({ length: count - o.admin.length }, () => pick(rng, o.admin))];
    for (const kind of kinds) admin.push({ atMs: o.warmupMs + rng.intBelow(faultPhaseMs), kind, pick: rng.nextUint32() });
    admin.sort((a, b) => a.atMs - b.atMs);
  }
  const clock = o.faults.includes('clock') ? planClock(new SeededRng(o.seed ^ CLOCK_SEED_SALT), nodeIds, episodes, o) : { node: null, episodes: [] };
  return { seed: o.seed, nodeIds, episodes, admin, diskNode, clockNode: clock.node, clockEpisodes: clock.episodes };
}

function cutsOff(f: Fault, node: number): boolean {
  return (f.kind === 'isolate' && f.node === node) || (f.kind === 'partition' && f.minority.includes(node));
}

function planClock(rng: SeededRng, nodeIds: readonly number[], others: readonly Episode[], o: ScheduleOptions): { node: number; episodes: ClockEpisode[] } {
  const node = pick(rng, nodeIds);
  const shape = o.durationMs >= LONG_RUN_MS ? CLOCK_LONG : CLOCK_SHORT;
  const cuts = others.filter((e) => cutsOff(e.fault, node) && e.durationMs >= shape.snapCutMinMs).map((e) => e.atMs);
  const episodes: ClockEpisode[] = [];
  // The four changes in a shuffled cycle, as the episodes' kinds (but one met with a cut: see CLOCK_SHORT).
  const kinds = ['forward', 'back', 'fast', 'slow'] as const;
  let cycle: (typeof kinds)[number][] = [];
  let earliestMs = Math.max(o.warmupMs, shape.firstMs);
  let atMs = earliestMs;
  for (;;) {
    const cut = cuts.find((c) => c >= atMs && c <= atMs + shape.snapMs);
    let kind: (typeof kinds)[number] | 'cut-back';
    if (cut !== undefined) {
      atMs = Math.max(earliestMs, cut + between(rng, shape.cutOffsetMs));
      kind = 'cut-back';
    } else {
      if (cycle.length === 0) cycle = shuffled(rng, kinds);
      kind = cycle.pop()!;
    }
    let durationMs = between(rng, shape.episodeMs);
    let change: ClockChange;
    switch (kind) {
      case 'cut-back': {
        const backMs = between(rng, shape.snapStepBackMs);
        durationMs = Math.max(durationMs, backMs + CLOCK_STEP_BACK_SETTLE_MS);
        change = { kind: 'step', deltaMs: -backMs };
        break;
      }
      case 'forward':
        change = { kind: 'step', deltaMs: between(rng, shape.stepForwardMs) };
        break;
      case 'back': {
        const backMs = between(rng, shape.stepBackMs);
        durationMs = Math.max(durationMs, backMs + CLOCK_STEP_BACK_SETTLE_MS);
        change = { kind: 'step', deltaMs: -backMs };
        break;
      }
      case 'fast':
        change = { kind: 'rate', rate: pick(rng, CLOCK_RATES_FAST) };
        break;
      case 'slow':
        change = { kind: 'rate', rate: pick(rng, CLOCK_RATES_SLOW) };
        break;
    }
    if (atMs + durationMs > o.durationMs) break;
    episodes.push({ atMs, durationMs, change, gatherLeads: kind === 'cut-back' });
    earliestMs = atMs + durationMs + shape.gapMs[0];
    atMs += durationMs + between(rng, shape.gapMs);
  }
  return { node, episodes };
}

export function describeFault(f: Fault): string {
  const links = (ls: readonly Link[]) => ls.map(([a, b]) => `${a}→${b}`).join(' ');
  switch (f.kind) {
    case 'kill':
      return `kill -9 node ${f.node}, restart after`;
    case 'pause':
      return `SIGSTOP node ${f.node}, SIGCONT after`;
    case 'isolate':
      return `isolate node ${f.node}`;
    case 'partition':
      return `partition {${f.minority.join(',')}} from the rest`;
    case 'one-way':
      return `one-way ${f.cut} ${f.from}→{${f.to.join(',')}}`;
    case 'slow':
      return `slow links ${links(f.links)} (+${f.delayMs} ms, ${Math.round(f.bytesPerSecMax / 1024)} KiB/s)`;
    case 'lossy':
      return `lossy links ${links(f.links)} (${f.resetChancePerSec} resets/s)`;
    case 'corrupt':
      return `corrupt frames on ${links(f.links)}`;
    case 'alone':
      return `node ${f.node} alone (every other node killed, restarted after)`;
    case 'disk-full':
      return `disk full on node ${f.node}`;
  }
}

export function describeClockChange(node: number, c: ClockChange): string {
  switch (c.kind) {
    case 'step':
      return `clock of node ${node} stepped ${c.deltaMs >= 0 ? 'forward' : 'back'} ${(Math.abs(c.deltaMs) / 1000).toFixed(1)} s`;
    case 'rate':
      return `clock of node ${node} runs x${c.rate}, true rate after`;
  }
}

export function describeSchedule(s: Schedule): string[] {
  const at = (e: { atMs: number; durationMs: number }) => `  ${(e.atMs / 1000).toFixed(1).padStart(7)} s  ${(e.durationMs / 1000).toFixed(1).padStart(5)} s  `;
  const lines = s.episodes.map((e) => `${at(e)}${describeFault(e.fault)}`);
  for (const e of s.clockEpisodes) {
    lines.push(`${at(e)}${describeClockChange(s.clockNode!, e.change)}`);
    if (e.gatherLeads) lines.push(`  ${((e.atMs - GATHER_LEADS_BEFORE_MS) / 1000).toFixed(1).padStart(7)} s      -    node ${s.clockNode} made leader of every range it holds`);
  }
  for (const a of s.admin) lines.push(`  ${(a.atMs / 1000).toFixed(1).padStart(7)} s      -    ${a.kind}`);
  return lines.sort((a, b) => parseFloat(a) - parseFloat(b));
}
