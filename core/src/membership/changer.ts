import { assert } from '../assert.js';
import { InvalidConfChangeError } from '../errors.js';
import { Progress } from '../progress/progress.js';
import { NO_NODES, emptyTrackerConfig, type ProgressMap, type TrackerConfig } from '../progress/tracker.js';
import { JointConfig, MajorityConfig } from '../quorum/quorum.js';
import type { ConfChangeSingle, ConfState, LogIndex, NodeId } from '../types.js';

/** The outcome of a change: a new config and progress map, applied by the caller as a unit. */
export interface ChangeResult {
  readonly config: TrackerConfig;
  readonly progress: ProgressMap;
}

interface MutableConfig {
  incoming: Set<NodeId>;
  outgoing: Set<NodeId>;
  learners: Set<NodeId>;
  learnersNext: Set<NodeId>;
  autoLeave: boolean;
}

/**
 * Computes configuration transitions (etcd-raft's confchange.Changer). Every
 * method works on copies and either returns a complete, invariant-checked
 * result or throws InvalidConfChangeError leaving the input untouched.
 */
export class Changer {
  constructor(
    private readonly current: ChangeResult,
    private readonly lastIndex: LogIndex,
    private readonly newProgress: (options: { next: LogIndex; isLearner: boolean }) => Progress,
  ) {}

  /** Enters a joint config: the incoming half gets `changes`, the outgoing half is the current voters. */
  enterJoint(autoLeave: boolean, changes: readonly ConfChangeSingle[]): ChangeResult {
    const { cfg, progress } = this.checkAndCopy();
    if (cfg.outgoing.size > 0) throw new InvalidConfChangeError('config is already joint');
    if (cfg.incoming.size === 0) throw new InvalidConfChangeError("can't make a zero-voter config joint");
    cfg.outgoing = new Set(cfg.incoming);
    this.apply(cfg, progress, changes);
    cfg.autoLeave = autoLeave;
    return this.checkAndReturn(cfg, progress);
  }

  /** Leaves a joint config: drops the outgoing half, turns `learnersNext` into learners. */
  leaveJoint(): ChangeResult {
    const { cfg, progress } = this.checkAndCopy();
    if (cfg.outgoing.size === 0) throw new InvalidConfChangeError("can't leave a non-joint config");
    for (const id of cfg.learnersNext) {
      cfg.learners.add(id);
      progress.get(id)!.isLearner = true;
    }
    cfg.learnersNext.clear();
    for (const id of cfg.outgoing) {
      if (!cfg.incoming.has(id) && !cfg.learners.has(id)) progress.delete(id);
    }
    cfg.outgoing.clear();
    cfg.autoLeave = false;
    return this.checkAndReturn(cfg, progress);
  }

  /** A change that moves at most one voter, applied without a joint phase (Raft §6 / thesis §4.1). */
  simple(changes: readonly ConfChangeSingle[]): ChangeResult {
    const { cfg, progress } = this.checkAndCopy();
    if (cfg.outgoing.size > 0) throw new InvalidConfChangeError("can't apply a simple config change in a joint config");
    const before = new Set(cfg.incoming);
    this.apply(cfg, progress, changes);
    let changed = 0;
    for (const id of before) if (!cfg.incoming.has(id)) changed++;
    for (const id of cfg.incoming) if (!before.has(id)) changed++;
    if (changed > 1) throw new InvalidConfChangeError('more than one voter changed without entering a joint config');
    return this.checkAndReturn(cfg, progress);
  }

  private apply(cfg: MutableConfig, progress: ProgressMap, changes: readonly ConfChangeSingle[]): void {
    for (const change of changes) {
      if (change.nodeId === 0) continue; // etcd-raft ignores id 0 ("none"); so do we.
      switch (change.type) {
        case 'addNode':
          this.makeVoter(cfg, progress, change.nodeId);
          break;
        case 'addLearner':
          this.makeLearner(cfg, progress, change.nodeId);
          break;
        case 'removeNode':
          this.remove(cfg, progress, change.nodeId);
          break;
        default: {
          const never: never = change.type;
          throw new InvalidConfChangeError(`unknown change type ${String(never)}`);
        }
      }
    }
    if (cfg.incoming.size === 0) throw new InvalidConfChangeError('removed all voters');
  }

  private makeVoter(cfg: MutableConfig, progress: ProgressMap, id: NodeId): void {
    const p = progress.get(id);
    if (p === undefined) {
      this.initProgress(cfg, progress, id, false);
      return;
    }
    p.isLearner = false;
    cfg.learners.delete(id);
    cfg.learnersNext.delete(id);
    cfg.incoming.add(id);
  }

  /**
   * Makes `id` a learner. A voter of the outgoing config cannot become a learner
   * while joint (it still votes there), so it is staged in `learnersNext`.
   */
  private makeLearner(cfg: MutableConfig, progress: ProgressMap, id: NodeId): void {
    const p = progress.get(id);
    if (p === undefined) {
      this.initProgress(cfg, progress, id, true);
      return;
    }
    if (p.isLearner) return;
    this.remove(cfg, progress, id);
    progress.set(id, p); // keep the replication state: the node is still caught up
    if (cfg.outgoing.has(id)) {
      cfg.learnersNext.add(id);
    } else {
      p.isLearner = true;
      cfg.learners.add(id);
    }
  }

  private remove(cfg: MutableConfig, progress: ProgressMap, id: NodeId): void {
    if (!progress.has(id)) return;
    cfg.incoming.delete(id);
    cfg.learners.delete(id);
    cfg.learnersNext.delete(id);
    // A voter of the outgoing config keeps its progress until the joint config is left.
    if (!cfg.outgoing.has(id)) progress.delete(id);
  }

  private initProgress(cfg: MutableConfig, progress: ProgressMap, id: NodeId, isLearner: boolean): void {
    if (isLearner) cfg.learners.add(id);
    else cfg.incoming.add(id);
    // Probe from the leader's last index; new peers count as active so check-quorum does not fire at once.
    const p = this.newProgress({ next: Math.max(this.lastIndex, 1), isLearner });
    p.recentActive = true;
    progress.set(id, p);
  }

  private checkAndCopy(): { cfg: MutableConfig; progress: ProgressMap } {
    const c = this.current.config;
    const cfg: MutableConfig = {
      incoming: new Set(c.voters.incoming.voters),
      outgoing: new Set(c.voters.outgoing.voters),
      learners: new Set(c.learners),
      learnersNext: new Set(c.learnersNext),
      autoLeave: c.autoLeave,
    };
    const progress: ProgressMap = new Map();
    for (const [id, p] of this.current.progress) progress.set(id, cloneProgress(p));
    checkInvariants(cfg, progress);
    return { cfg, progress };
  }

  private checkAndReturn(cfg: MutableConfig, progress: ProgressMap): ChangeResult {
    checkInvariants(cfg, progress);
    return {
      config: {
        voters: new JointConfig(MajorityConfig.of(cfg.incoming), MajorityConfig.of(cfg.outgoing)),
        autoLeave: cfg.autoLeave,
        // Empty sets shared, as MajorityConfig.EMPTY: most groups have no learners (~180 B a replica).
        learners: cfg.learners.size === 0 ? NO_NODES : cfg.learners,
        learnersNext: cfg.learnersNext.size === 0 ? NO_NODES : cfg.learnersNext,
      },
      progress,
    };
  }
}

function cloneProgress(p: Progress): Progress {
  const c = Object.create(Progress.prototype) as Progress;
  Object.assign(c, p);
  (c as { inflights: Progress['inflights'] }).inflights = p.inflights.clone();
  return c;
}

/** The structural invariants of a config and its progress map (assertions: a violation is our bug). */
function checkInvariants(cfg: MutableConfig, progress: ProgressMap): void {
  for (const ids of [cfg.incoming, cfg.outgoing, cfg.learners, cfg.learnersNext]) {
    for (const id of ids) assert(progress.has(id), () => `node ${id} is in the config but has no progress`);
  }
  for (const id of cfg.learnersNext) {
    assert(cfg.outgoing.has(id), () => `learnersNext ${id} is not in the outgoing config`);
    assert(!progress.get(id)!.isLearner, () => `learnersNext ${id} is already marked learner`);
  }
  for (const id of cfg.learners) {
    assert(!cfg.outgoing.has(id), () => `learner ${id} is in the outgoing config`);
    assert(!cfg.incoming.has(id), () => `learner ${id} is in the incoming config`);
    assert(progress.get(id)!.isLearner, () => `learner ${id} is not marked learner`);
  }
  if (cfg.outgoing.size === 0) {
    assert(cfg.learnersNext.size === 0, 'learnersNext set outside a joint config');
    assert(!cfg.autoLeave, 'autoLeave set outside a joint config');
  }
}

/**
 * Rebuilds a tracker from a persisted ConfState by replaying it as changes
 * from an empty config: the outgoing voters as simple additions, then a joint
 * step to the incoming config (etcd-raft's confchange.Restore).
 */
export function restoreConfig(
  confState: ConfState,
  lastIndex: LogIndex,
  newProgress: (options: { next: LogIndex; isLearner: boolean }) => Progress,
): ChangeResult {
  const outgoingAdds: ConfChangeSingle[] = confState.votersOutgoing.map((id) => ({ type: 'addNode', nodeId: id }));
  const incoming: ConfChangeSingle[] = [
    ...confState.votersOutgoing.map((id): ConfChangeSingle => ({ type: 'removeNode', nodeId: id })),
    ...confState.voters.map((id): ConfChangeSingle => ({ type: 'addNode', nodeId: id })),
    ...confState.learners.map((id): ConfChangeSingle => ({ type: 'addLearner', nodeId: id })),
    // learnersNext are outgoing voters; adding them as learners in the joint step stages them again.
    ...confState.learnersNext.map((id): ConfChangeSingle => ({ type: 'addLearner', nodeId: id })),
  ];
  let state: ChangeResult = {
    config: emptyTrackerConfig(),
    progress: new Map(),
  };
  const step = (fn: (c: Changer) => ChangeResult): void => {
    state = fn(new Changer(state, lastIndex, newProgress));
  };
  if (outgoingAdds.length === 0) {
    // Not joint: one change at a time keeps every step a valid simple change.
    for (const cc of incoming) step((c) => c.simple([cc]));
  } else {
    for (const cc of outgoingAdds) step((c) => c.simple([cc]));
    step((c) => c.enterJoint(confState.autoLeave, incoming));
  }
  return state;
}
