// The deterministic cluster simulator; see test/README.md for its contract.
export * from './options.js';
export * from './trace.js';
export { SafetyChecker, SafetyViolation, RAFT_SAFETY_CODES, entryKey, type ViolationCode, type CheckedNode } from './checker.js';
export { SimDisk, type RestartPoint } from './disk.js';
export { SimNetwork, NO_NETWORK_FAULTS, type Envelope, type NetworkFaults } from './network.js';
export { StateMachine } from './state-machine.js';
export { chooseConfChange, DEFAULT_MEMBERSHIP_LIMITS, type MembershipLimits } from './membership.js';
export { Simulator, SimFailure, type SimResult, type SimStats } from './simulator.js';
export { describeMessage, describeReady } from './describe.js';
export { runSeed, simEnvironment, envTracer, type SimEnvironment } from './harness.js';
