// kill -9 of the node leading the most ranges while clients write over HTTP:
// no acknowledged write is lost and the survivors keep serving.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { afterAll, describe, expect, it } from 'vitest';
import { startNodeProcess, type NodeProcess as Node } from './support/node-process.js';

/** Load phases, bounded in time; every request also has its own deadline. */
const BEFORE_KILL_MS = 1_500;
const AFTER_KILL_MS = 4_000;
const REQUEST_TIMEOUT_MS = 3_000;
const CONCURRENCY = 8;

const pathOf = (key: Uint8Array): string => [...key].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');

function startNode(o: { id: number; dir: string; transport: number[]; http: number[] }): Promise<Node> {
  const peers = o.transport.map((p, i) => [i + 1, p] as const).filter(([id]) => id !== o.id).map(([id, p]) => `${id}=127.0.0.1:${p}`).join(',');
  return startNodeProcess(
    o.id,
    ['--dir', o.dir, '--listen', `127.0.0.1:${o.transport[o.id - 1]}`, '--http', `127.0.0.1:${o.http[o.id - 1]}`, '--peers', peers, '--ranges', '4', '--tick-ms', '20', '--cores', '1', '--log-level', 'warn'],
    20_000,
  );
}

describe('kill -9 under an HTTP write load (3 node processes)', () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-failover-'));
  const nodes: Node[] = [];
  afterAll(() => {
    for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });

  it('loses no acknowledged write and keeps serving after the node leading most ranges dies', async () => {
    const transport = await freePorts(3);
    const http = await freePorts(3);
    nodes.push(...(await Promise.all([1, 2, 3].map((id) => startNode({ id, dir: join(root, `n${id}`), transport, http })))));
    const live = new Set(nodes.map((n) => n.id));
    const acked = new Map<string, string>();
    let seq = 0;
    let errors = 0;
    let ackedAfterKill = 0;
    let killedAt = Number.POSITIVE_INFINITY;

    const writer = async (lane: number, untilMs: number) => {
      while (performance.now() < untilMs) {
        const n = seq++;
        const ids = [...live];
        const node = nodes.find((x) => x.id === ids[n % ids.length])!;
        // Keys spread over all four ranges (split on the first byte: 0x00, 0x40, 0x80, 0xc0), sent percent-encoded byte by byte.
        const key = pathOf(Buffer.concat([Uint8Array.of([0x10, 0x50, 0x90, 0xd0][n % 4]!), Buffer.from(`${lane}-${n}`)]));
        const value = `v${n}`;
        try {
          const res = await fetch(`${node.url}/kv/${key}`, { method: 'PUT', body: value, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
          if (res.status === 200) {
            acked.set(key, value);
            if (performance.now() > killedAt) ackedAfterKill++;
          } else errors++;
          await res.arrayBuffer();
        } catch {
          errors++; // connection refused to the dead node, or a timeout: outcome unknown, not checked
        }
      }
    };

    const start = performance.now();
    const load = Promise.all(Array.from({ length: CONCURRENCY }, (_, lane) => writer(lane, start + BEFORE_KILL_MS + AFTER_KILL_MS)));
    await new Promise((r) => setTimeout(r, BEFORE_KILL_MS));
    const cluster = (await (await fetch(`${nodes[0]!.url}/cluster`)).json()) as { ranges: { leader: number }[] };
    const counts = new Map<number, number>();
    for (const r of cluster.ranges) counts.set(r.leader, (counts.get(r.leader) ?? 0) + 1);
    const victim = [...counts].sort((a, b) => b[1] - a[1])[0]![0];
    const victimNode = nodes.find((n) => n.id === victim)!;
    const ackedBeforeKill = acked.size;
    live.delete(victim);
    killedAt = performance.now();
    victimNode.child.kill('SIGKILL');
    await load;

    expect(ackedBeforeKill).toBeGreaterThan(0);
    expect(ackedAfterKill, `writes acknowledged after node ${victim} (leader of ${counts.get(victim)} ranges) died`).toBeGreaterThan(0);
    // Every acknowledged write is there, read linearizably through each survivor.
    const survivors = nodes.filter((n) => n.id !== victim);
    const lost: string[] = [];
    for (const [key, value] of acked) {
      for (const s of survivors) {
        const res = await fetch(`${s.url}/kv/${key}`, { signal: AbortSignal.timeout(10_000) });
        const body = await res.text();
        if (res.status !== 200 || body !== value) lost.push(`${key} via node ${s.id}: ${res.status} ${body}`);
      }
    }
    expect(lost.slice(0, 10)).toEqual([]);
    console.info(`failover: killed node ${victim}; ${acked.size} acked writes (${ackedAfterKill} after the kill), ${errors} failed or unknown, all acked ones read back on both survivors`);
  }, 60_000);
});

describe('splits under an HTTP write load (3 node processes)', () => {
  const root = mkdtempSync(join(tmpdir(), 'flotilla-split-'));
  const nodes: Node[] = [];
  afterAll(() => {
    for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  });

  it('splits two ranges over HTTP while clients write through every node: no acknowledged write is lost, scans see every key once', async () => {
    const transport = await freePorts(3);
    const http = await freePorts(3);
    nodes.push(...(await Promise.all([1, 2, 3].map((id) => startNode({ id, dir: join(root, `n${id}`), transport, http })))));
    const acked = new Map<string, string>();
    let seq = 0;
    let ackedAfterSplits = 0;
    let splitsDone = false;
    const firstBytes = [0x10, 0x30, 0x50, 0x70];
    const writer = async (lane: number, untilMs: number) => {
      while (performance.now() < untilMs) {
        const n = seq++;
        const keyBytes = Buffer.concat([Uint8Array.of(firstBytes[n % 4]!), Buffer.from(`${lane}-${n}`)]);
        const value = `v${n}`;
        try {
          const res = await fetch(`${nodes[n % 3]!.url}/kv/${pathOf(keyBytes)}`, { method: 'PUT', body: value, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
          if (res.status === 200) {
            acked.set(keyBytes.toString('hex'), value);
            if (splitsDone) ackedAfterSplits++;
          }
          await res.arrayBuffer();
        } catch {
          // a timeout: outcome unknown, not checked
        }
      }
    };
    const start = performance.now();
    const load = Promise.all(Array.from({ length: CONCURRENCY }, (_, lane) => writer(lane, start + 3_000)));
    await new Promise((r) => setTimeout(r, 500));
    const ackedBeforeSplits = acked.size;
    // 4 ranges on the first byte: range 2 is [0x0001, 0x40), range 3 is [0x40, 0x80). Split each in its middle, through different nodes.
    const split = async (node: Node, rangeId: number, at: number) => {
      const res = await fetch(`${node.url}/ranges/${rangeId}/split`, { method: 'POST', body: JSON.stringify({ keyBase64: Buffer.of(at).toString('base64') }), signal: AbortSignal.timeout(10_000) });
      expect(res.status, await res.clone().text()).toBe(200);
      return (await res.json()) as { left: { end: string }; right: { rangeId: number; start: string } };
    };
    const [a, b2] = await Promise.all([split(nodes[0]!, 2, 0x20), split(nodes[1]!, 3, 0x60)]);
    splitsDone = true;
    expect([a.left.end, a.right.start, b2.left.end, b2.right.start]).toEqual(['20', '20', '60', '60']);
    expect(a.right.rangeId).not.toBe(b2.right.rangeId);
    await load;
    expect(ackedBeforeSplits).toBeGreaterThan(0);
    expect(ackedAfterSplits, 'writes acknowledged after both splits').toBeGreaterThan(0);

    const lost: string[] = [];
    for (const [hex, value] of acked) {
      for (const n of nodes) {
        const res = await fetch(`${n.url}/kv/${pathOf(Buffer.from(hex, 'hex'))}`, { signal: AbortSignal.timeout(10_000) });
        const body = await res.text();
        if (res.status !== 200 || body !== value) lost.push(`${hex} via node ${n.id}: ${res.status} ${body}`);
      }
    }
    expect(lost.slice(0, 10)).toEqual([]);
    // One paged scan over [0x00 0x01, 0x80) through node 3 returns every acknowledged key once, in order.
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 1_000; pages++) {
      const q = new URLSearchParams({ limit: '500', encoding: 'base64' });
      if (cursor !== undefined) q.set('cursor', cursor);
      const res = await fetch(`${nodes[2]!.url}/kv?${q.toString()}&end=%80`, { signal: AbortSignal.timeout(10_000) });
      expect(res.status).toBe(200);
      const page = (await res.json()) as { items: { key: string }[]; cursor: string | null };
      seen.push(...page.items.map((i) => Buffer.from(i.key, 'base64').toString('hex')));
      cursor = page.cursor ?? undefined;
      if (cursor === undefined) break;
    }
    expect(seen).toEqual([...acked.keys()].sort());
    console.info(`split under load: ${acked.size} acked writes (${ackedAfterSplits} after both splits), all read back through every node and scanned once`);
  }, 60_000);
});
