import type { NodeId } from '../types.js';

/**
 * Leases held between nodes rather than per group, for a shell that runs
 * many groups per node and lets idle ones stop ticking (quiescence): one
 * exchange between two nodes renews every group's lease at once, ticking or
 * not. The shell (shards/src/host/node-leases.ts) keeps the exchange; Raft
 * asks it three questions.
 *
 * The rule that makes a read served under a lease linearizable: a node that
 * promised node L does not help elect anyone but L in a group whose leader it
 * knows to be L (it grants no vote to another candidate and does not
 * campaign) until the promise runs out; L counts a voter towards a group's
 * lease only while the voter's promise to L runs, and only if the voter's
 * replica acknowledged L's current term since the voter's node last
 * (re)started. A quorum counted so cannot elect another leader, so L is the
 * leader and its commit index is current.
 */
export interface NodeLeases {
  /**
   * A mark of `voter`'s node as it is now (its incarnation), stamped on its
   * replica's acknowledgements of the leader's term; `holds` refuses marks
   * from before the node last restarted.
   */
  ackMark(voter: NodeId): number;
  /** Whether `voter`'s node holds a promise to this node now, and acknowledged at `mark` since its last restart. */
  holds(voter: NodeId, mark: number): boolean;
  /**
   * Whether this node promised node `leader` not to help elect anyone else,
   * now. While the node is young (it forgot the promises it made before it
   * restarted) true for every leader, and for NONE: a replica that knows no
   * leader may have promised any.
   */
  promised(leader: NodeId): boolean;
}
