// The whole-node simulation (test/README.md, "Whole-node simulation").
export { NodeSim, SimFailure, type NodeSimResult, type NodeSimStats } from './node-sim.js';
export { nodeSimOptionsForSeed, replayCommand, SIM_BUGS, FAULT_TICKS_DEFAULT, TICK_MS, type NodeSimOptions, type NodeSimOverrides, type SimBug } from './options.js';
