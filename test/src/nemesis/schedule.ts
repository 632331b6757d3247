/**
 * The nemesis's plan for one run, a pure function of the seed and the run's
 * shape: which faults, on which nodes and links, when and for how long, and
 * when the admin operations (split, move, leader transfer) are asked for.
 * Executing it (executor.ts) is wall-clock driven, so two runs of one seed
 * face the same faults at the same moments, not the same interleavings.
 */
import { SeededRng } from '@flotilla/core';

export const FAULT_KINDS = ['kill', 'pause', 'isolate', 'partition', 'one-way', 'slow', 'lossy', 'corrupt', 'alone', 'disk-full'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
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

function faultOf(rng: SeededRng, kind: FaultKind, nodeIds: readonly number[], diskNode: number | null): Fault {
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
  // Kinds in a shuffled cycle, so a short run meets as many different faults as fit.
  let cycle: FaultKind[] = [];
  let atMs = o.warmupMs;
  while (o.faults.length > 0) {
    if (cycle.length === 0) cycle = shuffled(rng, o.faults);
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
  return { seed: o.seed, nodeIds, episodes, admin, diskNode };
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

export function describeSchedule(s: Schedule): string[] {
  const lines = s.episodes.map((e) => `  ${(e.atMs / 1000).toFixed(1).padStart(7)} s  ${(e.durationMs / 1000).toFixed(1).padStart(5)} s  ${describeFault(e.fault)}`);
  for (const a of s.admin) lines.push(`  ${(a.atMs / 1000).toFixed(1).padStart(7)} s      -    ${a.kind}`);
  return lines.sort((a, b) => parseFloat(a) - parseFloat(b));
}
