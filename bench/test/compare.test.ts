// The compare run's parts that can be wrong without a cluster: the chart, the leader routing of the HTTP
// target (against a stub of /cluster and /ranges on 127.0.0.1), the targets' error mapping, and the CPU
// accounting from /proc.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { compareChartSvg } from '../src/compare/chart.js';
import { HttpClient, LeaderRoutes, httpTarget } from '../src/load/targets.js';
import { processesCpuMs } from '../src/report.js';

describe('compareChartSvg', () => {
  it('draws one line per system and panel, a point per measured cell, and escapes text', () => {
    const svg = compareChartSvg({
      title: 'a <b> & c',
      subtitle: 'sub',
      concurrencies: [1, 16, 64],
      rows: [
        {
          workload: 'write',
          series: [
            { system: 'flotilla', points: [[1, 100, 5], [16, 900, 20], [64, 1500, 80]] },
            { system: 'etcd', points: [[1, 400, 3], [64, 1300, 90]] },
          ],
        },
      ],
    });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('a &lt;b&gt; &amp; c');
    expect(svg).not.toContain('a <b>');
    // Two panels (ops/s and p99) × two systems, each with two or more points.
    expect(svg.match(/<polyline /g)?.length).toBe(4);
    expect(svg.match(/<circle /g)?.length).toBe(2 * (3 + 2));
    // The highest throughput sits at the top of its panel's scale, not above it.
    const ys = [...svg.matchAll(/<circle cx="[\d.]+" cy="([\d.]+)"/g)].map((m) => Number(m[1]));
    expect(Math.min(...ys)).toBeGreaterThanOrEqual(64 + 34);
  });
});

describe('the HTTP target routing to range leaders', () => {
  const servers: http.Server[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  });

  /** A stub node: answers /cluster with its id, /ranges with `ranges()`, and records which keys it was sent. */
  async function stubNode(nodeId: number, ranges: () => unknown, seen: string[]): Promise<string> {
    const server = http.createServer((req, res) => {
      req.resume();
      if (req.url === '/cluster') res.end(JSON.stringify({ nodeId }));
      else if (req.url === '/ranges') res.end(JSON.stringify({ ranges: ranges() }));
      else if (req.url?.startsWith('/kv/') === true) {
        seen.push(req.url.slice(4));
        res.setHeader('etag', '"7"');
        res.end(req.method === 'PUT' ? '{}' : 'v');
      } else {
        res.statusCode = 404;
        res.end(JSON.stringify({ error: { code: 'NOT_FOUND' } }));
      }
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  it('sends each key to the URL of its range leader, and follows a leader change on refresh', async () => {
    let ranges = [
      { start: '', leader: 2 },
      { start: '40', leader: 1 },
      { start: '80', leader: 3 },
    ];
    const seen: string[][] = [[], [], []];
    // URLs in a different order than node ids: the mapping must come from /cluster, not the position.
    const urls = [await stubNode(3, () => ranges, seen[0]!), await stubNode(1, () => ranges, seen[1]!), await stubNode(2, () => ranges, seen[2]!)];
    const client = new HttpClient(urls, 5_000);
    const routes = await LeaderRoutes.start(client, 60_000);
    try {
      expect(routes.urlFor(Buffer.from('10', 'hex'))).toBe(2); // node 2
      expect(routes.urlFor(Buffer.from('40', 'hex'))).toBe(1); // node 1, at the range's first key
      expect(routes.urlFor(Buffer.from('7fff', 'hex'))).toBe(1);
      expect(routes.urlFor(Buffer.from('ff', 'hex'))).toBe(0); // node 3
      ranges = [{ start: '', leader: 3 }];
      await routes.refresh();
      expect(routes.urlFor(Buffer.from('10', 'hex'))).toBe(0);
    } finally {
      routes.close();
      client.close();
    }

    ranges = [
      { start: '', leader: 1 },
      { start: '80', leader: 2 },
    ];
    const target = await httpTarget(urls, { requestTimeoutMs: 5_000, routeToLeaders: true });
    try {
      expect(await target.put(Buffer.from('01', 'hex'), Buffer.from('x'))).toEqual({ ok: true });
      expect(await target.get(Buffer.from('90', 'hex'))).toEqual({ version: 7 });
    } finally {
      await target.close();
    }
    expect(seen[1]).toEqual(['%01']);
    expect(seen[2]).toEqual(['%90']);
    expect(seen[0]).toEqual([]);
  });

  it('maps an error body to its code and a 404 read to absent', async () => {
    const seen: string[] = [];
    const url = await stubNode(1, () => [], seen);
    const target = await httpTarget([url], { requestTimeoutMs: 5_000 });
    try {
      await expect(target.scan(Buffer.from('a'), 10)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    } finally {
      await target.close();
    }
  });
});

describe('processesCpuMs', () => {
  it('counts this process busy, and says undefined for a process that does not exist', () => {
    const before = processesCpuMs([process.pid]);
    if (before === undefined) return expect(process.platform).not.toBe('linux');
    // Spin until this process used 150 ms of CPU by its own account (bounded by 10 s of wall time, so a
    // loaded machine slows the test down but cannot fail it), then /proc must say the same within its 10 ms ticks.
    const cpuStart = process.cpuUsage();
    const cpuUsedMs = () => {
      const d = process.cpuUsage(cpuStart);
      return (d.user + d.system) / 1000;
    };
    const wallEnd = performance.now() + 10_000;
    let x = 0;
    while (cpuUsedMs() < 150 && performance.now() < wallEnd) x += Math.sqrt(x + 1);
    expect(x).toBeGreaterThan(0);
    const used = cpuUsedMs();
    const seen = processesCpuMs([process.pid])! - before;
    expect(seen).toBeGreaterThanOrEqual(used - 30);
    expect(seen).toBeLessThanOrEqual(used + 200);
    expect(processesCpuMs([2 ** 22 + 12345])).toBeUndefined();
  });
});
