export { RaftLog } from './raft-log.js';
export { Unstable } from './unstable.js';
export { MemoryStorage, limitSize, type Storage } from './storage.js';
