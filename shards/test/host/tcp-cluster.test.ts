// Three node processes (test-support/node-child.ts) over real TCP and LMDB:
// a kill -9 of the node leading the most shards under write load, fail-over,
// restart and catch-up by snapshot; bad frames from a raw socket; and
// well-formed frames forged to trip Raft's assertions.
// Needs `npm run build` in shards/ (dist/ and dist-support/).
import { connect, type Socket } from 'node:net';
import { FRAME_KIND_CODES, FRAME_VERSION, encodeFrame } from '@flotilla/transport';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { GroupId, NodeId } from '@flotilla/core';
import { encodeBatch } from '../../src/host/message-codec.js';
import { encodeSegment } from '../../src/host/node-batch.js';
import type { AckedWrite } from '../../test-support/node-child.js';
import { forEachConcurrent, hexOf, killLeftoverNodes, NODE_CHILD_CLUSTER_ID, startWriter, TcpCluster, waitUntil, WriteLog } from './tcp-harness.js';

/** Fast ticks keep the file short: elections after 10–20 ticks = 200–400 ms of silence. */
const TICK_INTERVAL_MS = 20;
const CORE_COUNT = 2;
/** Small enough that the writes during the outage compact the leaders' logs past the dead replica. */
const COMPACTION_TRIGGER_ENTRIES = 200;
const COMPACTION_KEEP_ENTRIES = 20;
/** Peers reconnect to the restarted node within this (the transport's default backoff ceiling is 5 s). */
const RECONNECT_DELAY_MS_MAX = 250;
const SHARD_COUNT = 24;
const shardIds = Array.from({ length: SHARD_COUNT }, (_, i) => i + 1);

/** First elections: every group campaigns at creation; 10 s is generous on a loaded 2-core machine. */
const LEADERS_AGREED_MS_MAX = 10_000;
/** Writes acknowledged before the kill, so the kill lands in the middle of a running load. */
const KILL_AFTER_ACK_COUNT = 200;
/**
 * Every shard led by a survivor this soon after the kill: an election timeout
 * (≤ 20 ticks = 400 ms) or node liveness (10 ticks) for quiesced groups, plus
 * pre-vote and vote rounds; 8 s leaves room for a starved 2-core machine.
 */
const FAILOVER_MS_MAX = 8_000;
/**
 * Writes per shard while the node is down. Above the compaction trigger by a
 * margin: a leader's snapshot index trails its applied index by < trigger
 * entries, so after this many it is past anything the dead replica holds.
 */
const OUTAGE_WRITE_COUNT_PER_SHARD = 240;
const OUTAGE_LOAD_MS_MAX = 25_000;
/** Restarted node: reconnect, wake, snapshot every shard, replay the rest. */
const CATCH_UP_MS_MAX = 20_000;
const READ_CONCURRENCY = 16;

let cluster: TcpCluster | undefined;

const keyOf = (shardId: number, name: string): string => hexOf(`s${String(shardId).padStart(6, '0')}/${name}`);

/** Nodes ordered by how many of `leaders` they lead, most first (ties: lower id). */
function byLeaderCount(leaders: ReadonlyMap<number, number>, nodeIds: readonly number[]): number[] {
  const count = (id: number) => [...leaders.values()].filter((l) => l === id).length;
  return [...nodeIds].sort((a, b) => count(b) - count(a) || a - b);
}

describe('3 node processes × 24 shards over TCP', () => {
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
    killLeftoverNodes();
  });

  it('after kill -9 of the node leading the most shards, survivors lead every shard within the bound and keep taking writes; the restarted node catches up by snapshot and serves every acknowledged write', { timeout: 60_000 }, async () => {
    const started = performance.now();
    const c = (cluster = await TcpCluster.start({
      nodeCount: 3,
      coreCount: CORE_COUNT,
      tickIntervalMs: TICK_INTERVAL_MS,
      compactionTriggerEntries: COMPACTION_TRIGGER_ENTRIES,
      compactionKeepEntries: COMPACTION_KEEP_ENTRIES,
      reconnectDelayMsMax: RECONNECT_DELAY_MS_MAX,
    }));
    await c.createShards(shardIds);
    await waitUntil('every shard has a leader all three nodes agree on', () => c.agreedLeaders(shardIds), { timeoutMs: LEADERS_AGREED_MS_MAX });
    const electedMs = performance.now() - started;

    // A client load through leader hints, running across the kill.
    const log = new WriteLog();
    const writer = startWriter(c, { shardIds, laneCount: 8, keyCountPerShard: 8, tag: 'client', log, writeCountMax: 50_000 });
    await waitUntil(`${KILL_AFTER_ACK_COUNT} client writes acknowledged`, () => (writer.acked >= KILL_AFTER_ACK_COUNT ? true : undefined), { timeoutMs: 20_000, intervalMs: 10 });
    const leadersBefore = await waitUntil('leaders agreed before the kill', () => c.agreedLeaders(shardIds), { timeoutMs: LEADERS_AGREED_MS_MAX });
    const victim = byLeaderCount(leadersBefore, c.nodeIds)[0]!;
    const victimLeaderCount = [...leadersBefore.values()].filter((l) => l === victim).length;
    const survivors = c.nodeIds.filter((id) => id !== victim);
    const killedAt = performance.now();
    await c.kill(victim);

    const leadersAfter = await waitUntil('every shard led by a survivor that both survivors agree on', () => c.agreedLeaders(shardIds), { timeoutMs: FAILOVER_MS_MAX, intervalMs: 20 });
    const failoverMs = performance.now() - killedAt;
    for (const shardId of shardIds) expect(survivors, `shard ${shardId} leader`).toContain(leadersAfter.get(shardId));

    // Every shard takes a write through the survivors, then the client load stops.
    await Promise.all(shardIds.map((shardId) => c.write(shardId, keyOf(shardId, 'after-kill'), hexOf(`after-kill-${shardId}`), log)));
    const writerReport = await writer.stop();
    expect(writerReport.failures).toEqual([]);

    // The outage load: more entries per shard than the compaction trigger, from inside each survivor.
    const outageLeaders = await waitUntil('leaders agreed for the outage load', () => c.agreedLeaders(shardIds), { timeoutMs: FAILOVER_MS_MAX });
    const loads = await Promise.all(
      survivors.map((id) => {
        const led = shardIds.filter((s) => outageLeaders.get(s) === id);
        if (led.length === 0) return undefined;
        return c.node(id).load({ shardIds: led, count: led.length * OUTAGE_WRITE_COUNT_PER_SHARD, concurrency: 32, valueBytes: 64, durationMsMax: OUTAGE_LOAD_MS_MAX, keyCountPerShard: 32, tag: `outage${id}` });
      }),
    );
    let outageAcked = 0;
    let outageIssued = 0;
    const outageErrors: Record<string, number> = {};
    const outageAckedByShard = new Map<number, number>();
    for (const r of loads) {
      if (r === undefined) continue;
      log.addLoad(r);
      const acked = r.acked as readonly AckedWrite[];
      outageAcked += acked.length;
      outageIssued += r.ops;
      for (const [shardId] of acked) outageAckedByShard.set(shardId, (outageAckedByShard.get(shardId) ?? 0) + 1);
      for (const [code, n] of Object.entries(r.errorsByCode)) outageErrors[code] = (outageErrors[code] ?? 0) + n;
    }
    // Leadership is stable without faults: nearly every proposal issued must land (a stray election may
    // refuse a few). Counted against what was issued, not what was planned: on a slow machine the load's
    // time bound may stop it early, and the top-ups below make up the count; speed is bench material.
    expect(outageIssued, 'outage proposals issued').toBeGreaterThan(0);
    expect(outageAcked, `outage proposals acknowledged of ${outageIssued} issued`).toBeGreaterThanOrEqual(Math.floor(outageIssued * 0.95));
    const outageMs = loads.reduce((ms, r) => Math.max(ms, r?.durationMs ?? 0), 0);
    // A load skips a shard while its leadership moves; top such shards up through the client so every one is past the trigger.
    const topUps = shardIds.flatMap((shardId) =>
      Array.from({ length: Math.max(0, OUTAGE_WRITE_COUNT_PER_SHARD - (outageAckedByShard.get(shardId) ?? 0)) }, (_, n) => ({ shardId, n })),
    );
    await forEachConcurrent(topUps, 16, ({ shardId, n }) => c.write(shardId, keyOf(shardId, `top-up/${n % 32}`), hexOf(`top-up-${n}`), log).then(() => undefined));

    // Restart on the same directory and port; wait until every replica applied the same, committed, index.
    const restartedAt = performance.now();
    const restarted = await c.restart(victim);
    // No write after the restart: leaders that quiesced while the node was down must wake on its
    // return and catch it up by themselves (Quiescence.onPeerUp).
    const converged = await waitUntil(
      'every replica of every shard applied up to its commit, equal on all three nodes',
      async () => {
        const statuses = await c.statuses();
        for (const shardId of shardIds) {
          const replicas = [...statuses.values()].map((list) => list.find((s) => s.shardId === shardId));
          if (replicas.some((s) => s === undefined || s.applied !== s.commit || s.commit !== replicas[0]!.commit)) return undefined;
        }
        return statuses;
      },
      { timeoutMs: CATCH_UP_MS_MAX, intervalMs: 100 },
    );
    const catchUpMs = performance.now() - restartedAt;
    expect(converged.size).toBe(3);

    const restartedStats = await restarted.stats();
    const survivorStats = await Promise.all(survivors.map((id) => c.node(id).stats()));
    const snapshotsSent = survivorStats.reduce((n, s) => n + (s.coreTotals['snapshotsSent'] ?? 0), 0);
    expect(restartedStats.coreTotals['snapshotsInstalled'], 'snapshots installed on the restarted node').toBeGreaterThan(0);

    // Every acknowledged write: linearizable through the leader, and stale on the restarted node.
    const wrong: string[] = [];
    await forEachConcurrent(log.keys(), READ_CONCURRENCY, async ({ shardId, key }) => {
      const linearizable = await c.read(shardId, key);
      const stale = await restarted.request<{ value: string; version: number } | null>({ op: 'get', shardId, key, consistency: 'stale' });
      const a = log.check(shardId, key, linearizable);
      const b = log.check(shardId, key, stale);
      if (a !== undefined) wrong.push(`linearizable via leader: ${a}`);
      if (b !== undefined) wrong.push(`stale on restarted node ${victim}: ${b}`);
    });
    expect(wrong.slice(0, 20)).toEqual([]);

    console.info(
      [
        `tcp cluster: leaders elected in ${Math.round(electedMs)} ms;`,
        `killed node ${victim} (led ${victimLeaderCount}/${SHARD_COUNT}) after ${KILL_AFTER_ACK_COUNT}+ client acks; survivors led every shard after ${Math.round(failoverMs)} ms;`,
        `client writes acked ${writerReport.acked}; outage load acked ${outageAcked} of ${outageIssued} issued in ${Math.round(outageMs)} ms (errors ${JSON.stringify(outageErrors)}, p99 ${Math.max(...loads.map((r) => r?.latencyMs.p99 ?? 0))} ms, ${topUps.length} top-up writes);`,
        `restarted node caught up in ${Math.round(catchUpMs)} ms, ${restartedStats.coreTotals['snapshotsInstalled']} snapshots installed (${snapshotsSent} sent);`,
        `${log.keyCount} keys checked (${log.ackedCount} acks, ${log.unknownCount} unknown outcomes); total ${Math.round(performance.now() - started)} ms`,
      ].join(' '),
    );
  });
});

// ---------------------------------------------------------------- bad frames

/** Enough shards that every node leads some (initial campaigns rotate over the voters with the shard id). */
const frameShardIds = [1, 2, 3, 4, 5, 6];
/** The node closes a bad connection at once; 10 s means it did not. */
const RAW_CLOSE_TIMEOUT_MS = 10_000;
/** A node id no cluster member has. */
const STRANGER_NODE_ID = 99;
/** The member a forger names in its hello (the bad frames must come from an accepted connection). */
const FORGED_MEMBER = 2;
/** A cluster id that is not the node-child cluster's. */
const OTHER_CLUSTER_ID = 'ffffffffffffffffffffffffffffffff';

/** The hello a raw socket sends to pass as `nodeId` of the node-child cluster (or of another cluster). */
const helloAs = (nodeId: number, clusterId = NODE_CHILD_CLUSTER_ID): Buffer => encodeFrame({ kind: 'hello', nodeId, clusterId });

function rawFrame(options: { version?: number; kind: number; payload: Buffer; length?: number }): Buffer {
  const header = Buffer.alloc(6);
  header.writeUInt32BE(options.length ?? options.payload.length + 2, 0);
  header[4] = options.version ?? FRAME_VERSION;
  header[5] = options.kind;
  return Buffer.concat([header, options.payload]);
}

function rawConnect(port: number): Promise<Socket> {
  return new Promise((resolvePromise, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
    socket.once('connect', () => resolvePromise(socket));
    socket.once('close', () => reject(new Error(`raw connection to port ${port} closed before it opened`)));
  });
}

/** Writes `bytes` (then half-closes, if `end`) and resolves once the node closed the connection. */
async function sendUntilClosedByNode(port: number, bytes: Buffer, options: { end: boolean }): Promise<void> {
  const socket = await rawConnect(port);
  await new Promise<void>((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`node did not close the raw connection within ${RAW_CLOSE_TIMEOUT_MS} ms`));
    }, RAW_CLOSE_TIMEOUT_MS);
    socket.once('close', () => {
      clearTimeout(timer);
      resolvePromise();
    });
    if (options.end) socket.end(bytes);
    else socket.write(bytes);
  });
}

describe('a node process fed bad frames on its transport port', () => {
  let c: TcpCluster;
  const log = new WriteLog();
  let round = 0;
  /** The node under attack: one that leads shards, so writes go through it. */
  let target = 0;
  /** The hello of another member: bad frames must come from a connection the target accepted, or they never reach the frame decoder's later checks. */
  let hello: Buffer = Buffer.alloc(0);

  beforeAll(async () => {
    c = await TcpCluster.start({ nodeCount: 3, coreCount: CORE_COUNT, tickIntervalMs: TICK_INTERVAL_MS, reconnectDelayMsMax: RECONNECT_DELAY_MS_MAX });
    await c.createShards(frameShardIds);
    const leaders = await waitUntil('every shard has an agreed leader', () => c.agreedLeaders(frameShardIds), { timeoutMs: LEADERS_AGREED_MS_MAX });
    target = byLeaderCount(leaders, c.nodeIds)[0]!;
    hello = helloAs(c.nodeIds.find((id) => id !== target)!);
  }, 30_000);

  afterAll(async () => {
    await c?.close();
    killLeftoverNodes();
  });

  const port = () => c.configs.get(target)!.port;

  /** Writes through the target to the shards it leads and through hints to the rest; the target then reads them all. */
  async function expectStillServing(): Promise<void> {
    round++;
    const node = c.node(target);
    const leaders = await waitUntil('agreed leaders', () => c.agreedLeaders(frameShardIds), { timeoutMs: LEADERS_AGREED_MS_MAX });
    const led = frameShardIds.filter((s) => leaders.get(s) === target);
    expect(led.length, `shards led by node ${target}`).toBeGreaterThan(0);
    for (const shardId of frameShardIds) {
      const key = keyOf(shardId, `after-bad-frame-${round}`);
      const value = hexOf(`round-${round}`);
      if (led.includes(shardId)) {
        const r = await node.request<{ ok: boolean; version: number }>({ op: 'propose', shardId, key, value });
        expect(r.ok, `write through node ${target} to shard ${shardId}`).toBe(true);
        log.acked(shardId, key, value, r.version);
      } else {
        await c.write(shardId, key, value, log);
      }
      // The target still hears from its peers: it applies what it did not lead too.
      await waitUntil(`node ${target} applied the write to shard ${shardId}`, async () => {
        const v = await node.request<{ value: string; version: number } | null>({ op: 'get', shardId, key, consistency: 'stale' });
        return v !== null && log.check(shardId, key, v) === undefined ? true : undefined;
      }, { timeoutMs: 5_000, intervalMs: 20 });
    }
  }

  const CLOSING_CASES: readonly [string, () => Buffer, { end: boolean }][] = [
    ['garbage bytes', () => Buffer.from('GET / HTTP/1.1\r\nHost: flotilla\r\n\r\n'), { end: false }],
    ['a truncated frame, then close', () => Buffer.concat([hello, rawFrame({ kind: FRAME_KIND_CODES.batch, payload: Buffer.alloc(10, 7), length: 100 })]), { end: true }],
    ['an oversized length header', () => Buffer.concat([hello, Buffer.from([0x7f, 0xff, 0xff, 0xff])]), { end: false }],
    ['an unknown version byte', () => Buffer.concat([hello, rawFrame({ version: 9, kind: FRAME_KIND_CODES.batch, payload: Buffer.from([1]) })]), { end: false }],
  ];

  it.each(CLOSING_CASES)('closes the connection on %s, counts it in framesRejected, and keeps serving writes', async (_name, bytes, options) => {
    const node = c.node(target);
    const before = await node.stats();
    await sendUntilClosedByNode(port(), bytes(), options);
    const after = await waitUntil('framesRejected counted', async () => {
      const s = await node.stats();
      return s.transport.framesRejected > before.transport.framesRejected ? s : undefined;
    }, { timeoutMs: 5_000, intervalMs: 10 });
    expect(after.transport.framesRejected).toBe(before.transport.framesRejected + 1);
    expect(after.host.framesDropped).toBe(before.host.framesDropped);
    await expectStillServing();
  });

  it('drops batches of garbage msgpack after a valid hello (counted in framesDropped), keeps the connection, and keeps serving writes', async () => {
    const node = c.node(target);
    const before = await node.stats();
    const socket = await rawConnect(port());
    let closedByNode = false;
    socket.once('close', () => (closedByNode = true));
    try {
      // 0xc1 is never used in msgpack; [1, 2, 3] decodes but is not a segment (a 5-tuple of format 1).
      const undecodable = encodeFrame({ kind: 'batch', batch: Buffer.from([0xc1, 0xc1, 0xc1, 0xc1]) });
      const notASegment = encodeFrame({ kind: 'batch', batch: Buffer.from([0x93, 0x01, 0x02, 0x03]) });
      socket.write(Buffer.concat([hello, undecodable, notASegment]));
      const after = await waitUntil('framesDropped counted', async () => {
        const s = await node.stats();
        return s.host.framesDropped >= before.host.framesDropped + 2 ? s : undefined;
      }, { timeoutMs: 5_000, intervalMs: 10 });
      expect(after.host.framesDropped).toBe(before.host.framesDropped + 2);
      // The transport accepted both frames: well-formed, from an identified peer.
      expect(after.transport.framesRejected).toBe(before.transport.framesRejected);
      expect(after.transport.batchesReceived - before.transport.batchesReceived).toBeGreaterThanOrEqual(2);
      expect(closedByNode).toBe(false);
      await expectStillServing();
    } finally {
      socket.destroy();
    }
  });
});

describe('a node process fed well-formed frames forged on its transport port', () => {
  let c: TcpCluster | undefined;
  afterEach(async () => {
    await c?.close();
    c = undefined;
    killLeftoverNodes();
  });

  // A hello naming a member of the cluster is trusted (no authentication yet), so these reach the
  // cores. Raft assumes neither can come from a correct leader (the heartbeat trips RaftLog.commitTo's
  // assertion); the cores must refuse both as bad input, count them and carry on: bad network
  // input is never an assertion failure.
  // From a stranger or another cluster they never get that far: the hello is refused.
  it('refuses a heartbeat whose commit is past its log and an append with non-contiguous entries, and keeps its leadership and serving writes', async () => {
    // Node 2 is the member whose name the forger takes; shard 1 lives on node 1 alone.
    c = await TcpCluster.start({ nodeCount: 2, coreCount: CORE_COUNT, tickIntervalMs: TICK_INTERVAL_MS });
    await c.createShards([1], [1]);
    await waitUntil('the single voter leads', async () => ((await c!.node(1).shards())[0]?.role === 'leader' ? true : undefined), { timeoutMs: LEADERS_AGREED_MS_MAX });
    const node = c.node(1);
    const [statusBefore] = await node.shards();
    const before = await node.stats();
    // Heartbeat tuple: shard 1, a term above the leader's, commit far past its last index, round 1, no quiesce.
    const heartbeat = encodeSegment({ heartbeats: [1, 1_000, 1_000_000, 1, 0], heartbeatResponses: [], sections: [], wakes: [], notLeading: [] });
    const append = encodeSegment({
      heartbeats: [],
      heartbeatResponses: [],
      sections: [
        1,
        encodeBatch([
          {
            shardId: 1 as GroupId,
            message: { type: 'append', from: FORGED_MEMBER as NodeId, to: 1 as NodeId, term: 1_000, index: 1, logTerm: 1, commit: 0, entries: [{ index: 7, term: 1_000, type: 'normal', data: new Uint8Array(0) }] },
          },
        ]),
      ],
      wakes: [],
      notLeading: [],
    });
    const forged = Buffer.concat([encodeFrame({ kind: 'batch', batch: heartbeat }), encodeFrame({ kind: 'batch', batch: append })]);
    // A stranger of this cluster and a member of another: refused at hello, nothing reaches a core.
    for (const [hello, counter] of [
      [helloAs(STRANGER_NODE_ID), 'hellosRefusedNotMember'],
      [helloAs(FORGED_MEMBER, OTHER_CLUSTER_ID), 'hellosRefusedCluster'],
    ] as const) {
      const refusedBefore = (await node.stats()).transport[counter];
      await sendUntilClosedByNode(c.configs.get(1)!.port, Buffer.concat([hello, forged]), { end: false });
      const s = await node.stats();
      expect(s.transport[counter], counter).toBe(refusedBefore + 1);
      expect(s.coreTotals['messagesRejected'] ?? 0, 'nothing reached a core').toBe(before.coreTotals['messagesRejected'] ?? 0);
    }
    const socket = await rawConnect(c.configs.get(1)!.port);
    try {
      socket.write(Buffer.concat([helloAs(FORGED_MEMBER), forged]));
      const after = await waitUntil('both forged messages refused', async () => {
        const s = await node.stats();
        return (s.coreTotals['messagesRejected'] ?? 0) >= (before.coreTotals['messagesRejected'] ?? 0) + 2 ? s : undefined;
      }, { timeoutMs: 5_000, intervalMs: 20 }).catch((err: unknown) => {
        if (!node.running) throw new Error(`node exited on forged input:\n${node.stderr().slice(-2_000)}`);
        throw err;
      });
      expect(node.running, 'node process survived').toBe(true);
      expect(after.coreTotals['messagesRejected']).toBe((before.coreTotals['messagesRejected'] ?? 0) + 2);
    } finally {
      socket.destroy();
    }
    const [statusAfter] = await node.shards();
    expect({ role: statusAfter!.role, term: statusAfter!.term }).toEqual({ role: 'leader', term: statusBefore!.term });
    const written = await node.request<{ ok: boolean; version: number }>({ op: 'propose', shardId: 1, key: keyOf(1, 'after-forged-frames'), value: hexOf('still here') });
    expect(written.ok).toBe(true);
    expect(written.version).toBeGreaterThan(0);
  });
});
