// The placement driver on a live cluster (in one process, over TCP): 17 ranges on 3 nodes; a 4th and a
// 5th node join and the driver moves replicas and leaders onto them until every node is within one of
// the mean, while clients write and read through every node — no acknowledged write lost, every read
// linearizable (one writer per key), no read failed, writes failed only with leader changes. Then a
// node stops for good and its replicas are rebuilt on the others, and the node running the driver
// stops in the middle of a move: the next driver finishes or undoes it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { ShellLogger } from '@flotilla/shards';
import { afterAll, describe, expect, it } from 'vitest';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { createHttpServer, type HttpServer } from '../src/http/app.js';
import { FlotillaNode, type NodeOptions } from '../src/node.js';
import { untilMoveInFlight, type OperatorView } from './support/move-in-flight.js';
import { MonotonicRegisters, outcomeOfWriteError } from './support/registers.js';

const logger = pino({ level: process.env['FLOTILLA_TEST_LOG'] ?? 'silent' }) as unknown as ShellLogger;
const b = (s: string) => Buffer.from(s);
const RANGE_COUNT = 16;
/** Fast enough for a test, slow enough for 5 nodes on 2 CPUs: heartbeats every 100 ms, down after 3 s. */
const PLACEMENT: NodeOptions['placement'] = { suspectAfterMs: 1_000, downAfterMs: 3_000, stepRetryMs: 500, operatorTimeoutMs: 20_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface DriverView {
  nodes: { nodeId: number; state: string; replicaCount: number; leaderCount: number; silentMs: number | null }[];
  rangeCount: number;
  operators: OperatorView[];
}
/** Moves asked for, at most, for one to be seen in flight before the driver stops (one finishes in a few hundred ms). */
const MOVE_ATTEMPTS_MAX = 5;

let root: string | undefined;
const nodes = new Map<number, FlotillaNode>();
/** A node that stops on a fatal error (a worker core's assertion) fails the test at once, with the error. */
const fatal: string[] = [];
const onFatal = (id: number) => (err: Error) => void fatal.push(`node ${id}: ${err.message}`);
let http: HttpServer | undefined;

afterAll(async () => {
  await http?.close().catch(() => undefined);
  for (const n of nodes.values()) await n.close().catch(() => undefined);
  if (root !== undefined) rmSync(root, { recursive: true, force: true });
});

/** Polls until `check` returns a value, or fails after `timeoutMs` saying what it waited for and what it last saw. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    if (fatal.length > 0) throw new Error(`${what}: a node stopped on a fatal error: ${fatal.join('; ')}`);
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      const view = await driverView().catch((err: unknown) => `unreachable: ${String(err)}`);
      const configs = await rangeConfigs().catch(() => new Map());
      for (const n of nodes.values()) {
        const mine = await n.host.shards().catch(() => []);
        console.log(`node ${n.host.nodeId}: ${mine.map((x) => `${x.shardId}:${x.role[0]}${x.leader}@${x.term}e${x.epoch}[${x.voters.join('')}]`).join(' ')}`);
      }
      throw new Error(`${what}: not within ${timeoutMs} ms (last error: ${String(last)}); driver: ${JSON.stringify(view)}; ranges: ${JSON.stringify([...configs])}`);
    }
    await sleep(100);
  }
}

async function driverView(): Promise<DriverView> {
  for (const n of nodes.values()) {
    try {
      return (await n.view.placement()) as DriverView;
    } catch {
      // that node could not reach the driver right now; ask another
    }
  }
  throw new Error('no node reached the placement driver');
}

/** The terms of every range, added up: how many leader changes (and elections) the ranges went through, from one sum to the next. */
async function termSum(): Promise<number> {
  const terms = new Map<number, number>();
  for (const n of nodes.values()) for (const s of await n.host.shards()) terms.set(s.shardId, Math.max(terms.get(s.shardId) ?? 0, s.term));
  return [...terms.values()].reduce((a, t) => a + t, 0);
}

/** Every range's configuration as its leader reports it to the driver, through the cluster view of a live node. */
async function rangeConfigs(): Promise<Map<number, { voters: number[]; learners: number[] }>> {
  const out = new Map<number, { voters: number[]; learners: number[] }>();
  for (const n of nodes.values()) {
    for (const s of await n.host.shards()) if (s.role === 'leader') out.set(s.shardId, { voters: [...s.voters].sort(), learners: [...s.learners] });
  }
  return out;
}

/** Within one of the mean, replicas and leaders, over the live nodes; nothing in flight. */
function balanced(v: DriverView, live: readonly number[]): boolean {
  const mine = v.nodes.filter((n) => live.includes(n.nodeId));
  if (mine.length !== live.length || v.operators.length > 0) return false;
  for (const count of [(n: (typeof mine)[number]) => n.replicaCount, (n: (typeof mine)[number]) => n.leaderCount]) {
    const counts = mine.map(count);
    const mean = counts.reduce((a, c) => a + c, 0) / counts.length;
    if (counts.some((c) => Math.abs(c - mean) > 1)) return false;
  }
  return true;
}

/**
 * Bounds of the load's failures. A read is retried by the store (any replica, any leader hint) until its
 * deadline (REQUEST_DEADLINE_MS_DEFAULT, 5 s), so it fails only if its range has no reachable leader that
 * long. Nothing this test does leaves a range leaderless near that long while the load runs: a leader
 * transfer or a membership change hands the lead over at once or, at worst, after an election (1–2
 * election timeouts of 10 ticks at 20 ms, 200–400 ms). So no read may fail.
 */
const READ_FAILURES_MAX = 0;
/**
 * A write fails (TIMEOUT, outcome unknown) when the leader it was handed to loses the lead before
 * answering: the forward is dropped and times out. Each leader change of the rebalance (a transfer, a
 * leader moved off its node, an election) may cost the writes in flight to its range, at most one per
 * writer. Every leader change raises its range's term, so the bound is WRITER_COUNT per term the ranges
 * moved through while the load ran.
 */
const WRITER_COUNT = 4;
const WRITE_FAILURES_PER_LEADER_CHANGE_MAX = WRITER_COUNT;
/** The load's ceilings in count; stop() ends it in time. */
const WRITES_PER_WRITER_MAX = 100_000;
const READS_PER_READER_MAX = 1_000_000;

/**
 * Writers through every live node, each the only writer of its keys and writing increasing values, and
 * readers through every live node checking each read as linearizable for such registers
 * (support/registers.ts): nothing older than what was acknowledged before the read began, nothing that
 * was not yet written when it completed, nothing refused. Bounded in count, and in time by stop().
 */
function startLoad(through: () => FlotillaNode[]) {
  const registers = new MonotonicRegisters();
  const errors = { write: [] as string[], read: [] as string[], reads: [] as string[] };
  let stopped = false;
  let writes = 0;
  const writer = async (w: number) => {
    for (let seq = 1; !stopped && seq < WRITES_PER_WRITER_MAX; seq++) {
      const key = `load/${w}/${seq % 40}`;
      const live = through();
      const node = live[seq % live.length]!;
      registers.writeInvoked(key, seq);
      try {
        await node.store.put(b(key), b(String(seq)));
        registers.writeCompleted(key, seq, 'acknowledged');
        writes++;
      } catch (err) {
        registers.writeCompleted(key, seq, outcomeOfWriteError(err));
        errors.write.push(`${key}=${seq} via node ${node.host.nodeId}: ${(err as { code?: string }).code ?? String(err)}`);
        await sleep(20); // a client's backoff, not a wait for anything
      }
    }
  };
  const reader = async (r: number) => {
    for (let i = 0; !stopped && i < READS_PER_READER_MAX; i++) {
      const key = `load/${i % WRITER_COUNT}/${(i * 7 + r) % 40}`;
      const node = through()[(i + r) % through().length]!;
      const start = registers.readInvoked(key);
      try {
        const v = await node.store.get(b(key));
        const problem = registers.readCompleted(start, v === undefined ? 0 : Number(Buffer.from(v.value).toString()));
        if (problem !== undefined) errors.reads.push(`${problem} (via node ${node.host.nodeId})`);
      } catch (err) {
        errors.read.push(`${key} via node ${node.host.nodeId}: ${(err as { code?: string }).code ?? String(err)}`);
        await sleep(20); // a client's backoff, not a wait for anything
      }
    }
  };
  const running = Array.from({ length: WRITER_COUNT }, (_, w) => writer(w)).concat([0, 1].map(reader));
  return {
    registers,
    errors,
    get writes() {
      return writes;
    },
    async stop() {
      stopped = true;
      await Promise.all(running);
    },
  };
}

describe('placement driver on 3, then 5 nodes (one process, TCP)', () => {
  it('rebalances onto new nodes under load, rebuilds a lost node\'s replicas, and survives losing the driver mid-move', async () => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-placement-'));
    const ports = await freePorts(5);
    const address = (id: number) => `127.0.0.1:${ports[id - 1]}`;
    const base = (id: number) => ({
      nodeId: id,
      dir: join(root!, `n${id}`),
      listen: { host: '127.0.0.1', port: ports[id - 1]! },
      coreCount: 1,
      tickIntervalMs: 20,
      metaDutyIntervalMs: 100,
      placement: PLACEMENT,
      logger,
      onFatal: onFatal(id),
    });
    for (const n of await Promise.all(
      [1, 2, 3].map((id) => FlotillaNode.start({ ...base(id), peers: Object.fromEntries([1, 2, 3].filter((j) => j !== id).map((j) => [j, address(j)])), initialRangeCount: RANGE_COUNT })),
    )) {
      nodes.set(n.host.nodeId, n);
    }
    const live = () => [...nodes.values()];
    await until('leaders for every range', async () => ((await rangeConfigs()).size === RANGE_COUNT + 1 ? true : undefined), 20_000);
    // Data in every range: 4 keys under each first byte.
    for (let i = 0; i < 256; i += 4) await nodes.get(1)!.store.put(Uint8Array.of(i, 1, 2, 3), b(`data-${i}`));
    await until('the driver sees 17 ranges, balanced on 3 nodes', async () => {
      const v = await driverView();
      return v.rangeCount === RANGE_COUNT + 1 && balanced(v, [1, 2, 3]) ? v : undefined;
    }, 20_000);

    const termsBefore = await termSum();
    const load = startLoad(live);
    try {
      // Nodes 4 and 5 join through node 1's HTTP address; the driver moves replicas and leaders onto them.
      http = await createHttpServer({ store: nodes.get(1)!.store, logger: logger as unknown as import('pino').Logger, cluster: nodes.get(1)!.view });
      const url = await http.listen({ host: '127.0.0.1', port: 0 });
      for (const id of [4, 5]) nodes.set(id, await FlotillaNode.start({ ...base(id), peers: {}, join: url }));
      const rebalanced = await until('replicas and leaders within one of the mean on 5 nodes', async () => {
        const v = await driverView();
        return balanced(v, [1, 2, 3, 4, 5]) && v.nodes.every((n) => n.replicaCount > 0) ? v : undefined;
      }, 90_000);
      console.log(`rebalanced: ${rebalanced.nodes.map((n) => `node ${n.nodeId} ${n.replicaCount} replicas/${n.leaderCount} leaders`).join(', ')}; ${load.writes} writes acknowledged so far`);
      for (const [rangeId, c] of await rangeConfigs()) {
        expect(c.voters.length, `range ${rangeId}`).toBe(3);
        expect(c.learners, `range ${rangeId}`).toEqual([]);
      }
      // Enough of both for the checks below to mean something, should the rebalance have been quick.
      await until('100 writes acknowledged and 100 reads checked', async () => (load.writes >= 100 && load.registers.readCount >= 100 ? true : undefined), 30_000);
    } finally {
      await load.stop();
    }
    const { registers, errors } = load;
    const leaderChanges = (await termSum()) - termsBefore;
    const writeFailuresMax = leaderChanges * WRITE_FAILURES_PER_LEADER_CHANGE_MAX;
    console.log(`load: ${load.writes} writes acknowledged, ${errors.write.length} failed (bound ${writeFailuresMax}: ${leaderChanges} leader changes); ${registers.readCount} reads checked, ${errors.read.length} failed, ${registers.lateUnknownReads} returned an older write of unknown outcome`);
    expect(errors.reads, 'reads that are not linearizable').toEqual([]);
    expect(errors.read.length, `failed reads (at most ${READ_FAILURES_MAX}): ${errors.read.slice(0, 10).join('; ')}`).toBeLessThanOrEqual(READ_FAILURES_MAX);
    expect(errors.write.length, `failed writes (at most ${WRITE_FAILURES_PER_LEADER_CHANGE_MAX} per leader change, ${leaderChanges} changes): ${errors.write.slice(0, 10).join('; ')}`).toBeLessThanOrEqual(writeFailuresMax);
    const check = async () => {
      for (const key of registers.acknowledgedKeys()) {
        for (const n of live()) {
          const v = await n.store.get(b(key));
          expect(registers.finalValueProblem(key, v === undefined ? 0 : Number(Buffer.from(v.value).toString())), `${key} via node ${n.host.nodeId}`).toBeUndefined();
        }
      }
      for (let i = 0; i < 256; i += 4) expect(Buffer.from((await live()[0]!.store.get(Uint8Array.of(i, 1, 2, 3)))!.value).toString()).toBe(`data-${i}`);
    };
    await check();

    // Node 2 stops for good: after the down timeout its replicas are rebuilt on the others. (Node 1's
    // HTTP server stays up: closing it closes node 1's store.)
    await nodes.get(2)!.close();
    nodes.delete(2);
    await until('every range on three live voters again', async () => {
      const configs = await rangeConfigs();
      if (configs.size !== RANGE_COUNT + 1) return undefined;
      for (const c of configs.values()) if (c.voters.length !== 3 || c.voters.includes(2) || c.learners.length > 0) return undefined;
      return true;
    }, 60_000);
    await check();

    // The node running the driver stops while a move is in flight (an operator asked for: move a range
    // onto the driver's own node), seen so: the driver lists it with a step sent, and the range's epoch
    // already moved under it. The next driver leaves every range whole: 3 voters, no learner.
    // Not node 1, whose store the HTTP server closes at the end (if it leads the meta range, move that lead first).
    let metaLeader = live().find((n) => n.host.leaderOf(1 as never) === n.host.nodeId)!;
    if (metaLeader.host.nodeId === 1) {
      // To another voter of the meta range (a node holding no replica of it would ignore the transfer).
      const to = (await rangeConfigs()).get(1)!.voters.find((id) => id !== 1 && nodes.has(id))!;
      await metaLeader.host.transferLeader(1 as never, to);
      metaLeader = await until('the meta range led off node 1', async () => live().find((n) => n.host.nodeId !== 1 && n.host.leaderOf(1 as never) === n.host.nodeId), 10_000);
    }
    const driverNode = metaLeader;
    const inFlight = await untilMoveInFlight({
      operators: async () => ((await driverNode.view.placement()) as DriverView).operators,
      epochOf: async (rangeId) => Math.max(0, ...(await Promise.all(live().map(async (n) => (await n.host.shards()).find((s) => s.shardId === rangeId)?.epoch ?? 0)))),
      startMove: async () => {
        // Onto the driver's node if some range lacks it, else onto whichever live node a range lacks; never off the driver's node.
        const candidates = [...(await rangeConfigs())].filter(([id, c]) => id !== 1 && c.learners.length === 0);
        const [rangeId, c] = candidates.find(([, c]) => !c.voters.includes(driverNode.host.nodeId)) ?? candidates[0]!;
        const to = c.voters.includes(driverNode.host.nodeId) ? [...nodes.keys()].find((id) => !c.voters.includes(id))! : driverNode.host.nodeId;
        const from = c.voters.find((id) => id !== driverNode.host.nodeId)!;
        // Refused (412) if the scheduler has an operator on that range now: the next look asks again.
        await driverNode.view.operator({ kind: 'moveReplica', rangeId, from, to }).catch(() => undefined);
        return rangeId;
      },
      attemptsMax: MOVE_ATTEMPTS_MAX,
      timeoutMs: 60_000,
    });
    await metaLeader.close();
    nodes.delete(metaLeader.host.nodeId);
    console.log(`driver on node ${driverNode.host.nodeId} stopped mid-move: ${JSON.stringify(inFlight)}`);
    expect(inFlight).toMatchObject({ kind: 'moveReplica', lastStep: expect.any(String) });
    expect(inFlight.epochNow).toBeGreaterThan(inFlight.epoch);
    await until('a new driver, and every range whole on the three nodes left', async () => {
      const configs = await rangeConfigs();
      if (configs.size !== RANGE_COUNT + 1) return undefined;
      for (const c of configs.values()) if (c.voters.length !== 3 || c.learners.length > 0 || c.voters.some((v) => !nodes.has(v))) return undefined;
      return true;
    }, 60_000);
    await check();
    expect(fatal).toEqual([]);
  }, 240_000);
});

describe('placement admin over HTTP (3 nodes, then a 4th)', () => {
  it('answers the admin routes, refuses bad input, moves a replica and a lead on request, and drains a decommissioned node', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-placement-admin-'));
    const ports = await freePorts(4);
    const address = (id: number) => `127.0.0.1:${ports[id - 1]}`;
    const base = (id: number) => ({ nodeId: id, dir: join(dir, `n${id}`), listen: { host: '127.0.0.1', port: ports[id - 1]! }, coreCount: 1, tickIntervalMs: 20, metaDutyIntervalMs: 100, placement: PLACEMENT, logger, onFatal: onFatal(id) });
    const mine = new Map<number, FlotillaNode>();
    let server: HttpServer | undefined;
    try {
      for (const n of await Promise.all([1, 2, 3].map((id) => FlotillaNode.start({ ...base(id), peers: Object.fromEntries([1, 2, 3].filter((j) => j !== id).map((j) => [j, address(j)])), initialRangeCount: 4 })))) {
        mine.set(n.host.nodeId, n);
      }
      server = await createHttpServer({ store: mine.get(1)!.store, logger: logger as unknown as import('pino').Logger, cluster: mine.get(1)!.view });
      const url = await server.listen({ host: '127.0.0.1', port: 0 });
      const call = async (method: string, path: string, body?: unknown) => {
        const r = await server!.app.inject({ method: method as 'GET', url: path, ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }) });
        return { status: r.statusCode, body: r.json() as Record<string, unknown> };
      };
      const view = async () => (await call('GET', '/placement')).body as unknown as DriverView & { settings: { paused: boolean; replicationFactor: number } };
      await until('the driver heard from 3 nodes and sees 5 ranges', async () => {
        const v = await view();
        return v.rangeCount === 5 && v.nodes.length === 3 && v.nodes.every((n) => n.state === 'up' && n.silentMs !== null) ? v : undefined;
      }, 20_000);
      // Every range listed, or with ranges=0 only the counts (the same view, no list).
      const full = (await call('GET', '/placement')).body;
      expect((full.ranges as unknown[]).length).toBe(5);
      const counts = (await call('GET', '/placement?ranges=0')).body;
      expect(counts.ranges).toBeUndefined();
      expect(counts.rangeCount).toBe(5);
      expect(counts.nodes).toHaveLength(3);

      // Bad input: the right 4xx, nothing changes.
      for (const [method, path, body, status] of [
        ['PUT', '/placement/settings', '{', 400],
        ['PUT', '/placement/settings', {}, 400],
        ['PUT', '/placement/settings', { paused: 'yes' }, 400],
        ['PUT', '/placement/settings', { replicationFactor: 0 }, 400],
        ['PUT', '/placement/settings', { replicationFactor: 9 }, 400],
        ['PUT', '/placement/settings', { paused: true, extra: 1 }, 400],
        ['POST', '/placement/settings', { paused: true }, 405],
        ['POST', '/nodes/0/decommission', undefined, 400],
        ['POST', '/nodes/x/decommission', undefined, 400],
        ['POST', '/nodes/99/decommission', undefined, 404],
        ['POST', '/nodes/1/explode', undefined, 404],
        ['POST', '/ranges/2/move', '{', 400],
        ['POST', '/ranges/2/move', { from: 1 }, 400],
        ['POST', '/ranges/2/move', { from: 1, to: 1 }, 400],
        ['POST', '/ranges/2/move', { from: 1, to: 'two' }, 400],
        ['POST', '/ranges/999/move', { from: 1, to: 2 }, 404],
        ['POST', '/ranges/2/transfer-leader', { to: 0 }, 400],
        ['GET', '/ranges/2/move', undefined, 405],
      ] as const) {
        expect([method, path, (await call(method, path, body)).status]).toEqual([method, path, status]);
      }
      expect((await view()).settings).toEqual({ paused: false, replicationFactor: 3 });

      // Pause, then a 4th node joins: paused, nothing moves onto it.
      expect((await call('PUT', '/placement/settings', { paused: true })).body).toEqual({ settings: { paused: true, replicationFactor: 3 } });
      mine.set(4, await FlotillaNode.start({ ...base(4), peers: {}, join: url }));
      await until('the driver hears node 4', async () => ((await view()).nodes.some((n) => n.nodeId === 4 && n.state === 'up') ? true : undefined), 20_000);
      // Watched over the driver's next passes, not a fixed time: each duty tick the meta range's leader
      // sends its own heartbeat, then runs a pass, so a heartbeat taken in (its silentMs drops) means the
      // pass before it ran; the first drop seen may be the one already under way, so four make three passes.
      const driverId = [...mine.values()].find((n) => n.host.leaderOf(1 as never) === n.host.nodeId)!.host.nodeId;
      let driverBeats = 0;
      let driverSilentMs = Number.POSITIVE_INFINITY;
      const whilePaused = { replicasOnNode4Max: 0, operatorsMax: 0 };
      await until('three driver passes with node 4 up', async () => {
        const v = await view();
        whilePaused.replicasOnNode4Max = Math.max(whilePaused.replicasOnNode4Max, v.nodes.find((n) => n.nodeId === 4)?.replicaCount ?? 0);
        whilePaused.operatorsMax = Math.max(whilePaused.operatorsMax, v.operators.length);
        const silentMs = v.nodes.find((n) => n.nodeId === driverId)?.silentMs ?? Number.POSITIVE_INFINITY;
        if (silentMs < driverSilentMs) driverBeats++;
        driverSilentMs = silentMs;
        return driverBeats >= 4 ? true : undefined;
      }, 20_000);
      // Unpaused, the first of those passes would have planned moves onto the empty node, and the next shown its learners.
      expect(whilePaused).toEqual({ replicasOnNode4Max: 0, operatorsMax: 0 });

      // Asked to, the driver moves one replica there even while paused (an operator's request is not the scheduler's plan).
      const moved = await call('POST', '/ranges/2/move', { from: 1, to: 4 });
      expect(moved.status).toBe(200);
      expect(moved.body).toMatchObject({ kind: 'moveReplica', rangeId: 2, from: 1, to: 4, reason: 'admin' });
      expect((await call('POST', '/ranges/2/move', { from: 2, to: 4 })).status).toBe(412); // one operator per range
      await until('range 2 moved onto node 4', async () => {
        const s = (await mine.get(4)!.host.shards()).find((x) => x.shardId === 2);
        return s !== undefined && s.voters.includes(4) && !s.voters.includes(1) && (await view()).operators.length === 0 ? true : undefined;
      }, 30_000);
      const leaderOf2 = (await mine.get(4)!.host.shards()).find((x) => x.shardId === 2)!.leader;
      const newLeader = [2, 3, 4].find((n) => n !== leaderOf2)!;
      expect((await call('POST', '/ranges/2/transfer-leader', { to: newLeader })).status).toBe(200);
      await until('range 2 led by the node asked for', async () => ((await mine.get(newLeader)!.host.shards()).find((x) => x.shardId === 2)?.role === 'leader' ? true : undefined), 20_000);
      // A transfer that would change nothing, or to a node without a vote, is refused rather than reported as done.
      expect((await call('POST', '/ranges/2/transfer-leader', { to: 1 })).status).toBe(412); // node 1 left range 2 above
      await until('a transfer to the leader refused once the driver saw it lead', async () => ((await call('POST', '/ranges/2/transfer-leader', { to: newLeader })).status === 412 ? true : undefined), 20_000);

      // Decommission node 4 (and resume): its replicas go, and it is recorded decommissioned.
      expect((await call('POST', '/nodes/4/decommission')).body).toEqual({ nodeId: 4, state: 'decommissioning' });
      expect((await call('PUT', '/placement/settings', { paused: false })).status).toBe(200);
      await until('node 4 drained and decommissioned', async () => {
        const v = await view();
        const n4 = v.nodes.find((n) => n.nodeId === 4);
        return n4?.state === 'decommissioned' && n4.replicaCount === 0 && v.operators.length === 0 ? v : undefined;
      }, 30_000);
      for (const n of [1, 2, 3]) expect((await mine.get(n)!.host.shards()).map((s) => s.shardId)).toEqual([1, 2, 3, 4, 5]);
      await until('node 4 holds no replica', async () => ((await mine.get(4)!.host.shards()).length === 0 ? true : undefined), 20_000);
    } finally {
      await server?.close().catch(() => undefined);
      for (const n of mine.values()) await n.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

