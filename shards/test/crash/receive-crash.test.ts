// Crash test of the direct snapshot path (installer.ts): an empty replica
// receives its snapshot straight into the data, between two neighbours,
// while the child (test-support/crash-child.ts, receive mode) is SIGKILLed
// at seeded moments — most of them inside a transfer. After every kill the
// store must reopen with no record of an uninstalled transfer left, the
// neighbours' records byte for byte as written, and the receiver either
// empty or holding exactly the snapshot it acknowledged installing.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SeededRng, type GroupId } from '@flotilla/core';
import { open } from 'lmdb';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { NodeStore, STORE_FILE } from '../../src/index.js';
import { parseLine } from '../../test-support/protocol.js';
import { RECEIVE_LAYOUT, ReplayOracle, WORKLOADS, keyOf, neighbourRecords, valueOf } from '../../test-support/workload.js';
import { CrashFailure, crashSettings, killLeftoverChildren, planKill, runChildUntilKilled } from './harness.js';

const { seed, cycles } = crashSettings();
/** ~0.6 s per cycle measured here; the rest is headroom for a loaded CI machine. */
const TEST_TIMEOUT_MS = 60_000 + cycles * 2_000;
const TARGET_NODE = 1;
const { receiver, left, right, ranges } = RECEIVE_LAYOUT;
const spec = WORKLOADS.receive;

/** What the receiver holds: nothing (empty, or not there between a destroy and its re-creation), or a snapshot. */
type ReceiverState = { readonly kind: 'empty' } | { readonly kind: 'installed'; readonly index: number };
const EMPTY: ReceiverState = { kind: 'empty' };
const describeState = (s: ReceiverState) => (s.kind === 'empty' ? 'empty' : `installed at ${s.index}`);

type Records = Map<string, { version: number; value: Buffer }>;

function recordsIn(store: NodeStore, range: { start: Buffer; end: Buffer | null } | undefined): Records {
  const records: Records = new Map();
  for (const { key, value } of store.data.getRange(range === undefined ? {} : { start: range.start, ...(range.end === null ? {} : { end: range.end }) })) {
    const [version, bytes] = value as [number, Buffer];
    records.set(key.toString('latin1'), { version, value: Buffer.from(bytes) });
  }
  return records;
}

/** The differences between two record maps, at most a few. */
function diffRecords(where: string, actual: Records, expected: Records): string[] {
  const diffs: string[] = [];
  for (const [key, e] of expected) {
    const a = actual.get(key);
    if (a === undefined) diffs.push(`${where}: key ${JSON.stringify(key)} is missing`);
    else if (a.version !== e.version || !a.value.equals(e.value)) diffs.push(`${where}: key ${JSON.stringify(key)} holds version ${a.version}, expected ${e.version} (or another value)`);
  }
  for (const key of actual.keys()) if (!expected.has(key)) diffs.push(`${where}: key ${JSON.stringify(key)} should not exist`);
  return diffs.slice(0, 6);
}

/** The receiver's range as a naive replay of the source's log up to `index` (term 1 throughout) writes it. */
function snapshotRecords(index: number): Records {
  const oracle = new ReplayOracle(receiver, spec);
  oracle.advanceTo(index, () => 1);
  const records: Records = new Map();
  for (const [keyNo, v] of oracle.values) records.set(keyOf(receiver, keyNo).toString('latin1'), { version: v.index, value: valueOf(receiver, v.index, v.term, spec) });
  return records;
}

/**
 * The store as the kill left it, before NodeStore.open's cleanup: records
 * in the receiver's range, and whether a receiving marker names them.
 */
async function peek(dir: string): Promise<{ receiverRecordCount: number; marked: boolean } | undefined> {
  const path = join(dir, STORE_FILE);
  if (!existsSync(path)) return undefined;
  const env = open({ path, maxDbs: 8, readOnly: true });
  try {
    const data = env.openDB({ name: 'data', keyEncoding: 'binary' } as never);
    const staging = env.openDB({ name: 'staging' });
    if (data === undefined || staging === undefined) return undefined;
    const range = ranges.get(receiver)!;
    return { receiverRecordCount: data.getKeysCount({ start: range.start, end: range.end }), marked: staging.get([receiver, -1]) !== undefined };
  } finally {
    await env.close();
  }
}

interface Outcome {
  /** The receiver's state after the last acknowledged install or destroy of this child. */
  readonly acked: ReceiverState | undefined;
  /** The state an operation in flight at the kill would leave, if it committed. */
  readonly pending: ReceiverState | undefined;
  readonly ready: boolean;
  readonly phase: string;
}

/** Folds the child's lines: installs and destroys (acknowledged or in flight) and where the kill landed. */
function fold(texts: readonly string[]): Outcome {
  let acked: ReceiverState | undefined;
  let pending: ReceiverState | undefined;
  let ready = false;
  let phase = 'startup';
  for (const text of texts) {
    const line = parseLine(text);
    switch (line.kind) {
      case 'ready':
        ready = true;
        phase = 'idle';
        break;
      case 'install':
        pending = { kind: 'installed', index: line.index };
        phase = 'install';
        break;
      case 'destroy':
        pending = EMPTY;
        phase = 'destroy';
        break;
      case 'installed':
      case 'destroyed':
        if (pending === undefined) throw new Error(`"${text}" without its intent`);
        acked = pending;
        pending = undefined;
        phase = 'idle';
        break;
      case 'stage':
        phase = 'stage';
        break;
      case 'staged':
        phase = 'between chunks';
        break;
      case 'abort':
        phase = 'abort';
        break;
      case 'aborted':
        phase = 'idle';
        break;
      default:
        break;
    }
  }
  return { acked, pending, ready, phase };
}

describe('crash: a snapshot received straight into the data under SIGKILL', () => {
  afterEach(() => {
    killLeftoverChildren();
  });
  afterAll(() => {
    killLeftoverChildren();
  });

  it(
    `leaves no record of an uninstalled transfer, the neighbours' records untouched, and the receiver empty or exactly its snapshot (${cycles} kills, seed ${seed})`,
    async () => {
      const rng = new SeededRng(seed);
      const dir = mkdtempSync(join(tmpdir(), 'flotilla-crash-receive-'));
      const targetDir = join(dir, 'target');
      let state: ReceiverState = EMPTY;
      let readySeen = false;
      /** Kills after which the receiver's range held records of a transfer not installed, for the open to delete. */
      let orphanedCycles = 0;
      const killedDuring: Record<string, number> = {};
      for (let cycle = 0; cycle < cycles; cycle++) {
        const childSeed = rng.nextUint32();
        const kill = planKill(rng, 'receive');
        const where = `[FLOTILLA_CRASH_SEED=${seed}, cycle ${cycle}, child seed ${childSeed}, kill ${kill.delayMs} ms after ${kill.after}, dir ${dir} (kept)]`;
        let lines: string[];
        try {
          lines = (await runChildUntilKilled({ dir, mode: 'receive', childSeed, kill })).lines;
        } catch (err) {
          throw new CrashFailure(`${(err as Error).message}\n${where}`);
        }
        const outcome = fold(lines);
        killedDuring[outcome.phase] = (killedDuring[outcome.phase] ?? 0) + 1;
        readySeen ||= outcome.ready;
        const before = outcome.acked ?? state;
        const candidates = outcome.pending === undefined ? [before] : [before, outcome.pending];
        const context = `killed during ${outcome.phase}; last lines: ${lines.slice(-4).join(' | ')}\n${where}`;

        const raw = await peek(targetDir);
        let store: NodeStore;
        try {
          store = await NodeStore.open({ dir: targetDir, nodeId: TARGET_NODE });
        } catch (err) {
          throw new CrashFailure(`store does not reopen after the kill: ${(err as Error).stack}\n${context}`);
        }
        const problems: string[] = [];
        let actual: ReceiverState;
        try {
          if (store.staging.getKeysCount() !== 0) problems.push(`${store.staging.getKeysCount()} staging records are visible after open`);
          if (store.receiving().size !== 0) problems.push('a receiving marker is visible after open');
          // The neighbours: exactly what setup wrote, once it finished.
          if (readySeen) {
            const neighbours = new Map([...neighbourRecords()].filter(([key]) => Buffer.from(key, 'latin1').compare(ranges.get(receiver)!.start) < 0 || Buffer.from(key, 'latin1').compare(ranges.get(receiver)!.end) >= 0));
            problems.push(...diffRecords(`shards ${left} and ${right}`, new Map([...recordsIn(store, ranges.get(left)), ...recordsIn(store, ranges.get(right))]), neighbours));
            for (const shard of [left, right]) {
              const desc = store.descriptor(shard as GroupId) as [Buffer, Buffer, number];
              const range = ranges.get(shard)!;
              if (!desc[0].equals(range.start) || !desc[1].equals(range.end) || desc[2] !== 1) problems.push(`shard ${shard}'s descriptor changed`);
            }
          }
          // Nothing outside the three ranges, ever.
          const stray = [...recordsIn(store, undefined).keys()].filter((key) => key < 'k2/' || key >= 'k5');
          if (stray.length > 0) problems.push(`records outside every range: ${stray.slice(0, 3).join(', ')}`);
          // The receiver: empty with no record in its range, or installed with exactly its snapshot.
          const desc = store.hasShard(receiver as GroupId) ? (store.descriptor(receiver as GroupId) as unknown[]) : undefined;
          const received = recordsIn(store, ranges.get(receiver));
          if (desc === undefined || desc[2] === 0) {
            actual = EMPTY;
            if (received.size > 0) problems.push(`the empty receiver's range holds ${received.size} records (an uninstalled transfer's, left behind)`);
          } else {
            actual = { kind: 'installed', index: store.storage(receiver as GroupId).applied };
            problems.push(...diffRecords(`receiver at ${actual.index}`, received, snapshotRecords(actual.index)));
          }
          if (!candidates.some((c) => describeState(c) === describeState(actual))) {
            problems.push(`the receiver is ${describeState(actual)}; expected ${candidates.map(describeState).join(' or ')}`);
          }
        } finally {
          await store.close();
        }
        if (problems.length > 0) throw new CrashFailure(`after the kill:\n  ${problems.join('\n  ')}\n${context}`);
        if (raw !== undefined && raw.marked && raw.receiverRecordCount > 0 && actual.kind === 'empty') orphanedCycles++;
        state = actual;
      }
      rmSync(dir, { recursive: true, force: true });
      const phases = Object.entries(killedDuring).sort(([a], [b]) => a.localeCompare(b)).map(([p, n]) => `${p} ${n}`).join(', ');
      console.log(`crash receive: ${cycles} cycles (seed ${seed}); killed during: ${phases}; kills that left a transfer's records for the open to delete: ${orphanedCycles}`);
      // The point of the test: kills inside transfers happened, and each left records that the open then deleted.
      expect(orphanedCycles).toBeGreaterThan(0);
    },
    TEST_TIMEOUT_MS,
  );
});
