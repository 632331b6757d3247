// Vocabulary of the consensus core. Everything here is plain data: it crosses
// thread and process boundaries unchanged once a codec (in transport/) frames it.

declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/** A replica's identity within a group; 0 is "none" (`NONE`). */
export type NodeId = Brand<number, 'NodeId'>;
/** A Raft group (shard); opaque to the core, carried by the shell. */
export type GroupId = Brand<number, 'GroupId'>;
/**
 * Terms and log indexes stay plain numbers: they are compared and incremented
 * on every hot path, and a brand would force a cast at each `+ 1`. The aliases
 * still document intent at every signature. Both stay below 2^53.
 */
export type Term = number;
export type LogIndex = number;

export const NONE = 0 as NodeId;

export const nodeId = (n: number): NodeId => n as NodeId;
export const groupId = (n: number): GroupId => n as GroupId;

export type EntryType = 'normal' | 'confChange';

export interface Entry {
  readonly term: Term;
  readonly index: LogIndex;
  readonly type: EntryType;
  /** Application payload, or an encoded ConfChange (see membership/codec). Empty for the leader's no-op. */
  readonly data: Uint8Array;
}

/** Durable per-replica state (Raft §5, Figure 2): must be on disk before dependent messages leave. */
export interface HardState {
  readonly term: Term;
  readonly vote: NodeId;
  readonly commit: LogIndex;
}

export const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: NONE, commit: 0 });

export function isHardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** Membership as persisted: voters of the incoming and (while joint) outgoing config, learners. */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly votersOutgoing: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** Learners that are voters in the outgoing config and become learners on leaving the joint config. */
  readonly learnersNext: readonly NodeId[];
  readonly autoLeave: boolean;
}

export const EMPTY_CONF_STATE: ConfState = Object.freeze({
  voters: [],
  votersOutgoing: [],
  learners: [],
  learnersNext: [],
  autoLeave: false,
});

export interface SnapshotMetadata {
  readonly index: LogIndex;
  readonly term: Term;
  readonly confState: ConfState;
}

export interface Snapshot {
  readonly metadata: SnapshotMetadata;
  /** Opaque state-machine image; the shell decides how it is produced and streamed. */
  readonly data: Uint8Array;
}

export const EMPTY_SNAPSHOT: Snapshot = Object.freeze({
  metadata: Object.freeze({ index: 0, term: 0, confState: EMPTY_CONF_STATE }),
  data: new Uint8Array(0),
});

export function isEmptySnapshot(s: Snapshot | undefined): boolean {
  return s === undefined || s.metadata.index === 0;
}

export type ConfChangeType = 'addNode' | 'removeNode' | 'addLearner';

export interface ConfChangeSingle {
  readonly type: ConfChangeType;
  readonly nodeId: NodeId;
}

/**
 * How a multi-change proposal moves through joint consensus (Raft thesis §4.3):
 * - `auto`: joint only when needed (more than one voter changes), left automatically;
 * - `implicit`: always joint, left automatically by the leader;
 * - `explicit`: always joint, the application proposes an empty change to leave.
 */
export type ConfChangeTransition = 'auto' | 'implicit' | 'explicit';

export interface ConfChange {
  readonly changes: readonly ConfChangeSingle[];
  readonly transition: ConfChangeTransition;
  /** Opaque to the core; carried to the application with the committed entry. */
  readonly context?: Uint8Array;
}

/** An empty ConfChange is the request to leave a joint configuration. */
export function isLeaveJoint(cc: ConfChange): boolean {
  return cc.changes.length === 0;
}

// ---------------------------------------------------------------------------
// Messages. Each kind carries only the fields it needs; `term` 0 marks a local
// message that never crosses the network.

interface MessageHeader {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: Term;
}

/** Append entries (§5.3): `entries` follow the entry at (`index`, `logTerm`). */
export interface AppendMessage extends MessageHeader {
  readonly type: 'append';
  readonly index: LogIndex;
  readonly logTerm: Term;
  readonly entries: readonly Entry[];
  readonly commit: LogIndex;
}

export interface AppendResponseMessage extends MessageHeader {
  readonly type: 'appendResponse';
  /** On success the last index now matching the leader; on reject the rejected probe index. */
  readonly index: LogIndex;
  readonly reject: boolean;
  /** On reject: the follower's guess of the highest index that may match, and its term (fast backtracking). */
  readonly rejectHint: LogIndex;
  readonly logTerm: Term;
  /**
   * The answering replica's incarnation on its node (RaftConfig.incarnation):
   * a node that destroyed its replica and holds a new one answers with a
   * higher number, so the leader can tell a later replica's answer from a
   * late one of the destroyed replica's.
   */
  readonly incarnation: number;
}

export type VoteKind = 'vote' | 'preVote';

export interface VoteMessage extends MessageHeader {
  readonly type: VoteKind;
  /** Candidate's last log position (§5.4.1). */
  readonly index: LogIndex;
  readonly logTerm: Term;
  /** Set by leader transfer: the vote must be granted despite a live leader lease. */
  readonly transfer: boolean;
}

export interface VoteResponseMessage extends MessageHeader {
  readonly type: 'voteResponse' | 'preVoteResponse';
  readonly reject: boolean;
}

export interface HeartbeatMessage extends MessageHeader {
  readonly type: 'heartbeat';
  readonly commit: LogIndex;
  /** Heartbeat round, echoed in the response; confirms leadership for reads and leases. */
  readonly round: number;
}

export interface HeartbeatResponseMessage extends MessageHeader {
  readonly type: 'heartbeatResponse';
  readonly round: number;
}

export interface SnapshotMessage extends MessageHeader {
  readonly type: 'snapshot';
  readonly snapshot: Snapshot;
}

/** Proposal forwarded from a follower to the leader (or stepped locally). */
export interface ProposeMessage extends MessageHeader {
  readonly type: 'propose';
  readonly entries: readonly Entry[];
}

/** ReadIndex request forwarded from a follower to the leader. */
export interface ReadIndexMessage extends MessageHeader {
  readonly type: 'readIndex';
  readonly contexts: readonly ReadContext[];
}

export interface ReadIndexResponseMessage extends MessageHeader {
  readonly type: 'readIndexResponse';
  readonly index: LogIndex;
  readonly contexts: readonly ReadContext[];
}

export interface TransferLeaderMessage extends MessageHeader {
  readonly type: 'transferLeader';
  /** The node that should become leader. */
  readonly transferee: NodeId;
}

export interface TimeoutNowMessage extends MessageHeader {
  readonly type: 'timeoutNow';
}

// Local messages: never sent over the network.
export interface HupMessage extends MessageHeader {
  readonly type: 'hup';
  readonly transfer: boolean;
}
export interface BeatMessage extends MessageHeader {
  readonly type: 'beat';
}
export interface CheckQuorumMessage extends MessageHeader {
  readonly type: 'checkQuorum';
}
export interface UnreachableMessage extends MessageHeader {
  readonly type: 'unreachable';
}
export interface SnapshotStatusMessage extends MessageHeader {
  readonly type: 'snapshotStatus';
  readonly reject: boolean;
}

export type Message =
  | AppendMessage
  | AppendResponseMessage
  | VoteMessage
  | VoteResponseMessage
  | HeartbeatMessage
  | HeartbeatResponseMessage
  | SnapshotMessage
  | ProposeMessage
  | ReadIndexMessage
  | ReadIndexResponseMessage
  | TransferLeaderMessage
  | TimeoutNowMessage
  | HupMessage
  | BeatMessage
  | CheckQuorumMessage
  | UnreachableMessage
  | SnapshotStatusMessage;

export type MessageType = Message['type'];

/** Messages that the shell may deliver from the network (the rest are local). */
export const NETWORK_MESSAGE_TYPES: ReadonlySet<MessageType> = new Set<MessageType>([
  'append',
  'appendResponse',
  'vote',
  'preVote',
  'voteResponse',
  'preVoteResponse',
  'heartbeat',
  'heartbeatResponse',
  'snapshot',
  'propose',
  'readIndex',
  'readIndexResponse',
  'transferLeader',
  'timeoutNow',
]);

export function isLocalMessage(m: Message): boolean {
  return !NETWORK_MESSAGE_TYPES.has(m.type);
}

export function isResponseMessage(m: Message): boolean {
  return (
    m.type === 'appendResponse' ||
    m.type === 'voteResponse' ||
    m.type === 'preVoteResponse' ||
    m.type === 'heartbeatResponse' ||
    m.type === 'unreachable' ||
    m.type === 'readIndexResponse'
  );
}

/** Caller-chosen identity of a read request; echoed back in its ReadState. */
export type ReadContext = string;

/** A read may be served once the state machine has applied `index`. */
export interface ReadState {
  readonly index: LogIndex;
  readonly context: ReadContext;
}

export type StateRole = 'follower' | 'preCandidate' | 'candidate' | 'leader';

/** Volatile state, reported when it changes; never persisted. */
export interface SoftState {
  readonly leader: NodeId;
  readonly role: StateRole;
}

export function entrySizeBytes(e: Entry): number {
  // Payload plus a fixed allowance for term, index and type, so empty entries still count.
  return e.data.byteLength + ENTRY_OVERHEAD_BYTES;
}

/** Per-entry framing allowance used in all byte accounting (index + term + type ≈ 2×8+1, rounded). */
export const ENTRY_OVERHEAD_BYTES = 24;

export function entriesSizeBytes(entries: readonly Entry[]): number {
  let total = 0;
  for (const e of entries) total += entrySizeBytes(e);
  return total;
}

/** Only payload bytes count against the uncommitted cap, so empty entries (the leader's no-op) are free. */
export function payloadSizeBytes(entries: readonly Entry[]): number {
  let total = 0;
  for (const e of entries) total += e.data.byteLength;
  return total;
}
