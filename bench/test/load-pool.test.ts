// The load generator over piscina threads (src/load/pool.ts) against a stub KV server on 127.0.0.1:
// every operation counted exactly once across threads, each client sending the keys its fork of the
// seed gives whatever the thread count, and the merge of per-thread HDR histograms equal to one
// histogram of every latency. The pool's threads run the built worker (dist/load/pool-worker.js): build first.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SeededRng } from '@flotilla/core';
import hdr from 'hdr-histogram-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LoadPool } from '../src/load/pool.js';
import { beginRun, decodePart, encodePart, processMs, resultOf, run, runShare, stopRun, type RunOptions, type RunPart, type Target } from '../src/load/runner.js';
import { openTarget, type TargetSpec } from '../src/load/targets.js';
import { keyOf, scrambledZipfianKeys } from '../src/workload/keys.js';
import { WORKLOADS } from '../src/workload/mix.js';

/** Salt of a value the runner writes: client × this + the client's operation number (runner.ts valueOf). */
const SALT_CLIENT_STRIDE = 1_000_003;

/** A KV server that answers every PUT 200 and records, per client, the key of each of its writes by number. */
async function stubKv(): Promise<{ url: string; puts: () => number; keysByClient: Map<number, Map<number, string>>; close: () => Promise<void> }> {
  let puts = 0;
  const keysByClient = new Map<number, Map<number, string>>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'PUT' || req.url?.startsWith('/kv/') !== true) {
        res.statusCode = 404;
        res.end(JSON.stringify({ error: { code: 'NOT_FOUND' } }));
        return;
      }
      puts++;
      const salt = Buffer.concat(chunks).readUInt32BE(0);
      const client = Math.floor(salt / SALT_CLIENT_STRIDE);
      const byNumber = keysByClient.get(client) ?? new Map<number, string>();
      keysByClient.set(client, byNumber);
      // Every key byte is percent-escaped (targets.ts).
      byNumber.set(salt % SALT_CLIENT_STRIDE, Buffer.from(req.url.slice('/kv/'.length).replaceAll('%', ''), 'hex').toString('latin1'));
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    puts: () => puts,
    keysByClient,
    close: async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** The keys client c writes, in order: its fork of the seed draws the operation, then the key (the naive oracle). */
function expectedKeys(o: { seed: number; keyCount: number }, client: number, count: number): string[] {
  const seedRng = new SeededRng(o.seed);
  for (let c = 0; c < client; c++) seedRng.fork();
  const rng = seedRng.fork();
  const keys = scrambledZipfianKeys(o.keyCount, rng);
  return Array.from({ length: count }, () => {
    rng.nextFloat();
    return keyOf(keys.next()).toString('latin1');
  });
}

/** Checks every write the stub saw against the oracle: each client's writes numbered 0..n-1, each with its key. */
function expectClientsKept(stub: Awaited<ReturnType<typeof stubKv>>, o: RunOptions): void {
  expect([...stub.keysByClient.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: o.concurrency }, (_, c) => c));
  for (const [client, byNumber] of stub.keysByClient) {
    const numbers = [...byNumber.keys()].sort((a, b) => a - b);
    expect(numbers, `client ${client}`).toEqual(numbers.map((_, i) => i));
    expect(numbers.map((n) => byNumber.get(n)), `client ${client}`).toEqual(expectedKeys(o, client, numbers.length));
  }
}

describe('the load pool (piscina threads)', () => {
  let pool: LoadPool;
  beforeAll(async () => {
    pool = await LoadPool.start(2);
  });
  afterAll(async () => {
    await pool.close();
  });

  const options: RunOptions = {
    workload: WORKLOADS.write!,
    distribution: 'zipfian',
    keyCount: 100,
    valueBytes: 8,
    concurrency: 6,
    // Ended by the op count; the time is only a backstop.
    durationMs: 120_000,
    warmupMs: 0,
    opCountMax: 300,
    seed: 7,
  };

  it('counts every operation of 2 threads exactly once, and each client keeps its keys', async () => {
    const stub = await stubKv();
    try {
      const spec: TargetSpec = { kind: 'http', urls: [stub.url], requestTimeoutMs: 10_000 };
      const result = await pool.run(spec, options);
      // No warm-up: every request the stub answered was measured, once.
      expect(result.ops).toBe(stub.puts());
      expect(result.byOp).toEqual({ update: result.ops });
      expect(result.errors).toEqual({});
      expect(result.opsByThread).toHaveLength(2);
      for (const n of result.opsByThread) expect(n).toBeGreaterThan(0);
      expect(result.opsByThread.reduce((a, n) => a + n, 0)).toBe(result.ops);
      // The count stops the run; the clients' last requests, already sent, still answer.
      expect(result.ops).toBeGreaterThanOrEqual(options.opCountMax!);
      expect(result.ops).toBeLessThan(options.opCountMax! + options.concurrency);
      expect(result.checksum).toBe(result.ops);
      expect(result.latencyMs.max).toBeGreaterThanOrEqual(result.latencyMs.p50);
      expectClientsKept(stub, options);
    } finally {
      await stub.close();
    }
  });

  it('has every client send the same keys in one thread as in two', async () => {
    const stub = await stubKv();
    const target = await openTarget({ kind: 'http', urls: [stub.url], requestTimeoutMs: 10_000 });
    try {
      const result = await run(target, options);
      expect(result.ops).toBe(stub.puts());
      expect(result.opsByThread).toEqual([result.ops]);
      expectClientsKept(stub, options);
    } finally {
      await target.close();
      await stub.close();
    }
  });

  it('runs fewer clients than threads on as many threads as clients', async () => {
    const stub = await stubKv();
    try {
      const result = await pool.run({ kind: 'http', urls: [stub.url], requestTimeoutMs: 10_000 }, { ...options, concurrency: 1, opCountMax: 20 });
      expect(result.opsByThread).toEqual([result.ops]);
      expect(result.ops).toBe(20);
      expect(stub.puts()).toBe(20);
    } finally {
      await stub.close();
    }
  });

  it('fails the run with the error of a thread that could not open the target', async () => {
    const stub = await stubKv();
    try {
      // Leader routing first asks /cluster, which the stub does not serve.
      await expect(pool.run({ kind: 'http', urls: [stub.url], requestTimeoutMs: 10_000, routeToLeaders: true }, options)).rejects.toThrow('GET /cluster on URL 0 answered 404');
      expect(stub.puts()).toBe(0);
    } finally {
      await stub.close();
    }
  });

  it('refuses a thread count out of range', async () => {
    await expect(LoadPool.start(0)).rejects.toThrow(RangeError);
    await expect(LoadPool.start(65)).rejects.toThrow(RangeError);
  });
});

describe('merging the threads’ results (resultOf)', () => {
  const build = () => hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  const partOf = (latenciesUs: readonly number[]): RunPart => {
    const histogram = build();
    for (const us of latenciesUs) histogram.recordValue(us);
    return { histogram, latencyMaxUs: Math.max(0, ...latenciesUs), measured: latenciesUs.length, errors: { X: 1 }, conflicts: 2, byOp: { read: latenciesUs.length }, checksum: 0xffff_ffff, countReachedProcessMs: undefined };
  };
  const options: RunOptions = { workload: WORKLOADS.c!, distribution: 'uniform', keyCount: 10, valueBytes: 8, concurrency: 4, durationMs: 1_000, warmupMs: 100, seed: 1 };

  it('gives the percentiles of one histogram of every latency, through the encoding threads use', () => {
    const rng = new SeededRng(11);
    const all = Array.from({ length: 5_000 }, () => 1 + Math.floor(Math.pow(rng.nextFloat(), 4) * 2_000_000));
    const parts = [partOf(all.slice(0, 1_234)), partOf(all.slice(1_234))];
    const merged = resultOf(options, processMs() - 2_000, parts.map((p) => decodePart(encodePart(p))));
    const oracle = build();
    for (const us of all) oracle.recordValue(us);
    const at = (p: number) => oracle.getValueAtPercentile(p) / 1000;
    expect(merged.latencyMs).toEqual({ p50: at(50), p90: at(90), p99: at(99), p999: at(99.9), max: Math.max(...all) / 1000 });
    expect(merged.ops).toBe(all.length);
    expect(merged.opsByThread).toEqual([1_234, all.length - 1_234]);
    expect(merged.errors).toEqual({ X: 2 });
    expect(merged.conflicts).toBe(4);
    expect(merged.byOp).toEqual({ read: all.length });
    // Checksums add modulo 2^32, as one thread's do.
    expect(merged.checksum).toBe(0xffff_fffe);
    // The window ended (start + warm-up + duration is in the past): ops/s is over the whole measured time.
    expect(merged.durationMs).toBeCloseTo(options.durationMs, 6);
    expect(merged.opsPerSec).toBeCloseTo(all.length, 6);
  });
});

describe('stopping a run (what a failed thread does to the others)', () => {
  /** A target that answers at once, counting calls, and calls `onPut` with the count. */
  const counting = (onPut: (n: number) => void) => {
    let puts = 0;
    const target: Target = {
      name: 'counting',
      get: async () => undefined,
      put: async () => {
        await new Promise((resolve) => setImmediate(resolve));
        onPut(++puts);
        return { ok: true };
      },
      scan: async () => 0,
      delete: async () => undefined,
      close: async () => undefined,
    };
    return { target, puts: () => puts };
  };
  const options: RunOptions = { workload: WORKLOADS.write!, distribution: 'uniform', keyCount: 10, valueBytes: 8, concurrency: 4, durationMs: 120_000, warmupMs: 0, seed: 1 };
  const { onProgress: _, ...shareOptions } = options;

  it('ends a running share at each client’s next operation', async () => {
    const window = beginRun(options, 1);
    const { target, puts } = counting((n) => {
      if (n === 50) stopRun(window);
    });
    const part = await runShare(target, { options: shareOptions, clients: [0, 1, 2, 3], window });
    expect(puts()).toBeGreaterThanOrEqual(50);
    expect(puts()).toBeLessThan(50 + options.concurrency);
    expect(part.measured).toBe(puts());
  });

  it('does not start a share still waiting for the others', async () => {
    const window = beginRun(options, 2);
    const { target, puts } = counting(() => undefined);
    const waiting = runShare(target, { options: shareOptions, clients: [0, 2], window });
    stopRun(window);
    const part = await waiting;
    expect(part.measured).toBe(0);
    expect(puts()).toBe(0);
  });
});
