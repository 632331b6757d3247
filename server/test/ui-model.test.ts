// The dashboard's arithmetic and tables without a browser (server/src/ui/metrics.js, format.js,
// model.js are plain ES modules with no DOM): the Prometheus text parser, p99 from histogram buckets,
// rates from two scrapes, and how /cluster and /placement become rows.
import { describe, expect, it } from 'vitest';
import { formatBytes, keyText, nodeBaseUrl } from '../src/ui/format.js';
import { histogramDelta, histogramQuantile, kvTrafficOf, parsePrometheusText, windowStats } from '../src/ui/metrics.js';
import { describeOperator, nodeRows, rangeRows, switchCandidates } from '../src/ui/model.js';

/** A histogram series as prom-client writes it: cumulative buckets, then sum and count. */
function histogramText(labels: string, bounds: readonly number[], cumulative: readonly number[], sum: number): string {
  const lines = bounds.map((le, i) => `flotilla_http_request_duration_seconds_bucket{${labels},le="${le}"} ${cumulative[i]}`);
  lines.push(`flotilla_http_request_duration_seconds_bucket{${labels},le="+Inf"} ${cumulative[cumulative.length - 1]}`);
  lines.push(`flotilla_http_request_duration_seconds_sum{${labels}} ${sum}`);
  lines.push(`flotilla_http_request_duration_seconds_count{${labels}} ${cumulative[cumulative.length - 1]}`);
  return lines.join('\n');
}

describe('parsePrometheusText', () => {
  it.each([
    ['plain', 'up 1', [{ name: 'up', labels: {}, value: 1 }]],
    ['labels, escapes in values', 'm{a="x",b="q\\"u\\\\o\\nte"} 2.5', [{ name: 'm', labels: { a: 'x', b: 'q"u\\o\nte' }, value: 2.5 }]],
    ['trailing comma and a timestamp', 'm{a="1",} 3 1700000000000', [{ name: 'm', labels: { a: '1' }, value: 3 }]],
    ['+Inf in a label and exponent in a value', 'b{le="+Inf"} 1e3', [{ name: 'b', labels: { le: '+Inf' }, value: 1000 }]],
    ['comments and blank lines skipped', '# HELP m help\n# TYPE m counter\n\nm 7\n', [{ name: 'm', labels: {}, value: 7 }]],
    ['a line that does not parse is skipped', 'm{a="unterminated} 1\nn 2\n{bad} 3\no x', [{ name: 'n', labels: {}, value: 2 }]],
  ])('%s', (_name, text, expected) => {
    expect(parsePrometheusText(text)).toEqual(expected);
  });

  it('reads NaN (prom-client writes Nan) and the infinities', () => {
    const values = parsePrometheusText('a NaN\nb Nan\nc +Inf\nd -Inf').map((s) => s.value);
    expect(values[0]).toBeNaN();
    expect(values[1]).toBeNaN();
    expect(values.slice(2)).toEqual([Infinity, -Infinity]);
  });
});

describe('histogramQuantile (as Prometheus histogram_quantile)', () => {
  const b = (pairs: [number, number][]) => pairs.map(([le, count]) => ({ le, count }));
  it.each([
    ['no observations', 0.99, b([[0.1, 0], [Infinity, 0]]), null],
    ['no buckets', 0.99, [], null],
    ['all in the first bucket: interpolated from 0', 0.5, b([[0.01, 100], [0.1, 100], [Infinity, 100]]), 0.005],
    ['p99 inside the second bucket', 0.99, b([[0.01, 90], [0.1, 100], [Infinity, 100]]), 0.01 + 0.09 * (9 / 10)],
    ['rank on a bucket edge', 0.9, b([[0.01, 90], [0.1, 100], [Infinity, 100]]), 0.01],
    ['rank in the +Inf bucket: the highest finite bound', 0.99, b([[0.01, 50], [0.1, 90], [Infinity, 100]]), 0.1],
    ['empty buckets below are skipped', 0.5, b([[0.001, 0], [0.01, 0], [0.1, 10], [Infinity, 10]]), 0.055],
  ])('%s', (_name, q, buckets, expected) => {
    const got = histogramQuantile(q, buckets);
    if (expected === null) expect(got).toBeNull();
    else expect(got).toBeCloseTo(expected, 12);
  });
});

describe('kvTrafficOf and windowStats', () => {
  const bounds = [0.001, 0.01, 0.1];
  const scrape = (put: number[], get: number[], put503: number) =>
    [
      histogramText('route="/kv/*",method="PUT",status_code="201"', bounds, put, 0.1),
      histogramText('route="/kv/*",method="PUT",status_code="503"', bounds, [0, 0, put503], 0.1),
      histogramText('route="/kv/*",method="GET",status_code="200"', bounds, get, 0.1),
      histogramText('route="/kv",method="GET",status_code="200"', bounds, [1, 1, 1], 0.1),
      // Not KV traffic: the dashboard's own polling, and requests no route took.
      histogramText('route="/metrics",method="GET",status_code="200"', bounds, [50, 50, 50], 0.1),
      histogramText('route="unmatched",method="GET",status_code="404"', bounds, [9, 9, 9], 0.1),
    ].join('\n');

  it('sums the KV routes by method over status codes, and counts 5xx apart', () => {
    const traffic = kvTrafficOf(parsePrometheusText(scrape([0, 10, 20], [5, 5, 5], 2)));
    expect(traffic.writes.count).toBe(22);
    expect(traffic.writes.buckets).toEqual([
      { le: 0.001, count: 0 },
      { le: 0.01, count: 10 },
      { le: 0.1, count: 22 },
      { le: Infinity, count: 22 },
    ]);
    // GET /kv/* and GET /kv (a scan) are reads.
    expect(traffic.reads.count).toBe(6);
    expect(traffic.serverErrors).toBe(2);
  });

  it('takes rates and p99 from the difference of two scrapes', () => {
    const earlier = { atMs: 1_000, traffic: kvTrafficOf(parsePrometheusText(scrape([0, 10, 20], [5, 5, 5], 2))) };
    const later = { atMs: 3_000, traffic: kvTrafficOf(parsePrometheusText(scrape([0, 10, 120], [5, 5, 5], 2))) };
    const stats = windowStats(earlier, later)!;
    // 100 writes in 2 s, all between 10 and 100 ms; no reads, no errors in between.
    expect(stats.writesPerSec).toBe(50);
    expect(stats.readsPerSec).toBe(0);
    expect(stats.serverErrorsPerSec).toBe(0);
    expect(stats.writeP99Ms).toBeCloseTo((0.01 + 0.09 * 0.99) * 1000, 9);
    expect(stats.readP99Ms).toBeNull();
  });

  it('says nothing of a window whose counters went down (a restart) or that has no length', () => {
    const high = { atMs: 1_000, traffic: kvTrafficOf(parsePrometheusText(scrape([0, 10, 20], [5, 5, 5], 2))) };
    const low = { atMs: 2_000, traffic: kvTrafficOf(parsePrometheusText(scrape([0, 1, 2], [5, 5, 5], 0))) };
    expect(windowStats(high, low)).toBeUndefined();
    expect(windowStats(high, { ...high })).toBeUndefined();
    expect(histogramDelta({ count: 5, buckets: [{ le: 1, count: 5 }] }, { count: 6, buckets: [{ le: 1, count: 4 }] })).toBeUndefined();
  });
});

describe('format', () => {
  it.each([
    ['', 'start', '(start)'],
    [null, 'end', '(end)'],
    ['6b6579', 'start', '"key"'],
    ['00ff', 'start', '0x00ff'],
    ['3c7363726970743e', 'start', '"<script>"'],
    ['zz', 'start', '?'],
  ] as const)('keyText(%j, %s) is %s', (hex, side, text) => {
    expect(keyText(hex, side).text).toBe(text);
  });

  it('cuts long keys and keeps the whole key for the title', () => {
    const long = keyText(Buffer.from('a'.repeat(100)).toString('hex'), 'start');
    expect(long.text.length).toBeLessThanOrEqual(24);
    expect(long.full).toBe(JSON.stringify('a'.repeat(100)));
  });

  it.each([
    ['127.0.0.1:8101', 'http://127.0.0.1:8101'],
    ['node-2.example:80', 'http://node-2.example:80'],
    ['[::1]:8101', 'http://[::1]:8101'],
    ['javascript:alert(1)', null],
    ['evil.example:80/path', null],
    ['user@host:80', null],
    ['host:0', null],
    ['host:65536', null],
    [42, null],
    [null, null],
  ])('nodeBaseUrl(%j) is %j', (hostPort, url) => {
    expect(nodeBaseUrl(hostPort)).toBe(url);
  });

  it.each([
    [0, '0 B'],
    [1023, '1023 B'],
    [1536, '1.5 KiB'],
    [50 * 1024 ** 3, '50 GiB'],
    [-1, '–'],
    [null, '–'],
  ])('formatBytes(%j) is %s', (bytes, text) => {
    expect(formatBytes(bytes)).toBe(text);
  });
});

describe('model', () => {
  const cluster = {
    nodeId: 2,
    nodes: [
      { nodeId: 1, transport: '127.0.0.1:7101', http: '127.0.0.1:8101', state: 'down' },
      { nodeId: 2, transport: '127.0.0.1:7102', http: '127.0.0.1:8102', state: 'self' },
      { nodeId: 3, transport: '127.0.0.1:7103', http: '127.0.0.1:8103', state: 'up' },
      { nodeId: 4, transport: '127.0.0.1:7104', http: null, state: 'up' },
    ],
    ranges: [
      { rangeId: 1, start: '', end: '0001', epoch: 1, leader: 2, replicas: [1, 2, 3] },
      { rangeId: 5, start: '80', end: null, epoch: 3, leader: 0, replicas: [1, 2, 3] },
    ],
  };
  const placement = {
    nodes: [
      { nodeId: 1, state: 'down', usedBytes: 10, availableBytes: 20, replicaCount: 0, leaderCount: 0, writesPerSec: 0, readsPerSec: 0, silentMs: 9000 },
      { nodeId: 2, state: 'up', usedBytes: 10, availableBytes: 20, replicaCount: 2, leaderCount: 1, writesPerSec: 5, readsPerSec: 1, silentMs: 200 },
    ],
    operators: [],
    ranges: [
      { rangeId: 1, start: '', end: '0001', epoch: 1, leader: 2, replicas: [2, 3, 4], learners: [], sizeBytes: 100, keyCount: 3, writesPerSec: 1, readsPerSec: 2 },
      // An older epoch than this node's replica: bounds and members from the replica, size and load from the driver.
      { rangeId: 5, start: '80', end: 'c0', epoch: 2, leader: 3, replicas: [1, 2, 3], learners: [], sizeBytes: 7, keyCount: 1, writesPerSec: 0, readsPerSec: 0 },
      { rangeId: 9, start: 'c0', end: null, epoch: 1, leader: 3, replicas: [3, 4, 5], learners: [6], sizeBytes: 0, keyCount: 0, writesPerSec: 0, readsPerSec: 0 },
    ],
  };

  it('joins the two views into one row per node, the driver\'s state next to this node\'s liveness', () => {
    const rows = nodeRows(cluster, placement);
    expect(rows.map((r) => [r.nodeId, r.state, r.heard, r.http])).toEqual([
      [1, 'down', 'down', 'http://127.0.0.1:8101'],
      [2, 'up', 'self', 'http://127.0.0.1:8102'],
      [3, null, 'up', 'http://127.0.0.1:8103'],
      [4, null, 'up', null],
    ]);
    expect(rows[1]).toMatchObject({ replicaCount: 2, leaderCount: 1, usedBytes: 10, writesPerSec: 5, silentMs: 200 });
    // A node the driver never heard from: its disk is unknown, not zero.
    const unheard = nodeRows(undefined, { nodes: [{ nodeId: 7, state: 'down', usedBytes: 0, availableBytes: 0, silentMs: null }] });
    expect(unheard).toMatchObject([{ nodeId: 7, state: 'down', usedBytes: null, availableBytes: null, silentMs: null }]);
    // Without the driver, this node's view alone.
    expect(nodeRows(cluster, undefined).map((r) => r.state)).toEqual([null, null, null, null]);
    expect(nodeRows(undefined, undefined)).toEqual([]);
  });

  it('lists every range either view knows, the newer description by epoch', () => {
    const rows = rangeRows(cluster, placement);
    expect(rows.map((r) => [r.rangeId, r.replicas, r.leader, r.end, r.sizeBytes])).toEqual([
      [1, [2, 3, 4], 2, '0001', 100],
      [5, [1, 2, 3], 0, null, 7],
      [9, [3, 4, 5], 3, null, 0],
    ]);
    expect(rows[2]!.learners).toEqual([6]);
    expect(rangeRows(cluster, undefined).map((r) => [r.rangeId, r.sizeBytes])).toEqual([
      [1, null],
      [5, null],
    ]);
  });

  it('moves to a node it hears first, and never to itself or one without an address', () => {
    expect(switchCandidates(nodeRows(cluster, placement), 2)).toEqual([
      { nodeId: 3, url: 'http://127.0.0.1:8103' },
      { nodeId: 1, url: 'http://127.0.0.1:8101' },
    ]);
  });

  it.each([
    [{ kind: 'moveReplica', from: 1, to: 4 }, 'move replica 1 → 4'],
    [{ kind: 'transferLeader', from: 1, to: 2 }, 'move lead 1 → 2'],
    [{ kind: 'addReplica', node: 3 }, 'add replica on 3'],
    [{ kind: 'removeReplica', node: 3 }, 'remove replica on 3'],
    [{ kind: 'split', key: '6d' }, 'split at "m"'],
    [{ kind: 'leaveJoint' }, 'leave a joint configuration'],
    [{ kind: 'moveReplica', from: '<b>', to: 4 }, 'move replica ? → 4'],
  ])('describeOperator(%j) is %s', (op, text) => {
    expect(describeOperator(op)).toBe(text);
  });
});
