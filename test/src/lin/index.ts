// Linearizability checking over plain operation records (no HTTP, no Raft); see test/README.md.
export { HistoryError, validateOperations, type HistoryErrorCode, type Model, type Operation } from './history.js';
export { checkOperations, SEARCH_STEPS_MAX_DEFAULT, type SearchOptions, type SearchResult } from './search.js';
export {
  registerModel,
  validateRegisterOperation,
  describeRegisterOperation,
  describeRegisterState,
  type RegisterInput,
  type RegisterOutput,
  type RegisterOperation,
  type RegisterState,
} from './register.js';
export { checkRegisterHistory, describeVerdict, unobservedPuts, type KeyedOperation, type KeyVerdict, type HistoryVerdict } from './check.js';
