// What placement learns from a core: a RangeReport (placement's heartbeat
// record) per shard led here, with the sizes and load behind its split decisions.
import type { NodeId } from '@flotilla/core';
import type { RangeReport } from '@flotilla/placement';
import { isInitialized } from '../kv/range.js';
import type { KvStateMachine } from '../kv/state-machine.js';
import type { Group } from './group.js';

type Scanner = Pick<KvStateMachine, 'scan'>;

/** A report for every live group led here; a size split key only for ranges of at least `splitKeyMinBytes`. */
export function rangeReports(groups: Iterable<Group>, sm: Scanner, options: { self: NodeId; splitKeyMinBytes: number }): RangeReport[] {
  const reports: RangeReport[] = [];
  for (const g of groups) if (!g.removed && g.isLeader) reports.push(rangeReportOf(g, sm, options));
  return reports;
}

/** The report of one group led here. */
export function rangeReportOf(g: Group, sm: Scanner, options: { self: NodeId; splitKeyMinBytes: number }): RangeReport {
  const r = g.raw.raft;
  const conf = r.tracker.confState();
  const progress: { nodeId: number; match: number }[] = [];
  r.tracker.visit((id, p) => {
    if (id !== options.self) progress.push({ nodeId: id, match: p.match });
  });
  const sizes = sizesOf(g, sm);
  const sizeSplitKey = sizes.sizeBytes >= options.splitKeyMinBytes && sizes.keyCount >= 2 ? middleKey(g, sm, sizes.keyCount) : undefined;
  const loadSplitKey = g.loadSplitKey();
  return {
    rangeId: g.id,
    start: g.bounds.start,
    end: g.bounds.end,
    epoch: g.bounds.epoch,
    term: r.term,
    voters: [...conf.voters],
    votersOutgoing: [...conf.votersOutgoing],
    learners: [...conf.learners, ...conf.learnersNext],
    lastIndex: r.log.lastIndex(),
    progress,
    keyCount: sizes.keyCount,
    sizeBytes: sizes.sizeBytes,
    writeCount: g.writeCount,
    readCount: g.readCount,
    ...(sizeSplitKey === undefined ? {} : { sizeSplitKey }),
    ...(loadSplitKey === undefined ? {} : { loadSplitKey }),
    ...(g.frozen === undefined ? {} : { frozen: { targetRangeId: g.frozen.targetShardId, index: g.frozen.index, term: g.frozen.term, epoch: g.frozen.epoch } }),
  };
}

/** The group's keys and bytes: counted once by a scan of its range, then kept current by each apply (ApplyPlan.afterApply). */
function sizesOf(g: Group, sm: Scanner): { keyCount: number; sizeBytes: number } {
  if (g.sizes !== undefined) return g.sizes;
  let keyCount = 0;
  let sizeBytes = 0;
  if (isInitialized(g.bounds)) {
    for (const p of sm.scan({ start: g.bounds.start, end: g.bounds.end ?? undefined, limit: Number.MAX_SAFE_INTEGER })) {
      keyCount++;
      sizeBytes += p.key.byteLength + p.value.byteLength;
    }
  }
  g.sizes = { keyCount, sizeBytes };
  return g.sizes;
}

/** The key halfway through the range's data, never its start key (a split there would leave an empty half). */
function middleKey(g: Group, sm: Scanner, keyCount: number): Uint8Array | undefined {
  for (const p of sm.scan({ start: g.bounds.start, end: g.bounds.end ?? undefined, limit: 1, offset: keyCount >> 1 })) {
    if (Buffer.compare(p.key, g.bounds.start) > 0) return p.key;
  }
  return undefined;
}
