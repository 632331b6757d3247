// The placement driver merges small, cold neighbours on a live cluster (one process, over TCP): 8 ranges
// on 3 nodes merge back into one while clients write and read through every node — no acknowledged
// write lost, every read linearizable (one writer per key), the data of every range kept.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { ShellLogger } from '@flotilla/shards';
import { afterAll, describe, expect, it } from 'vitest';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { FlotillaNode, type NodeOptions } from '../src/node.js';
import { MonotonicRegisters, outcomeOfWriteError } from './support/registers.js';
import { until } from './support/until.js';

const logger = pino({ level: process.env['FLOTILLA_TEST_LOG'] ?? 'silent' }) as unknown as ShellLogger;
const b = (s: string) => Buffer.from(s);
const RANGE_COUNT = 8;
/**
 * Merges as soon as a pair is cold for a second; "cold" is under 1,000 ops/s, so the test's own load does
 * not hold them back (the driver's cold window and load threshold are what keep a real cluster's busy
 * ranges apart).
 */
const PLACEMENT: NodeOptions['placement'] = {
  suspectAfterMs: 1_000,
  downAfterMs: 3_000,
  stepRetryMs: 500,
  operatorTimeoutMs: 20_000,
  scheduler: { mergeColdSec: 1, mergeLoadOpsPerSec: 1_000, mergeSizeBytes: 64 * 1024 * 1024 },
};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** What a wait that timed out reports: a node stopped on a fatal error says why at once. */
const fatalSeen = () => (fatal.length > 0 ? fatal : 'no fatal error');
const WRITER_COUNT = 3;
const WRITES_PER_WRITER_MAX = 100_000;
const READS_PER_READER_MAX = 1_000_000;

let root: string | undefined;
const nodes = new Map<number, FlotillaNode>();
const fatal: string[] = [];

afterAll(async () => {
  for (const n of nodes.values()) await n.close().catch(() => undefined);
  if (root !== undefined) rmSync(root, { recursive: true, force: true });
});

/** Every range led somewhere, with the node leading it. */
async function ledRanges(): Promise<Map<number, { start: Uint8Array; end: Uint8Array | null }>> {
  const out = new Map<number, { start: Uint8Array; end: Uint8Array | null }>();
  for (const n of nodes.values()) for (const s of await n.host.shards()) if (s.role === 'leader') out.set(s.shardId, { start: s.start, end: s.end });
  return out;
}

describe('merges on a live cluster (3 nodes, one process, TCP)', () => {
  it('merges 8 ranges back into one under load: no acknowledged write lost, reads linearizable, every key kept', async () => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-merge-'));
    const ports = await freePorts(3);
    const address = (id: number) => `127.0.0.1:${ports[id - 1]}`;
    const started = await Promise.all(
      [1, 2, 3].map((id) =>
        FlotillaNode.start({
          nodeId: id,
          dir: join(root!, `n${id}`),
          listen: { host: '127.0.0.1', port: ports[id - 1]! },
          coreCount: 1,
          tickIntervalMs: 20,
          metaDutyIntervalMs: 100,
          placement: PLACEMENT,
          logger,
          onFatal: (err: Error) => void fatal.push(`node ${id}: ${err.message}`),
          peers: Object.fromEntries([1, 2, 3].filter((j) => j !== id).map((j) => [j, address(j)])),
          initialRangeCount: RANGE_COUNT,
        }),
      ),
    );
    for (const n of started) nodes.set(n.host.nodeId, n);
    const live = [...nodes.values()];
    await until('leaders for every range', 20_000, async () => ((await ledRanges()).size === RANGE_COUNT + 1 ? true : undefined), fatalSeen);
    // A key under every fourth first byte: data in every range before any merge.
    for (let i = 4; i < 256; i += 4) await nodes.get(1)!.store.put(Uint8Array.of(i, 7), b(`data-${i}`));

    const registers = new MonotonicRegisters();
    const errors = { write: [] as string[], read: [] as string[], reads: [] as string[] };
    let stopped = false;
    let writes = 0;
    const writer = async (w: number) => {
      for (let seq = 1; !stopped && seq < WRITES_PER_WRITER_MAX; seq++) {
        // Keys across the whole key space: every merge has writes in flight on both sides.
        const key = Buffer.concat([Uint8Array.of((w * 83 + seq * 37) % 250 + 4), b(`/load/${w}`)]);
        const node = live[seq % live.length]!;
        const name = key.toString('hex');
        registers.writeInvoked(name, seq);
        try {
          await node.store.put(key, b(String(seq)));
          registers.writeCompleted(name, seq, 'acknowledged');
          writes++;
        } catch (err) {
          registers.writeCompleted(name, seq, outcomeOfWriteError(err));
          errors.write.push(`${name}=${seq} via node ${node.host.nodeId}: ${(err as { code?: string }).code ?? String(err)}`);
          await sleep(20);
        }
      }
    };
    const reader = async (r: number) => {
      for (let i = 0; !stopped && i < READS_PER_READER_MAX; i++) {
        const w = (i + r) % WRITER_COUNT;
        const seq = 1 + ((i * 13) % 64);
        const key = Buffer.concat([Uint8Array.of((w * 83 + seq * 37) % 250 + 4), b(`/load/${w}`)]);
        const node = live[(i + r) % live.length]!;
        const start = registers.readInvoked(key.toString('hex'));
        try {
          const v = await node.store.get(key);
          const problem = registers.readCompleted(start, v === undefined ? 0 : Number(Buffer.from(v.value).toString()));
          if (problem !== undefined) errors.reads.push(`${problem} (via node ${node.host.nodeId})`);
        } catch (err) {
          errors.read.push(`${key.toString('hex')} via node ${node.host.nodeId}: ${(err as { code?: string }).code ?? String(err)}`);
          await sleep(20);
        }
      }
    };
    const running = [...Array.from({ length: WRITER_COUNT }, (_, w) => writer(w)), reader(0), reader(1)];
    try {
      await until('the user key space merged into one range', 120_000, async () => {
        const led = await ledRanges();
        // The meta range stays apart (unsplittable); every user range merged into the first.
        return led.size === 2 ? led : undefined;
      }, fatalSeen);
      await until('100 writes acknowledged after the merges', 30_000, () => (writes >= 100 ? true : undefined), fatalSeen);
    } finally {
      stopped = true;
      await Promise.all(running);
    }
    console.log(`load: ${writes} writes acknowledged, ${errors.write.length} failed; ${registers.readCount} reads checked, ${errors.read.length} failed`);
    expect(errors.reads, 'reads that are not linearizable').toEqual([]);
    // A frozen range refuses and the router retries until the merge is done: nothing fails for a merge.
    expect(errors.write, 'failed writes').toEqual([]);
    expect(errors.read, 'failed reads').toEqual([]);
    // The merged ranges' descriptors leave the meta range: its descriptors tile the key space again.
    await until('the meta range lists the two ranges left', 20_000, async () => ((await nodes.get(1)!.store.metaDescriptors()).length === 2 ? true : undefined), fatalSeen);
    for (const n of nodes.values()) {
      const shards = await n.host.shards();
      expect(shards.length, `node ${n.host.nodeId} replicas`).toBe(2);
      for (let i = 4; i < 256; i += 4) expect(Buffer.from((await n.store.get(Uint8Array.of(i, 7)))!.value).toString()).toBe(`data-${i}`);
    }
  }, 180_000);
});
