// Memory per quiesced replica (issue 19; ARCHITECTURE.md, "Memory per replica"):
//
//   node --expose-gc dist-support/replica-memory.js [--shards 2000] [--writes 0] [--snapshot <file>]
//
// Three Hosts in this one process (inline cores, the deterministic
// MemoryNetwork, manual ticks, fresh data dirs under os.tmpdir()) create
// `--shards` 3-replica shards, 500 per batch, each batch elected and
// quiesced before the next; with `--writes n`, every shard then takes n puts
// of 100 B through its leader and quiesces again. It prints the V8 heap in
// use after full GCs, per replica, over the same three Hosts with no shard:
// every byte a replica costs on both sides of a core (Raft, Group, store
// state, the Host's tables), no worker or transport overhead. `--snapshot`
// also writes a heap snapshot and prints where its bytes are, per replica
// (heap-breakdown.ts). Deterministic up to LMDB's timing: repeated runs agree
// within a few bytes per replica.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { writeHeapSnapshot } from 'node:v8';
import { SeededRng, groupId } from '@flotilla/core';
import { Host, type ShellLogger } from '@flotilla/shards';
import { MemoryNetwork } from '@flotilla/transport/testing';
import { pino } from 'pino';
import { heapBreakdown } from './heap-breakdown.js';

const NODE_IDS = [1, 2, 3] as const;
/** Shards created per batch: each batch's elections finish within a few dozen ticks. */
const CREATION_BATCH = 500;
/** A batch (or a round of writes) that has not quiesced after this many ticks is a failure. */
const QUIESCE_TICKS_MAX = 400;
const VALUE_BYTES = 100;
/** Owners printed from a snapshot, largest first. */
const BREAKDOWN_ROWS = 40;
const USAGE = 'usage: node --expose-gc dist-support/replica-memory.js [--shards <n>] [--writes <n>] [--snapshot <file>]';

function usageError(message: string): never {
  console.error(`replica-memory: ${message}\n${USAGE}`);
  process.exit(2);
}

function count(text: string | undefined, name: string, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min || n > 999_999) usageError(`--${name} must be an integer in [${min}, 999999], got ${JSON.stringify(text)}`);
  return n;
}

const shardBounds = (s: number) => ({ start: Buffer.from(`s${String(s).padStart(6, '0')}/`), end: Buffer.from(`s${String(s).padStart(6, '0')}0`) });

async function main(): Promise<void> {
  let values: { shards?: string; writes?: string; snapshot?: string };
  try {
    ({ values } = parseArgs({ options: { shards: { type: 'string' }, writes: { type: 'string' }, snapshot: { type: 'string' } } }));
  } catch (err) {
    usageError((err as Error).message);
  }
  const shardCount = count(values.shards, 'shards', 2_000, 1);
  const writesPerShard = count(values.writes, 'writes', 0, 0);
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) usageError('run node with --expose-gc: the heap is read after full GCs');
  const liveHeap = (): number => {
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };

  const network = new MemoryNetwork({ rng: new SeededRng(7), verify: false });
  const hosts = new Map<number, Host>();
  const dirs: string[] = [];
  try {
    for (const id of NODE_IDS) {
      const dir = mkdtempSync(join(tmpdir(), 'flotilla-replica-memory-'));
      dirs.push(dir);
      const logger = pino({ level: 'silent' }) as unknown as ShellLogger;
      hosts.set(id, await Host.start({ nodeId: id, dir, transport: network.endpoint(id), coreCount: 1, coreMode: 'inline', ticker: { kind: 'manual' }, seed: 31 + id, logger }));
    }
    for (const [id, h] of hosts) for (const peer of NODE_IDS) if (peer !== id) h.setPeer(peer, `memory:${peer}`);
    const settle = async (): Promise<void> => {
      for (let quiet = 0; quiet < 2; ) {
        await new Promise((r) => setImmediate(r));
        const delivered = network.deliver();
        const busy = [...hosts.values()].some((h) => h.isBusy);
        quiet = delivered === 0 && !busy ? quiet + 1 : 0;
        if (busy && delivered === 0) await new Promise((r) => setTimeout(r, 1));
      }
    };
    const tick = async (): Promise<void> => {
      network.advance(1);
      for (const h of hosts.values()) h.tick();
      await settle();
    };
    const activeGroups = async (): Promise<number> => {
      let n = 0;
      for (const h of hosts.values()) for (const c of await h.coreStats()) n += c.activeGroupCount;
      return n;
    };
    const quiesce = async (what: string): Promise<void> => {
      for (let t = 0; (await activeGroups()) > 0; t++) {
        if (t >= QUIESCE_TICKS_MAX) throw new Error(`${what}: groups still active after ${QUIESCE_TICKS_MAX} ticks`);
        await tick();
      }
    };

    for (let t = 0; t < 5; t++) await tick();
    const before = liveHeap();
    const startedMs = performance.now();
    for (let first = 1; first <= shardCount; first += CREATION_BATCH) {
      const ids = Array.from({ length: Math.min(CREATION_BATCH, shardCount - first + 1) }, (_, i) => first + i);
      const voters = [...NODE_IDS];
      await Promise.all(voters.flatMap((node) => ids.map((s) => hosts.get(node)!.createShard({ shardId: groupId(s), voters, bounds: shardBounds(s) }))));
      await quiesce(`shards ${first}–${ids.at(-1)}`);
    }
    if (writesPerShard > 0) {
      const leaders = new Map<number, Host>();
      for (const h of hosts.values()) for (const s of await h.shards()) if (s.role === 'leader') leaders.set(s.shardId, h);
      const value = Buffer.alloc(VALUE_BYTES, 7);
      for (let w = 0; w < writesPerShard; w++) {
        let done = false;
        const round = Promise.all(
          Array.from({ length: shardCount }, (_, i) => leaders.get(i + 1)!.propose(groupId(i + 1), { op: 'put', key: Buffer.from(`${shardBounds(i + 1).start.toString()}k${w}`), value })),
        ).finally(() => (done = true));
        while (!done) await tick();
        await round;
      }
      await quiesce('after the writes');
    }
    for (let t = 0; t < 5; t++) await tick();
    if ((await activeGroups()) !== 0) throw new Error('groups woke up after quiescing');
    const after = liveHeap();
    const replicaCount = shardCount * NODE_IDS.length;
    console.log(
      `${shardCount} shards × ${NODE_IDS.length} replicas${writesPerShard > 0 ? `, ${writesPerShard} puts of ${VALUE_BYTES} B each` : ''}, built in ${((performance.now() - startedMs) / 1_000).toFixed(1)} s: ` +
        `heap ${(before / 1e6).toFixed(1)} → ${(after / 1e6).toFixed(1)} MB, ${Math.round((after - before) / replicaCount)} B per quiesced replica (Node ${process.version})`,
    );
    if (values.snapshot !== undefined) {
      const path = writeHeapSnapshot(values.snapshot);
      const { totalBytes, byOwner } = heapBreakdown(path);
      console.log(`\n${path}: ${(totalBytes / 1e6).toFixed(1)} MB reachable; bytes (and objects) per replica under each owner, largest first:`);
      for (const [owner, { bytes, count: objects }] of [...byOwner].sort((a, b) => b[1].bytes - a[1].bytes).slice(0, BREAKDOWN_ROWS)) {
        console.log(`${(bytes / replicaCount).toFixed(0).padStart(7)} B ${(objects / replicaCount).toFixed(2).padStart(6)}  ${owner}`);
      }
    }
  } finally {
    for (const h of hosts.values()) await h.close();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

await main();
