export { Inflights } from './inflights.js';
export { Progress, type ProgressState } from './progress.js';
export { ProgressTracker, confStateOf, emptyTrackerConfig, type TrackerConfig, type ProgressMap } from './tracker.js';
