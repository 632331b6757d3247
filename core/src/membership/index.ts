export { Changer, restoreConfig, type ChangeResult } from './changer.js';
export { encodeConfChange, decodeConfChange, enterJoint } from './codec.js';
