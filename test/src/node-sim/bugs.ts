/**
 * Deliberately broken builds (options.ts SimBug): each patches one
 * production method for the length of a run and returns what undoes it.
 * Patched on the prototypes the nodes of the run share (inline cores run in
 * this thread), the way a bad commit would change the code.
 */
import { RaftLog, RawNode, type Ready } from '@flotilla/core';
import { CoreLeases, NodeLeaseTable, NodeStore } from '@flotilla/shards';
import type { SimBug } from './options.js';

type Patch = () => () => void;

function patch<T extends object, K extends keyof T>(target: T, name: K, replacement: (original: T[K]) => T[K]): () => void {
  const original = target[name];
  target[name] = replacement(original);
  return () => {
    target[name] = original;
  };
}

interface RawNodeInternals {
  pending: Ready | undefined;
  raft: { role: string; log: { committed: number }; readStates: { index: number; context: string }[] };
}

const PATCHES: Record<Exclude<SimBug, 'none'>, Patch> = {
  // Acks and votes leave with the Ready's first messages, before its entries and hard state are durable.
  ackBeforePersist: () =>
    patch(RawNode.prototype, 'ready', (original) =>
      function (this: RawNode): Ready {
        const rd = original.call(this);
        if (rd.messagesAfterPersist.length === 0) return rd;
        const early: Ready = { ...rd, messages: [...rd.messages, ...rd.messagesAfterPersist], messagesAfterPersist: [] };
        (this as unknown as RawNodeInternals).pending = early;
        return early;
      },
    ),
  // A leader answers a ReadIndex at its commit index at once, without a round of heartbeats.
  staleLeaderRead: () =>
    patch(RawNode.prototype, 'readIndex', (original) =>
      function (this: RawNode, context: string): void {
        const raft = (this as unknown as RawNodeInternals).raft;
        if (raft.role !== 'leader') return original.call(this, context);
        raft.readStates.push({ index: raft.log.committed, context });
      },
    ),
  // Every persisted entry counts as committed for applying.
  applyBeforeCommit: () => {
    const undoNext = patch(RaftLog.prototype, 'nextCommittedEntries', () =>
      function (this: RaftLog): ReturnType<RaftLog['nextCommittedEntries']> {
        const log = this as unknown as { applied: number; committed: number; unstable: { snapshot?: unknown }; firstIndex(): number; lastIndex(): number; unstableEntries(): { index: number }[]; slice(lo: number, hi: number, max: number): ReturnType<RaftLog['nextCommittedEntries']>; applyBytesMax: number };
        if (log.unstable.snapshot !== undefined) return [];
        const stableLast = log.lastIndex() - log.unstableEntries().length;
        const lo = Math.max(log.applied + 1, log.firstIndex());
        const hi = Math.max(log.committed, stableLast) + 1;
        return lo >= hi ? [] : log.slice(lo, hi, log.applyBytesMax);
      },
    );
    const undoHas = patch(RaftLog.prototype, 'hasNextCommittedEntries', () =>
      function (this: RaftLog): boolean {
        return this.nextCommittedEntries().length > 0;
      },
    );
    const undoApplied = patch(RaftLog.prototype, 'appliedTo', () =>
      function (this: RaftLog, index: number): void {
        const log = this as unknown as { applied: number };
        if (index > log.applied) log.applied = index;
      },
    );
    return () => {
      undoApplied();
      undoHas();
      undoNext();
    };
  },
  // A node lease never runs out once granted (its epoch still checked): a leader cut off from its
  // followers answers reads under it after they elected another leader.
  // Both copies: the cores' (their lease reads) and the Host's (its local reads).
  leaseOutlivesPromise: () => {
    const undoCore = patch(CoreLeases.prototype, 'holds', () =>
      function (this: CoreLeases, voter: Parameters<CoreLeases['holds']>[0], mark: number): boolean {
        return this.ackMark(voter) === mark && mark > 1;
      },
    );
    const undoHost = patch(NodeLeaseTable.prototype, 'holdsIn', () =>
      function (this: NodeLeaseTable, peer: number, epoch: number): boolean {
        const p = (this as unknown as { peers: Map<number, { epoch: number }> }).peers.get(peer);
        return p !== undefined && p.epoch === epoch && epoch > 1;
      },
    );
    return () => {
      undoHost();
      undoCore();
    };
  },

  // A split's right half is created without the data it had: its keys' writes are gone.
  splitLosesRightHalf: () =>
    patch(NodeStore.prototype, 'writeShardRecords', (original) =>
      function (this: NodeStore, spec: Parameters<NodeStore['writeShardRecords']>[0]): void {
        original.call(this, spec);
        const d = spec.descriptor as [Uint8Array, Uint8Array | null, number] | undefined;
        if (spec.startAt !== undefined && d !== undefined) this.deleteData({ start: d[0], end: d[1] });
      },
    ),
};

/** Applies `bug` (nothing for 'none'); returns what restores the correct code. */
export function installBug(bug: SimBug): () => void {
  return bug === 'none' ? () => undefined : PATCHES[bug]();
}
