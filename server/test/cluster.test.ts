import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import type { ShellLogger } from '@flotilla/shards';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { FlotillaNode, initialRanges } from '../src/node.js';

const logger = pino({ level: 'silent' }) as unknown as ShellLogger;
const b = (s: string) => Buffer.from(s);
const t = (v: Uint8Array | undefined) => (v === undefined ? undefined : Buffer.from(v).toString());

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
});
