// @flotilla/placement: range descriptors and routing, the meta range's key layout and records, and the placement driver (pure planning, operator steps, the driver that runs them).
export { RangeTable, compareKeys, rangeContains, type RangeDescriptor } from './range.js';
export {
  FIRST_ALLOCATED_NODE_ID,
  FIRST_ALLOCATED_RANGE_ID,
  KEYED_ID_MAX,
  META_RANGE_END,
  META_RANGE_ID,
  META_RANGE_START,
  MetaRecordError,
  NODE_ID_ALLOCATOR_KEY,
  NODE_KEYS,
  RANGE_ID_ALLOCATOR_KEY,
  RANGE_KEYS,
  SYSTEM_PREFIX,
  USER_KEY_MIN,
  decodeCounter,
  decodeNodeRecord,
  decodeRangeDescriptor,
  encodeCounter,
  encodeNodeRecord,
  encodeRangeDescriptor,
  isSystemKey,
  nodeKey,
  rangeKey,
  PLACEMENT_SETTINGS_KEY,
  REPLICATION_FACTOR_MAX,
  decodePlacementSettings,
  encodePlacementSettings,
  type KeySpan,
  type NodeAdminState,
  type NodeRecord,
  type PlacementSettings,
} from './meta.js';
export {
  SCHEDULER_CONFIG_DEFAULTS,
  type ClusterSnapshot,
  type NodeInfo,
  type NodeState,
  type Operator,
  type RangeInfo,
  type ReplicaProgress,
  type SchedulerConfig,
  type Step,
  type StepDecision,
} from './cluster.js';
export { nextStep, type NextStepOptions } from './operator.js';
export { plan } from './scheduler.js';
export { DRIVER_CONFIG_DEFAULTS, OperatorConflictError, PlacementDriver, describeOperator, type DriverConfig, type DriverPorts, type DriverStatus, type MembershipStepOutcome, type SplitStepOutcome, type StepOutcome } from './driver.js';
export { HEARTBEAT_RANGE_COUNT_MAX, decodeStoreHeartbeat, encodeStoreHeartbeat, type HeartbeatAnswer, type RangeReport, type StoreHeartbeat } from './heartbeat.js';
