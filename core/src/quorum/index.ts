export { MajorityConfig, JointConfig } from './quorum.js';
export type { VoteResult, AckedIndexer } from './quorum.js';
