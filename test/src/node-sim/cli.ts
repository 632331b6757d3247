#!/usr/bin/env node
// `npm run sim -- [flags]`: whole-node simulation runs (test/README.md, "Whole-node simulation").
// Prints each failure with its replay command and a summary; exit code 1 if any seed failed, 2 on bad flags.
import { parseArgs } from 'node:util';
import { NodeSim, SimFailure } from './node-sim.js';
import { FAULT_TICKS_DEFAULT, SIM_BUGS, nodeSimOptionsForSeed, type SimBug } from './options.js';

const USAGE = `usage: npm run sim -- [--seed N | --from N --seeds COUNT] [--nodes 3|5] [--fault-ticks N] [--write-bursts N] [--crash-after-writes] [--clock-faults] [--merges] [--bug ${SIM_BUGS.join('|')}] [--stop-on-failure] [--trace]
  --seed         one seed (replays a failure)
  --from/--seeds seeds from..from+count-1 (default 1, 100)
  --fault-ticks  ticks of faults and clients per run (default ${FAULT_TICKS_DEFAULT}; a tick is 100 virtual ms)
  --write-bursts a client's put sometimes goes with up to N-1 more at once (default 1: one at a time)
  --crash-after-writes  half the crashes armed at a store write strike right after it commits
  --clock-faults a node's clock now and then runs fast or slow, or steps forward or back
  --merges      the placement driver merges cold neighbours, and admin merges are asked for now and then`;

function int(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) {
    console.error(`${flag} must be a non-negative integer, got ${value}\n${USAGE}`);
    process.exit(2);
  }
  return n;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string' },
      from: { type: 'string' },
      seeds: { type: 'string' },
      nodes: { type: 'string' },
      'fault-ticks': { type: 'string' },
      'write-bursts': { type: 'string' },
      'crash-after-writes': { type: 'boolean' },
      'clock-faults': { type: 'boolean' },
      merges: { type: 'boolean' },
      bug: { type: 'string' },
      'stop-on-failure': { type: 'boolean' },
      trace: { type: 'boolean' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) return console.log(USAGE);
  const bug = (values.bug ?? 'none') as SimBug;
  if (!SIM_BUGS.includes(bug)) {
    console.error(`unknown --bug ${values.bug}\n${USAGE}`);
    process.exit(2);
  }
  const nodes = int(values.nodes, '--nodes');
  if (nodes !== undefined && nodes !== 3 && nodes !== 5) {
    console.error(`--nodes must be 3 or 5\n${USAGE}`);
    process.exit(2);
  }
  const one = int(values.seed, '--seed');
  const from = one ?? int(values.from, '--from') ?? 1;
  const count = one === undefined ? (int(values.seeds, '--seeds') ?? 100) : 1;
  const faultTicks = int(values['fault-ticks'], '--fault-ticks');
  const writeBurstMax = int(values['write-bursts'], '--write-bursts');
  const startedMs = performance.now();
  let failed = 0;
  let operations = 0;
  let crashes = 0;
  for (let seed = from; seed < from + count; seed++) {
    const options = nodeSimOptionsForSeed(seed, { bug, ...(nodes === undefined ? {} : { nodeCount: nodes }), ...(faultTicks === undefined ? {} : { faultTicks }), ...(writeBurstMax === undefined ? {} : { writeBurstMax }), ...(values['crash-after-writes'] ? { crashAfterWrites: true } : {}), ...(values['clock-faults'] ? { clockFaults: true } : {}), ...(values.merges ? { merges: true } : {}) });
    const sim = new NodeSim(options);
    // As the run goes, not at its end: a seed that never finishes shows where it stopped.
    if (values.trace) sim.onTrace = (line) => console.log(line);
    try {
      const { stats } = await sim.run();
      operations += stats.operations;
      crashes += stats.crashes;
      if (count === 1) console.log(`seed ${seed}: passed ${JSON.stringify(stats)}`);
    } catch (err) {
      failed++;
      console.error(err instanceof SimFailure ? err.message : `seed ${seed}: ${(err as Error).stack}`);
      if (values['stop-on-failure']) break;
    }
    const done = seed - from + 1;
    if (count > 1 && (done % 100 === 0 || done === count)) {
      console.log(`${done}/${count} seeds, ${failed} failed, ${operations} operations, ${crashes} crashes, ${((performance.now() - startedMs) / 1000).toFixed(0)} s`);
    }
  }
  process.exitCode = failed > 0 ? 1 : 0;
}

void main();
