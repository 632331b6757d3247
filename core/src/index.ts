// Public surface of @flotilla/core: Raft as a pure, deterministic state machine.
export * from './types.js';
export * from './errors.js';
export { assert, unreachable, AssertionError } from './assert.js';
export { SILENT_LOGGER, type Logger } from './logger.js';
export { SeededRng, type Rng } from './rng.js';
export { AddressError, HOST_NAME_CHARS_MAX, formatHost, formatHostPort, hostPortProblem, isIpv4Address, isIpv6Address, parseHostPort, type HostPort } from './address.js';
export { SYSTEM_CLOCK, every, sleep, type Clock, type Timer } from './clock.js';
export { RawNode, type Ready, type Status, type ProgressStatus } from './raw-node.js';
export { Raft, DEFAULTS, type RaftConfig, type ReadMode } from './raft.js';
export { MemoryStorage, RaftLog, Unstable, limitSize, type Storage } from './log/index.js';
export { MajorityConfig, JointConfig, type VoteResult, type AckedIndexer } from './quorum/index.js';
export { Progress, Inflights, ProgressTracker, type ProgressState, type TrackerConfig } from './progress/index.js';
export { Changer, restoreConfig, encodeConfChange, decodeConfChange, enterJoint } from './membership/index.js';
export { ReadQueue } from './read/read-queue.js';
export type { NodeLeases } from './read/node-leases.js';
