import { Writable } from 'node:stream';
import { groupId } from '@flotilla/core';
import { MemoryNetwork } from '@flotilla/transport/testing';
import { SeededRng } from '@flotilla/core';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { Host } from '../../src/host/host.js';
import type { ShellLogger } from '../../src/shell-logger.js';
import { waitUntil } from '../../test-support/node-cluster.js';
import { tempDir, useTempStores } from '../support/fixtures.js';
import { key } from '../support/host-cluster.js';

useTempStores();

/**
 * A single voter elects itself 10–20 ticks (100–200 ms at these 10 ms ticks)
 * after its worker started; 10 s means it never will, not that it is slow.
 */
const LEADER_WAIT_MS_MAX = 10_000;
/** A killed worker's exit reaches the Host within milliseconds; 10 s means onFatal never ran. */
const FATAL_WAIT_MS_MAX = 10_000;
/** Polling interval for both: one tick. */
const POLL_INTERVAL_MS = 10;

/** Runs `request` until it stops failing with NOT_LEADER (the shard has elected), bounded in time. */
function whenLed<T>(what: string, request: () => Promise<T>): Promise<{ value: T }> {
  return waitUntil(
    `${what} (answered without NOT_LEADER)`,
    async () => {
      try {
        return { value: await request() };
      } catch (err) {
        if ((err as { code?: string }).code !== 'NOT_LEADER') throw err;
        return undefined;
      }
    },
    { timeoutMs: LEADER_WAIT_MS_MAX, intervalMs: POLL_INTERVAL_MS },
  );
}

const hosts: Host[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.close();
});

function capturingLogger(): { logger: ShellLogger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  const logger = pino({ level: 'info' }, stream) as unknown as ShellLogger;
  return { logger, lines: () => chunks.join('').split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

async function startSingleNode(options: { dir: string; coreCount: number; logger: ShellLogger; onFatal?: (err: Error) => void }): Promise<Host> {
  const network = new MemoryNetwork({ rng: new SeededRng(1) });
  const host = await Host.start({
    nodeId: 1,
    dir: options.dir,
    transport: network.endpoint(1),
    coreCount: options.coreCount,
    coreMode: 'worker',
    ticker: { kind: 'timer', intervalMs: 10 },
    logger: options.logger,
    ...(options.onFatal === undefined ? {} : { onFatal: options.onFatal }),
  });
  hosts.push(host);
  return host;
}

describe('worker cores', () => {
  it('run each shard on its own thread and survive a restart from their LMDB environments', async () => {
    const dir = tempDir();
    const { logger } = capturingLogger();
    let host = await startSingleNode({ dir, coreCount: 2, logger });
    await host.createShard({ shardId: groupId(1), voters: [1], bounds: { start: key('a'), end: key('m') } });
    await host.createShard({ shardId: groupId(2), voters: [1], bounds: { start: key('m'), end: null } });
    const propose = async (shardId: number, k: string, v: string) =>
      (await whenLed(`put ${k} on shard ${shardId}`, () => host.propose(groupId(shardId), { op: 'put', key: key(k), value: key(v) }))).value;
    expect((await propose(1, 'b', 'one')).ok).toBe(true);
    expect((await propose(2, 'x', 'two')).ok).toBe(true);
    const stats = await host.coreStats();
    expect(stats.map((s) => s.groupCount)).toEqual([1, 1]);
    await host.close();
    hosts.length = 0;

    host = await startSingleNode({ dir, coreCount: 2, logger });
    const read = async (shardId: number, k: string) => (await whenLed(`get ${k} on shard ${shardId} after the restart`, () => host.get(groupId(shardId), key(k)))).value?.value.toString();
    expect(await read(1, 'b')).toBe('one');
    expect(await read(2, 'x')).toBe('two');
  }, 30_000);

  it("serves linearizable reads on the Host's thread, each seeing every write answered before it", async () => {
    const host = await startSingleNode({ dir: tempDir(), coreCount: 2, logger: capturingLogger().logger });
    await host.createShard({ shardId: groupId(1), voters: [1], bounds: { start: key('a'), end: key('m') } });
    await host.createShard({ shardId: groupId(2), voters: [1], bounds: { start: key('m'), end: null } });
    expect([host.coreOf(1), host.coreOf(2)].sort()).toEqual([0, 1]);
    await whenLed('shard 1', () => host.propose(groupId(1), { op: 'put', key: key('b'), value: key('0') }));
    await whenLed('shard 2', () => host.propose(groupId(2), { op: 'put', key: key('x'), value: key('0') }));
    const localBefore = host.stats.localReads;
    for (let i = 1; i <= 300; i++) {
      for (const [shardId, k] of [[1, 'b'], [2, 'x']] as const) {
        // A read in flight while the write commits keeps lmdb-js's read transaction of this turn open: the
        // read after the write's answer must not be served from it.
        const before = host.get(groupId(shardId), key(k));
        const written = await host.propose(groupId(shardId), { op: 'put', key: key(k), value: key(String(i)) });
        expect(written.ok).toBe(true);
        expect((await host.get(groupId(shardId), key(k)))?.value.toString()).toBe(String(i));
        expect(Number((await before)?.value.toString())).toBeLessThanOrEqual(i);
      }
    }
    // Served here, not by the cores (the odd one may meet a round in progress and go through its core).
    expect(host.stats.localReads - localBefore).toBeGreaterThan(1_000);
    // A key outside the range still gets the core's refusal.
    await expect(host.get(groupId(1), key('z'))).rejects.toMatchObject({ code: 'KEY_OUT_OF_RANGE' });
    // A caller reading in a loop does not keep the event loop (ticks, transport, cores' outputs) from turning.
    let turned = false;
    setImmediate(() => (turned = true));
    for (let i = 0; i < 2_000 && !turned; i++) await host.get(groupId(1), key('b'));
    expect(turned).toBe(true);
  }, 60_000);

  it('a dead core stops the node with one clear log line and fails what was pending', async () => {
    const { logger, lines } = capturingLogger();
    let fatal: Error | undefined;
    const host = await startSingleNode({ dir: tempDir(), coreCount: 2, logger, onFatal: (err) => (fatal = err) });
    await host.createShard({ shardId: groupId(2), voters: [1] });
    await host.killCore(0);
    await waitUntil('onFatal after core 0 was killed', () => fatal, { timeoutMs: FATAL_WAIT_MS_MAX, intervalMs: POLL_INTERVAL_MS });
    expect(fatal).toMatchObject({ code: 'CORE_CRASHED' });
    const crashLines = lines().filter((l) => l['msg'] === 'worker core crashed; the node stops');
    expect(crashLines).toHaveLength(1);
    expect(crashLines[0]).toMatchObject({ core: 0, nodeId: 1 });
    await expect(host.propose(groupId(2), { op: 'put', key: key('k'), value: key('v') })).rejects.toMatchObject({ code: 'CORE_CRASHED' });
  }, 30_000);

  it('refuses a data directory made with another core count, naming both', async () => {
    const dir = tempDir();
    const { logger } = capturingLogger();
    const host = await startSingleNode({ dir, coreCount: 2, logger });
    await host.close();
    hosts.length = 0;
    await expect(startSingleNode({ dir, coreCount: 1, logger })).rejects.toMatchObject({ code: 'DATA_DIR_CORES_MISMATCH', message: expect.stringMatching(/2 cores; started with 1/) });
  }, 30_000);
});
