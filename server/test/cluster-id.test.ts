// The cluster id: static members derive the same one without talking and
// record it; a joining node takes it from the member it joins through; a
// restart uses the recorded id; a data directory from before cluster ids
// takes the legacy id; a damaged cluster.json is rejoined only into the same
// cluster. And the point of it all: a node of another cluster pointed at a
// member's port is refused at hello and cannot move any Raft group's term.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { groupId } from '@flotilla/core';
import { pino } from 'pino';
import { NodeStore, coreDirName, type ShellLogger } from '@flotilla/shards';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLUSTER_FILE, LEGACY_CLUSTER_ID, deriveClusterId, readClusterIdentity, writeClusterIdentity } from '../src/cluster-identity.js';
import { createHttpServer, type HttpServer } from '../src/http/app.js';
import { MEMBERSHIP_FILE } from '../src/membership.js';
import { FlotillaNode, type NodeOptions } from '../src/node.js';

const logger = pino({ level: process.env['FLOTILLA_TEST_LOG'] ?? 'silent' }) as unknown as ShellLogger;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const b = (s: string) => Buffer.from(s);

async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(50);
  }
}

/** Every replica's term on these nodes, as "node/range" → term. */
async function termsOf(nodes: readonly FlotillaNode[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const n of nodes) for (const s of await n.host.shards()) out[`${n.host.nodeId}/${s.shardId}`] = s.term;
  return out;
}

/** Until every replica on `nodes` knows its range's leader. */
async function leadersKnown(nodes: readonly FlotillaNode[]): Promise<void> {
  await until('leaders known', async () => ((await Promise.all(nodes.map((n) => n.host.shards()))).flat().every((s) => s.leader > 0) ? true : undefined));
}

describe('cluster id', () => {
  let root: string;
  /** Cluster A: three static members. */
  const a: FlotillaNode[] = [];
  let aPorts: number[] = [];
  let http: HttpServer | undefined;
  let joinUrl = '';
  /** Node 4's transport port: the meta range records it, and a rejoin from another port is refused. */
  let joinerPort = 0;
  const others: FlotillaNode[] = [];
  const aOptions = (i: number): NodeOptions => ({
    nodeId: i + 1,
    dir: join(root, `a${i + 1}`),
    listen: { host: '127.0.0.1', port: aPorts[i]! },
    peers: Object.fromEntries([0, 1, 2].filter((j) => j !== i).map((j) => [j + 1, `127.0.0.1:${aPorts[j]}`])),
    initialRangeCount: 2,
    coreCount: 1,
    // Slow ticks: A's terms must not move by themselves while the test watches them (elections after 1-2 s of silence).
    tickIntervalMs: 100,
    metaDutyIntervalMs: 100,
    placement: { paused: true },
    logger,
  });
  const joinerOptions = (port: number, join4: string | undefined): NodeOptions => ({
    nodeId: 4,
    dir: join(root, 'a4'),
    listen: { host: '127.0.0.1', port },
    peers: {},
    ...(join4 === undefined ? {} : { join: join4 }),
    coreCount: 1,
    tickIntervalMs: 100,
    metaDutyIntervalMs: 100,
    placement: { paused: true },
    logger,
  });

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-cluster-id-'));
    aPorts = await freePorts(3);
    a.push(...(await Promise.all([0, 1, 2].map((i) => FlotillaNode.start(aOptions(i))))));
    await leadersKnown(a);
    http = await createHttpServer({ store: a[0]!.store, logger: logger as unknown as import('pino').Logger, cluster: a[0]!.view });
    joinUrl = await http.listen({ host: '127.0.0.1', port: 0 });
  }, 60_000);

  afterAll(async () => {
    await http?.close();
    for (const n of [...others, ...a]) await n.close().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  });

  it('static members derive the same id from the member list and token, and record it', () => {
    const expected = deriveClusterId({ members: aPorts.map((port, i) => ({ nodeId: i + 1, address: `127.0.0.1:${port}` })), token: 'flotilla' });
    expect(a.map((n) => n.clusterId)).toEqual([expected, expected, expected]);
    for (const i of [0, 1, 2]) expect(readClusterIdentity(join(root, `a${i + 1}`))).toEqual({ clusterId: expected, origin: 'bootstrap', rangesCreated: true });
    expect(expected).not.toBe(LEGACY_CLUSTER_ID);
    // Another token or other ports: another cluster.
    expect(deriveClusterId({ members: aPorts.map((port, i) => ({ nodeId: i + 1, address: `127.0.0.1:${port}` })), token: 'other' })).not.toBe(expected);
    expect(deriveClusterId({ members: aPorts.map((port, i) => ({ nodeId: i + 1, address: `127.0.0.1:${port + 1}` })), token: 'flotilla' })).not.toBe(expected);
    // The host as each member spells it does not matter: a wildcard listen and an interface address agree.
    expect(deriveClusterId({ members: aPorts.map((port, i) => ({ nodeId: i + 1, address: `${i === 0 ? '0.0.0.0' : '10.0.0.7'}:${port}` })), token: 'flotilla' })).toBe(expected);
  });

  it('a node of another cluster pointed at a member\'s port is refused at hello and moves no term', async () => {
    const before = await termsOf(a);
    const refusedBefore = a[0]!.host.transportStats().hellosRefusedCluster;
    // Cluster B: nodes 2 and 3 of a static cluster whose node 1 is first nowhere (a closed port), so B
    // elects its leaders by itself; then its terms are pushed past A's, and its node 1 becomes A's node 1.
    const [deadPort, b2Port, b3Port] = await freePorts(3);
    const bOptions = (id: number, port: number, otherId: number, otherPort: number): NodeOptions => ({
      nodeId: id,
      dir: join(root, `b${id}`),
      listen: { host: '127.0.0.1', port },
      peers: { 1: `127.0.0.1:${deadPort}`, [otherId]: `127.0.0.1:${otherPort}` },
      initialRangeCount: 2,
      coreCount: 1,
      tickIntervalMs: 20,
      metaDutyIntervalMs: 100,
      placement: { paused: true },
      logger,
    });
    const bNodes = await Promise.all([FlotillaNode.start(bOptions(2, b2Port!, 3, b3Port!)), FlotillaNode.start(bOptions(3, b3Port!, 2, b2Port!))]);
    others.push(...bNodes);
    expect(bNodes[0]!.clusterId).toBe(bNodes[1]!.clusterId);
    expect(bNodes[0]!.clusterId).not.toBe(a[0]!.clusterId);
    await leadersKnown(bNodes);
    // Every transfer starts a new term: three per range take B's terms past A's.
    for (let round = 0; round < 3; round++) {
      for (const s of await bNodes[0]!.host.shards()) {
        const to = s.leader === 2 ? 3 : 2;
        const leaderNode = bNodes.find((n) => n.host.nodeId === s.leader)!;
        await leaderNode.host.transferLeader(groupId(s.shardId), to);
        await until(`range ${s.shardId} led by node ${to}`, async () => ((await bNodes[0]!.host.shards()).find((x) => x.shardId === s.shardId)!.leader === to ? true : undefined));
      }
    }
    const bTerms = await termsOf(bNodes);
    for (const [key, term] of Object.entries(before)) {
      const range = key.split('/')[1];
      expect(bTerms[`2/${range}`], `B's term of range ${range} is past A's ${key}`).toBeGreaterThan(term);
    }

    // B's node 1 is now A's node 1: B's leaders send their appends and heartbeats there.
    for (const n of bNodes) n.host.setPeer(1, `127.0.0.1:${aPorts[0]}`);
    for (let i = 0; i < 20; i++) await bNodes[0]!.store.put(Uint8Array.of(0x80 + i, 1), b(`b${i}`)).catch(() => undefined);
    // B's traffic reached A's node 1: refused (B2 and B3 each reconnect every ~50 ms), or, were it let in, terms moved.
    const refused = () => a[0]!.host.transportStats().hellosRefusedCluster - refusedBefore;
    await until('B\'s traffic at A\'s node 1', async () => (refused() >= 4 || JSON.stringify(await termsOf(a)) !== JSON.stringify(before) ? true : undefined));
    // Watched over B's next four connection attempts (its appends and votes would have arrived on any of them), not a fixed time.
    const refusedSeen = refused();
    await until('four more of B\'s connections refused', async () => (refused() >= refusedSeen + 4 || JSON.stringify(await termsOf(a)) !== JSON.stringify(before) ? true : undefined));
    expect(await termsOf(a), 'no term of cluster A moved').toEqual(before);
    expect(refused()).toBeGreaterThanOrEqual(8);
    // A still serves.
    await a[1]!.store.put(b('\u00f0a-after'), b('ok'));
    expect(Buffer.from((await a[2]!.store.get(b('\u00f0a-after')))!.value).toString()).toBe('ok');
    for (const n of bNodes) await n.close();
    others.splice(0);
  }, 90_000);

  it('a joining node records the id of the member it joins through and is accepted by every member', async () => {
    [joinerPort] = (await freePorts(1)) as [number];
    const joiner = await FlotillaNode.start(joinerOptions(joinerPort, joinUrl));
    others.push(joiner);
    expect(joiner.clusterId).toBe(a[0]!.clusterId);
    expect(readClusterIdentity(join(root, 'a4'))).toEqual({ clusterId: a[0]!.clusterId, origin: 'join' });
    // Its writes are forwarded to the ranges' leaders: once every member learned it, its hellos pass.
    await until('a write through the joined node', async () => (await joiner.store.put(b('\u00f0joined'), b('yes'))).version);
    expect(Buffer.from((await a[1]!.store.get(b('\u00f0joined')))!.value).toString()).toBe('yes');
    await joiner.close();
    others.splice(0);
  }, 60_000);

  it('a joined node whose cluster.json is damaged rejoins with --join into the same cluster only', async () => {
    const port = joinerPort;
    const dir = join(root, 'a4');
    const membershipPath = join(dir, MEMBERSHIP_FILE);
    writeFileSync(membershipPath, '');
    await expect(FlotillaNode.start(joinerOptions(port, undefined))).rejects.toMatchObject({ code: 'DATA_DIR_DAMAGED', message: expect.stringContaining(membershipPath) });
    // With --join: the member's id matches the recorded one, so it joins again and rewrites cluster.json.
    const rejoined = await FlotillaNode.start(joinerOptions(port, joinUrl));
    expect(rejoined.clusterId).toBe(a[0]!.clusterId);
    await rejoined.close();
    expect(JSON.parse(readFileSync(membershipPath, 'utf8'))).toMatchObject({ meta: { replicas: expect.any(Array) } });
    // A lost cluster.json is asked for by --join too.
    rmSync(membershipPath);
    await expect(FlotillaNode.start(joinerOptions(port, undefined))).rejects.toMatchObject({ code: 'DATA_DIR_DAMAGED', message: expect.stringMatching(/is missing although CLUSTER records that this node joined.*--join/) });
    // Recorded in another cluster: --join through a member of this one is refused, nothing written.
    writeClusterIdentity(dir, { clusterId: 'ab'.repeat(16), origin: 'join' });
    await expect(FlotillaNode.start(joinerOptions(port, joinUrl))).rejects.toMatchObject({ code: 'DATA_DIR_CLUSTER_MISMATCH' });
    expect(readClusterIdentity(dir)!.clusterId).toBe('ab'.repeat(16));
  }, 60_000);

  it('a restart keeps the recorded id whatever its flags say; a directory from before cluster ids takes the legacy id', async () => {
    const [port] = await freePorts(1);
    const dir = join(root, 'solo');
    const solo = (clusterToken: string) => FlotillaNode.start({ nodeId: 1, dir, listen: { host: '127.0.0.1', port: port! }, peers: {}, initialRangeCount: 1, coreCount: 1, clusterToken, logger });
    const first = await solo('one');
    const id = first.clusterId;
    await first.close();
    const second = await solo('two');
    expect(second.clusterId, 'recorded, not derived again').toBe(id);
    await second.close();
    // Upgrade: a directory that holds replicas but no CLUSTER (written by an earlier release).
    rmSync(join(dir, CLUSTER_FILE));
    const upgraded = await solo('two');
    expect(upgraded.clusterId).toBe(LEGACY_CLUSTER_ID);
    await upgraded.close();
    expect(readClusterIdentity(dir)).toEqual({ clusterId: LEGACY_CLUSTER_ID, origin: 'legacy', rangesCreated: true });
  }, 60_000);

  it('a static member whose replicas all left it does not create the bootstrap ranges again at its next start', async () => {
    // Node simulation seed 86019: a member moved off its only range restarted holding no replica, took that
    // for a first start, and made the range again at the bootstrap's index and members.
    const [port] = await freePorts(1);
    const dir = join(root, 'emptied');
    const start = () => FlotillaNode.start({ nodeId: 1, dir, listen: { host: '127.0.0.1', port: port! }, peers: {}, initialRangeCount: 1, coreCount: 1, logger });
    const first = await start();
    expect((await first.host.shards()).map((s) => s.shardId)).toEqual([1, 2]);
    await first.close();
    expect(readClusterIdentity(dir)?.rangesCreated).toBe(true);
    // Its replicas leave it (as a move off, or a merge, destroys them).
    const store = await NodeStore.open({ dir: join(dir, coreDirName(0)), nodeId: 1 });
    for (const id of [1, 2]) await store.destroyShard(groupId(id));
    await store.close();
    const again = await start();
    expect(await again.host.shards()).toEqual([]);
    await again.close();
  }, 60_000);
});
