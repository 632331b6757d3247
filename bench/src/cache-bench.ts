// Does the ShardStorage entry cache pay? Reads 16 recent entries (served from
// the cache) and 16 old entries (read and decoded from LMDB) from the same
// store, many times, and prints both with their ratio.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { groupId, nodeId, type Entry } from '@flotilla/core';
import { NodeStore, ENTRY_CACHE_COUNT_MAX } from '@flotilla/shards';

const quick = process.argv.includes('--quick');
const ENTRY_COUNT = ENTRY_CACHE_COUNT_MAX * 4;
const READ_ENTRY_COUNT = 16;
const REPETITIONS = quick ? 200 : 20_000;
const PAYLOAD_BYTES = 64;

const dir = mkdtempSync(join(tmpdir(), 'flotilla-cache-bench-'));
const store = await NodeStore.open({ dir: join(dir, 'node'), nodeId: 1 });
try {
  const shard = groupId(1);
  await store.createShard(shard, { confState: { voters: [nodeId(1)], votersOutgoing: [], learners: [], learnersNext: [], autoLeave: false } });
  for (let first = 1; first <= ENTRY_COUNT; first += 256) {
    const entries: Entry[] = [];
    for (let i = first; i < first + 256; i++) entries.push({ index: i, term: 1, type: 'normal', data: new Uint8Array(PAYLOAD_BYTES).fill(i & 0xff) });
    await store.persist([{ shardId: shard, entries }]);
  }
  const storage = store.storage(shard);
  const measure = (lo: number): { nsPerEntry: number; checksum: number } => {
    let checksum = 0;
    const start = process.hrtime.bigint();
    for (let r = 0; r < REPETITIONS; r++) for (const e of storage.entries(lo, lo + READ_ENTRY_COUNT, 1 << 20)) checksum = (checksum + e.data[0]! + e.index) | 0;
    return { nsPerEntry: Number(process.hrtime.bigint() - start) / (REPETITIONS * READ_ENTRY_COUNT), checksum };
  };
  measure(ENTRY_COUNT - 100); // warm-up
  measure(100);
  const cached = measure(ENTRY_COUNT - 100);
  const stored = measure(100);
  console.log(`entry cache (${ENTRY_CACHE_COUNT_MAX} entries per shard), ${REPETITIONS} × entries(${READ_ENTRY_COUNT}) of ${PAYLOAD_BYTES} B, Node ${process.version}`);
  console.log(`  from cache: ${cached.nsPerEntry.toFixed(0)} ns/entry (checksum ${cached.checksum})`);
  console.log(`  from LMDB:  ${stored.nsPerEntry.toFixed(0)} ns/entry (checksum ${stored.checksum})`);
  console.log(`  LMDB ÷ cache: ${(stored.nsPerEntry / cached.nsPerEntry).toFixed(1)}×`);
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
