// @flotilla/placement: range descriptors and routing. The meta range and the placement driver come next.
export { RangeTable, compareKeys, rangeContains, type RangeDescriptor } from './range.js';
