// A full disk is an error, not an exit (issue 14, bug 5): a node whose data
// directory fills up refuses writes with DISK_FULL, keeps serving stale reads,
// stops taking part in Raft for as long as it cannot persist, and resumes by
// itself when space returns, losing nothing acknowledged. The data directory
// sits on a small tmpfs this test mounts (CI runs as root) and removes by name.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { groupId, type GroupId } from '@flotilla/core';
import { afterEach, describe, expect, it } from 'vitest';
import { HostCluster, shardKey, text } from '../support/host-cluster.js';

const isRoot = process.getuid?.() === 0;
const MOUNT = join(tmpdir(), `flotilla-disk-full-test-${process.pid}`);
const SMALL = '24m';
const LARGE = '128m';
const SHARD_IDS = [1, 2];
const VALUE_BYTES = 64 * 1024;
/** Far more than the small tmpfs holds: the disk fills well before this many writes. */
const WRITES_MAX = 400;

let cluster: HostCluster | undefined;
afterEach(async () => {
  try {
    await cluster?.close();
  } finally {
    cluster = undefined;
    // Removed by name, also when the cluster failed to close (a host that stopped on a fatal error).
    if (isRoot) {
      try {
        execFileSync('umount', [MOUNT]);
      } catch {
        // not mounted: the test failed before mounting
      }
      rmSync(MOUNT, { recursive: true, force: true });
    }
  }
});

/** Writes through the cluster; false if the write timed out (its outcome is unknown, it is not counted as acknowledged). */
async function acknowledgedWrite(c: HostCluster, shardId: number, name: string, value: Uint8Array): Promise<boolean> {
  try {
    await c.write(shardId, { op: 'put', key: shardKey(shardId, name), value });
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === 'REQUEST_TIMEOUT') return false;
    throw err;
  }
}

describe.runIf(isRoot)('a node whose disk fills up', () => {
  it('refuses writes, serves stale reads, stays up, and catches up once space returns', async () => {
    mkdirSync(MOUNT, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${SMALL}`, 'flotilla-disk-full-test', MOUNT]);
    const c = await HostCluster.start({
      nodeCount: 3,
      coreCount: 1,
      seed: 5,
      dirFor: (id) => (id === 3 ? join(MOUNT, 'node-3') : undefined),
      host: { diskReserveBytes: 1024 * 1024 },
    });
    cluster = c;
    await c.createShards(SHARD_IDS);
    await c.tickUntil('every shard led', async () => (await c.agreedLeaders(SHARD_IDS)) !== undefined, 100);
    const value = new Uint8Array(VALUE_BYTES).fill(3);
    await c.write(1, { op: 'put', key: shardKey(1, 'first'), value: new TextEncoder().encode('before') });

    // Fill node 3's disk through the cluster: the majority keeps acknowledging, node 3 falls behind.
    const acknowledged: string[] = [];
    let i = 0;
    for (; i < WRITES_MAX && !c.host(3).diskStatus().full; i++) {
      const shardId = SHARD_IDS[i % SHARD_IDS.length]!;
      // A write node 3 took as leader just before its disk filled times out: its outcome is unknown.
      if (await acknowledgedWrite(c, shardId, `k${i}`, value)) acknowledged.push(`${shardId}/k${i}`);
    }
    expect(c.host(3).diskStatus().full, `node 3's disk did not fill within ${WRITES_MAX} writes`).toBe(true);
    expect(c.fatal).toEqual([]);
    expect(acknowledged.length, 'writes acknowledged before the disk filled').toBeGreaterThan(10);

    // Writes and linearizable reads on node 3 fail at once with a clear code; stale reads are served.
    const host3 = c.host(3);
    const settled = <T>(p: Promise<T>) => p.then((value) => ({ value }), (err: unknown) => ({ code: (err as { code?: string }).code }));
    const write = settled(host3.propose(groupId(1) as GroupId, { op: 'put', key: shardKey(1, 'refused'), value }));
    const linearizable = settled(host3.get(groupId(1) as GroupId, shardKey(1, 'first')));
    const stale = host3.get(groupId(1) as GroupId, shardKey(1, 'first'), { consistency: 'stale' });
    await c.settle();
    expect(await write).toMatchObject({ code: expect.stringMatching(/^(DISK_FULL|NOT_LEADER)$/) });
    expect(await linearizable).toMatchObject({ code: expect.stringMatching(/^(DISK_FULL|NOT_LEADER)$/) });
    expect(text((await stale)?.value)).toBe('before');

    // The majority goes on without it.
    for (let j = 0; j < 10; j++, i++) {
      const shardId = SHARD_IDS[j % SHARD_IDS.length]!;
      if (await acknowledgedWrite(c, shardId, `k${i}`, value)) acknowledged.push(`${shardId}/k${i}`);
    }
    await c.tick(30);
    expect(c.fatal).toEqual([]);
    expect(c.host(3).diskStatus().full).toBe(true);

    // Space returns: node 3 resumes by itself and catches up with everything acknowledged.
    execFileSync('mount', ['-o', `remount,size=${LARGE}`, MOUNT]);
    await c.tickUntil(
      'node 3 caught up once space returned',
      async () => {
        if (c.host(3).diskStatus().full) return false;
        const statuses = await c.statuses();
        return SHARD_IDS.every((shardId) => new Set([...statuses.values()].map((l) => l.find((s) => s.shardId === shardId)?.applied)).size === 1);
      },
      600,
    );
    expect(c.fatal).toEqual([]);
    for (const k of acknowledged) {
      const [shard, name] = k.split('/') as [string, string];
      const got = await c.host(3).get(groupId(Number(shard)) as GroupId, shardKey(Number(shard), name), { consistency: 'stale' });
      expect(got?.value.byteLength, `node 3 lost acknowledged write ${k}`).toBe(VALUE_BYTES);
    }
    const stats = (await c.host(3).coreStats())[0]!;
    expect(stats.diskFullCommits, 'group commits that failed for want of space').toBeGreaterThan(0);
    expect(stats.segmentsDroppedDiskFull, 'Raft traffic dropped while full').toBeGreaterThan(0);
    // And takes writes again.
    await c.write(1, { op: 'put', key: shardKey(1, 'after'), value: new TextEncoder().encode('after') });
  }, 180_000);
});
