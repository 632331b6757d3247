import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { ShellLogger } from '@flotilla/shards';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { createHttpServer } from '../src/http/app.js';
import { FlotillaNode, initialRanges } from '../src/node.js';
import { untilTrue } from './support/until.js';

const logger = pino({ level: process.env['FLOTILLA_TEST_LOG'] ?? 'silent' }) as unknown as ShellLogger;
const b = (s: string) => Buffer.from(s);
const t = (v: Uint8Array | undefined) => (v === undefined ? undefined : Buffer.from(v).toString());

/** Until every replica knows its range's leader: a write racing the first elections may time out (outcome unknown), as it should. */
async function untilLeadersKnown(nodes: readonly FlotillaNode[]): Promise<void> {
  await untilTrue('every replica knows its leader', 10_000, async () => (await Promise.all(nodes.map((n) => n.host.shards()))).flat().every((s) => s.leader > 0));
}

describe('3 nodes in one process over TCP, 8 ranges on every node', () => {
  const nodes: FlotillaNode[] = [];
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-cluster-'));
    const ports = await freePorts(3);
    const address = (i: number) => `127.0.0.1:${ports[i]}`;
    nodes.push(
      ...(await Promise.all(
        [0, 1, 2].map((i) =>
          FlotillaNode.start({
            nodeId: i + 1,
            dir: join(root, `n${i + 1}`),
            listen: { host: '127.0.0.1', port: ports[i]! },
            peers: Object.fromEntries([0, 1, 2].filter((j) => j !== i).map((j) => [j + 1, address(j)])),
            initialRangeCount: 8,
            coreCount: 1,
            tickIntervalMs: 20,
            logger,
          }),
        ),
      )),
    );
    await untilLeadersKnown(nodes);
  }, 30_000);

  afterAll(async () => {
    for (const n of nodes) await n.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('serves any key from any node: writes through one read back linearizably through the others', async () => {
    // Keys across all 8 ranges (the split points sit on the first byte).
    const keys = Array.from({ length: 64 }, (_, i) => Buffer.concat([Uint8Array.of(i * 4), b(`/k${i}`)]));
    for (const [i, k] of keys.entries()) await nodes[i % 3]!.store.put(k, b(`v${i}`));
    for (const [i, k] of keys.entries()) {
      for (const n of nodes) expect(t((await n.store.get(k))?.value), `key ${i}`).toBe(`v${i}`);
    }
    // Every range's leader is somewhere; at least one write above was forwarded (3 nodes, 8 ranges).
    const leaders = new Set((await nodes[0]!.host.shards()).map((s) => s.leader));
    expect(leaders.size, "leaders spread over nodes, so reads and writes above crossed nodes").toBeGreaterThanOrEqual(2);
  }, 30_000);

  it('makes conditional writes through any node', async () => {
    const k = b('\u00f0cas');
    const first = await nodes[1]!.store.put(k, b('1'), { ifVersion: 0 });
    await expect(nodes[2]!.store.put(k, b('x'), { ifVersion: 0 })).rejects.toMatchObject({ code: 'PRECONDITION_FAILED', details: { currentVersion: first.version } });
    const second = await nodes[0]!.store.put(k, b('2'), { ifVersion: first.version });
    expect(t((await nodes[2]!.store.get(k))?.value)).toBe('2');
    expect((await nodes[2]!.store.get(k))?.version).toBe(second.version);
  }, 30_000);

  it('scans in key order across ranges, page by page, from any node', async () => {
    const prefixKeys = initialRanges(8).map((r, i) => Buffer.concat([r.start.byteLength === 0 ? Uint8Array.of(1) : r.start, b(`/scan${i}`)]));
    for (const k of prefixKeys) await nodes[0]!.store.put(k, b('s'));
    const seen: Buffer[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 100; pages++) {
      const page = await nodes[2]!.store.scan({ limit: 7, ...(cursor === undefined ? {} : { cursor }) });
      seen.push(...page.items.map((i) => Buffer.from(i.key)));
      cursor = page.cursor;
      if (cursor === undefined) break;
    }
    const sorted = [...seen].sort(Buffer.compare);
    expect(seen).toEqual(sorted);
    expect(new Set(seen.map((k) => k.toString('hex'))).size).toBe(seen.length);
    for (const k of prefixKeys) expect(seen.some((s) => s.equals(k))).toBe(true);
  }, 30_000);

  it('splits a range over HTTP under a write load: both halves serve at once, no acknowledged write is lost, scans cross the split', async () => {
    // Not closed here: closing the HTTP server closes node 1's store, which the next test still uses.
    const http = await createHttpServer({ store: nodes[0]!.store, logger: logger as unknown as import('pino').Logger, cluster: nodes[0]!.view });
    const target = initialRanges(8).find((r) => r.start.byteLength === 1 && r.start[0] === 0x40)!;
    const keyOf = (i: number) => Buffer.concat([Uint8Array.of(0x40 + (i % 32)), b(`/load${String(i).padStart(4, '0')}`)]);
    const acked = new Map<string, string>();
    // Each writer's second half waits for both splits: the splits land inside the load, whatever the timing.
    const halfWrites = 100;
    let splitsDone = (): void => {};
    const afterSplits = new Promise<void>((resolve) => (splitsDone = resolve));
    const writers = [0, 1, 2].map(async (w) => {
      for (let n = 0; n < 2 * halfWrites; n++) {
        if (n === halfWrites) await afterSplits;
        const i = (n * 3 + w) % 320;
        const value = `w${w}n${n}`;
        await nodes[(n + w) % 3]!.store.put(keyOf(i), b(value));
        acked.set(keyOf(i).toString('hex'), value);
      }
    });
    await untilTrue('writes acknowledged before the split', 10_000, () => acked.size >= 30);
    const split = await http.app.inject({ method: 'POST', url: `/ranges/${target.rangeId}/split`, payload: JSON.stringify({ keyBase64: Buffer.of(0x50).toString('base64') }) });
    expect(split.statusCode, split.body).toBe(200);
    const halves = split.json() as { left: { rangeId: number; start: string; end: string; epoch: number }; right: { rangeId: number; start: string; end: string; epoch: number } };
    expect(halves.left).toEqual({ rangeId: target.rangeId, start: '40', end: '50', epoch: 2 });
    expect(halves.right).toMatchObject({ start: '50', end: '60', epoch: 2 });
    expect(halves.right.rangeId).toBeGreaterThanOrEqual(1024);
    // Split the right half again while the load goes on: ids come from the meta range's allocator.
    const again = await http.app.inject({ method: 'POST', url: `/ranges/${halves.right.rangeId}/split`, payload: JSON.stringify({ keyBase64: Buffer.of(0x58).toString('base64') }) });
    expect(again.statusCode, again.body).toBe(200);
    expect((again.json() as { right: { rangeId: number } }).right.rangeId).toBe(halves.right.rangeId + 1);
    const ackedAtSplit = acked.size;
    splitsDone();
    await Promise.all(writers);
    // The splits ran inside the load: at most half the writes were acknowledged before them, the rest after, to keys of every half.
    expect(ackedAtSplit).toBeLessThanOrEqual(3 * halfWrites);
    expect(acked.size).toBe(320);

    // Every acknowledged write reads back, through every node, with the last value acknowledged.
    for (const [hex, value] of acked) for (const n of nodes) expect(t((await n.store.get(Buffer.from(hex, 'hex')))?.value), hex).toBe(value);
    // One scan over the old range's span crosses the three ranges it became, in order, nothing missing.
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 100; pages++) {
      const page = await nodes[1]!.store.scan({ start: Uint8Array.of(0x40), end: Uint8Array.of(0x60), limit: 50, ...(cursor === undefined ? {} : { cursor }) });
      seen.push(...page.items.map((i) => Buffer.from(i.key).toString('hex')));
      cursor = page.cursor;
      if (cursor === undefined) break;
    }
    expect(seen).toEqual([...seen].sort());
    const loadMarker = b('/load').toString('hex');
    expect(seen.filter((k) => k.slice(2).startsWith(loadMarker))).toEqual([...acked.keys()].sort());

    // The leaders record both halves in the meta range (their reporters run every second).
    // Keys as Buffers: a descriptor read through another node arrives as plain Uint8Arrays, one read locally as Buffers.
    const recorded = async () =>
      new Map((await nodes[2]!.store.metaDescriptors()).map((d) => [d.rangeId, { ...d, start: Buffer.from(d.start), end: d.end === null ? null : Buffer.from(d.end) }]));
    await untilTrue('the second split recorded in the meta range', 10_000, async () => (await recorded()).get(halves.right.rangeId + 1)?.epoch === 3);
    const meta = await recorded();
    expect(meta.get(target.rangeId)).toMatchObject({ epoch: 2, start: Buffer.of(0x40), end: Buffer.of(0x50), replicas: [1, 2, 3] });
    expect(meta.get(halves.right.rangeId)).toMatchObject({ epoch: 3, start: Buffer.of(0x50), end: Buffer.of(0x58) });
    expect(meta.get(halves.right.rangeId + 1)).toMatchObject({ epoch: 3, start: Buffer.of(0x58), end: Buffer.of(0x60) });
    expect([...meta.keys()].filter((id) => id < 1024)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);

    // Bad split requests: 4xx, and nothing changes.
    const bad = async (url: string, payload: string) => (await http.app.inject({ method: 'POST', url, payload })).statusCode;
    expect(await bad(`/ranges/${target.rangeId}/split`, '{not json')).toBe(400);
    expect(await bad(`/ranges/${target.rangeId}/split`, JSON.stringify({ key: 'x', keyBase64: 'eA==' }))).toBe(400);
    expect(await bad(`/ranges/${target.rangeId}/split`, JSON.stringify({ keyBase64: Buffer.of(0x70).toString('base64') }))).toBe(400);
    expect(await bad(`/ranges/${target.rangeId}/split`, JSON.stringify({ keyBase64: Buffer.of(0x40).toString('base64') }))).toBe(400);
    expect(await bad('/ranges/0/split', JSON.stringify({ key: 'a' }))).toBe(400);
    expect(await bad('/ranges/abc/split', JSON.stringify({ key: 'a' }))).toBe(400);
    expect(await bad('/ranges/999999/split', JSON.stringify({ key: 'a' }))).toBe(404);
    expect(await bad(`/ranges/${target.rangeId}/split`, JSON.stringify({ key: 'x'.repeat(5000) }))).toBe(413);
    expect((await http.app.inject({ method: 'GET', url: `/ranges/${target.rangeId}/split` })).statusCode).toBe(405);
    // System keys are not the user's.
    await expect(nodes[0]!.store.put(Uint8Array.of(0, 0, 1), b('x'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(nodes[0]!.store.put(Uint8Array.of(0), b('x'))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  }, 60_000);

  it('tells about itself over HTTP: /cluster, /ranges and /metrics', async () => {
    const http = await createHttpServer({ store: nodes[0]!.store, logger: logger as unknown as import('pino').Logger, cluster: nodes[0]!.view });
    try {
      await untilTrue('node 1 hears both peers', 10_000, async () => ((await http.app.inject({ method: 'GET', url: '/cluster' })).json() as { nodes: { state: string }[] }).nodes.every((n) => n.state !== 'down'));
      const cluster = await http.app.inject({ method: 'GET', url: '/cluster' });
      expect(cluster.statusCode).toBe(200);
      const body = cluster.json() as { nodeId: number; nodes: { nodeId: number; state: string }[]; ranges: { rangeId: number; leader: number; replicas: number[] }[] };
      expect(body.nodes.map((n) => [n.nodeId, n.state])).toEqual([[1, 'self'], [2, 'up'], [3, 'up']]);
      expect(body.ranges.map((r) => r.rangeId).slice(0, 9)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(body.ranges.slice(0, 9).every((r) => r.leader > 0 && r.replicas.length === 3)).toBe(true);
      const ranges = await http.app.inject({ method: 'GET', url: '/ranges' });
      // The meta range, 8 user ranges, and the halves the split test made.
      expect((ranges.json() as { ranges: unknown[] }).ranges.length).toBeGreaterThanOrEqual(9);
      const metrics = await http.app.inject({ method: 'GET', url: '/metrics' });
      expect(metrics.headers['content-type']).toContain('text/plain; version=0.0.4');
      const rounds = /^flotilla_core_rounds_total\{core="0"\} (\d+)$/m.exec(metrics.body);
      expect(Number(rounds?.[1])).toBeGreaterThan(0);
      expect(metrics.body).toMatch(/^flotilla_peers_up 2$/m);
      // What a soak run samples: the main thread's heap and timers (the Host's tick among them), the process's descriptors.
      const sample = (series: string) => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(metrics.body)?.[1]);
      expect(sample('nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
      expect(sample('nodejs_active_resources{type="Timeout"}')).toBeGreaterThan(0);
      expect(sample('nodejs_eventloop_active_seconds_total')).toBeGreaterThan(0);
      if (process.platform === 'linux') expect(sample('process_open_fds')).toBeGreaterThan(0);
      // Every sample line is name{labels} number, or name number (prom-client writes NaN as Nan).
      for (const line of metrics.body.split('\n').filter((l) => l.length > 0 && !l.startsWith('#'))) expect(line).toMatch(/^[a-z_][a-z0-9_]*(\{[^}]*\})? ([0-9.e+-]+|Nan|[+-]Inf)$/);
      expect((await http.app.inject({ method: 'POST', url: '/metrics' })).statusCode).toBe(405);
    } finally {
      await http.app.close();
    }
  }, 30_000);
});

describe('4 nodes in one process over TCP, each range on 3 of them', () => {
  const nodes: FlotillaNode[] = [];
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-cluster4-'));
    const ports = await freePorts(4);
    const ids = [0, 1, 2, 3];
    nodes.push(
      ...(await Promise.all(
        ids.map((i) =>
          FlotillaNode.start({
            nodeId: i + 1,
            dir: join(root, `n${i + 1}`),
            listen: { host: '127.0.0.1', port: ports[i]! },
            peers: Object.fromEntries(ids.filter((j) => j !== i).map((j) => [j + 1, `127.0.0.1:${ports[j]}`])),
            initialRangeCount: 8,
            coreCount: 1,
            tickIntervalMs: 20,
            metaDutyIntervalMs: 100,
            // These tests are about routing over a fixed placement: the driver moves nothing.
            placement: { paused: true },
            logger,
          }),
        ),
      )),
    );
    await untilLeadersKnown(nodes);
  }, 30_000);

  afterAll(async () => {
    for (const n of nodes) await n.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('serves every key from every node, also ranges it holds no replica of, and across a split it learns of from the meta range', async () => {
    const held = await Promise.all(nodes.map(async (n) => (await n.host.shards()).map((s) => s.shardId)));
    // 9 ranges × 3 replicas over 4 nodes: nobody holds everything.
    expect(held.map((h) => h.length).reduce((a, c) => a + c)).toBe(27);
    for (const h of held) expect(h.length).toBeLessThan(9);
    const keys = Array.from({ length: 32 }, (_, i) => Buffer.concat([Uint8Array.of(i * 8), b(`/r${i}`)]));
    for (const [i, k] of keys.entries()) await nodes[i % 4]!.store.put(k, b(`v${i}`));
    for (const [i, k] of keys.entries()) {
      for (const n of nodes) {
        expect(t((await n.store.get(k))?.value), `key ${i}`).toBe(`v${i}`);
        expect(t((await n.store.get(k, { consistency: 'stale' }))?.value) ?? `v${i}`, `stale key ${i}`).toBe(`v${i}`);
      }
    }
    // Split, through node 1, a range node 4 does not hold; node 4 then reads and writes both halves.
    const outsider = nodes[3]!;
    const foreign = initialRanges(8).find((r) => r.start.byteLength === 1 && !held[3]!.includes(r.rangeId) && held[0]!.includes(r.rangeId))!;
    expect(foreign).toBeDefined();
    const at = Uint8Array.of(foreign.start[0]! + 0x10);
    const { right } = await nodes[0]!.store.split(foreign.rangeId, at);
    const inRight = Buffer.concat([at, b('/after-split')]);
    await outsider.store.put(inRight, b('x'));
    for (const n of nodes) expect(t((await n.store.get(inRight))?.value)).toBe('x');
    expect(outsider.store.knownRanges().some((r) => r.rangeId === right.shardId)).toBe(true);
    const page = await outsider.store.scan({ start: foreign.start, ...(foreign.end === null ? {} : { end: foreign.end }), limit: 100 });
    expect(page.items.map((i) => t(i.key))).toEqual(keys.filter((k) => k[0]! >= foreign.start[0]! && (foreign.end === null || k[0]! < foreign.end[0]!)).map((k) => t(k)).concat([t(inRight)]).sort());
  }, 60_000);

  it('a fifth node joins by address, serves every key by forwarding, is listed by the others, and restarts without joining again', async () => {
    const http = await createHttpServer({ store: nodes[0]!.store, logger: logger as unknown as import('pino').Logger, cluster: nodes[0]!.view });
    const url = await http.listen({ host: '127.0.0.1', port: 0 });
    const [port] = await freePorts(1);
    const dir = join(root, 'n5');
    const startFifth = (join5: string | undefined) =>
      FlotillaNode.start({
        nodeId: 5,
        dir,
        listen: { host: '127.0.0.1', port: port! },
        peers: {},
        ...(join5 === undefined ? {} : { join: join5 }),
        coreCount: 1,
        tickIntervalMs: 20,
        metaDutyIntervalMs: 100,
        placement: { paused: true },
        logger,
      });
    try {
      // Bad join requests are refused with 400 and change nothing.
      for (const payload of ['{', JSON.stringify({ nodeId: 0, address: '127.0.0.1:1' }), JSON.stringify({ nodeId: 6, address: 'nope' }), JSON.stringify({ nodeId: 1, address: '127.0.0.1:9' })]) {
        expect((await http.app.inject({ method: 'POST', url: '/cluster/join', payload })).statusCode, payload).toBe(400);
      }
      // An id recorded with another address is refused (412): two processes cannot be one node.
      await untilTrue('the four nodes recorded in the meta range', 10_000, async () => (await nodes[0]!.store.metaNodes()).length >= 4);
      expect((await http.app.inject({ method: 'POST', url: '/cluster/join', payload: JSON.stringify({ nodeId: 2, address: '127.0.0.1:9' }) })).statusCode).toBe(412);

      let fifth = await startFifth(url);
      expect((await fifth.host.shards()).length, 'a joined node holds no replica until placement moves one there').toBe(0);
      const keys = Array.from({ length: 16 }, (_, i) => Buffer.concat([Uint8Array.of(i * 16 + 1), b(`/joined${i}`)]));
      // Start returns once every member was heard from: each learned this node's address from the meta
      // range and accepts its connections, so no forwarded write is lost to a refused hello (each such
      // write used to wait out its whole deadline, and come back TIMEOUT with an unknown outcome).
      expect([1, 2, 3, 4].filter((id) => !fifth.host.hasHeardFrom(id))).toEqual([]);
      const put = (k: Uint8Array, v: Uint8Array) => fifth.store.put(k, v);
      for (const [i, k] of keys.entries()) await put(k, b(`j${i}`));
      for (const [i, k] of keys.entries()) {
        expect(t((await fifth.store.get(k))?.value)).toBe(`j${i}`);
        expect(t((await nodes[(i % 4)]!.store.get(k))?.value)).toBe(`j${i}`);
      }
      // The others learn its address from the meta range and list it.
      const listed = async () => ((await http.app.inject({ method: 'GET', url: '/cluster' })).json() as { nodes: { nodeId: number }[] }).nodes.map((n) => n.nodeId);
      await untilTrue('node 1 lists node 5', 10_000, async () => (await listed()).includes(5));
      expect(await listed()).toEqual([1, 2, 3, 4, 5]);

      // Restart: cluster.json brings it back without a seed.
      await fifth.close();
      fifth = await startFifth(undefined);
      try {
        for (const [i, k] of keys.entries()) expect(t((await fifth.store.get(k))?.value)).toBe(`j${i}`);
      } finally {
        await fifth.close();
      }
    } finally {
      await http.close();
    }
  }, 60_000);
});
