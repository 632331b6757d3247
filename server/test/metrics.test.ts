// /metrics through prom-client: a running node's scrape after some writes parses, its histograms count
// (HTTP by route, Raft and storage latencies from the worker cores), its gauges and the process's default
// metrics are there, no series appears twice and none carries a node label. Also the pure parts: the
// ranges' health from replica states, and the bucket counts the cores keep.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { LATENCY_BUCKET_BOUNDS_SECONDS, type ShardStatus, type ShellLogger } from '@flotilla/shards';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHttpServer, type HttpServer } from '../src/http/app.js';
import { NodeMetrics, rangeHealthOf } from '../src/metrics/index.js';
import { FlotillaNode } from '../src/node.js';
import { untilTrue } from './support/until.js';

const logger = pino({ level: process.env['FLOTILLA_TEST_LOG'] ?? 'silent' }) as unknown as ShellLogger;
const WRITE_COUNT = 20;
const RANGE_COUNT = 4;

interface Series {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** The text exposition format 0.0.4, strictly: HELP and TYPE lines, then `name{labels} value` samples; anything else fails. */
function parseExposition(text: string): { series: Series[]; types: Map<string, string>; helps: Map<string, string> } {
  const series: Series[] = [];
  const types = new Map<string, string>();
  const helps = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const comment = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (comment !== null) {
      const seen = comment[1] === 'HELP' ? helps : types;
      expect(seen.has(comment[2]!), `${comment[1]} ${comment[2]} twice`).toBe(false);
      seen.set(comment[2]!, comment[3]!);
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    expect(sample, `not a sample line: ${line}`).not.toBeNull();
    const labels: Record<string, string> = {};
    for (const l of (sample![2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    const value = Number(sample![3]);
    // Go's ParseFloat, which Prometheus uses, takes NaN in any case; prom-client writes `Nan` (the event-loop lag before its first sample).
    expect(Number.isNaN(value) && !/^nan$/i.test(sample![3]!), `value of ${line}`).toBe(false);
    series.push({ name: sample![1]!, labels, value });
  }
  return { series, types, helps };
}

const keyOf = (s: Series) => `${s.name}{${Object.entries(s.labels).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${v}`).join(',')}}`;

describe('GET /metrics of a running node', () => {
  let root: string;
  let node: FlotillaNode;
  let http: HttpServer;
  /** What a PUT of a new key answers (every write here creates its key). */
  let putStatus: number;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'flotilla-metrics-'));
    const [port] = await freePorts(1);
    node = await FlotillaNode.start({ nodeId: 1, dir: join(root, 'n1'), listen: { host: '127.0.0.1', port: port! }, peers: {}, initialRangeCount: RANGE_COUNT, coreCount: 2, tickIntervalMs: 20, logger });
    http = await createHttpServer({ store: node.store, logger: logger as unknown as import('pino').Logger, cluster: node.view });
    await untilTrue('every range has its leader', 10_000, async () => (await node.host.shards()).every((s) => s.leader === 1));
    for (let i = 0; i < WRITE_COUNT; i++) {
      const put = await http.app.inject({ method: 'PUT', url: `/kv/key-${i}`, payload: `value-${i}` });
      expect([200, 201], put.body).toContain(put.statusCode);
      putStatus = put.statusCode;
    }
    expect((await http.app.inject({ method: 'GET', url: '/kv/key-0' })).statusCode).toBe(200);
    expect((await http.app.inject({ method: 'GET', url: '/no/such/route' })).statusCode).toBe(404);
  }, 30_000);

  afterAll(async () => {
    await http?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('parses, names every series once, and says what each metric is', async () => {
    const res = await http.app.inject({ method: 'GET', url: '/metrics' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe(Registry.PROMETHEUS_CONTENT_TYPE);
    const { series, types, helps } = parseExposition(res.body);
    const keys = series.map(keyOf);
    expect(keys.length - new Set(keys).size, 'duplicate series').toBe(0);
    // A series belongs to a metric with a TYPE and a HELP (a histogram's through its _bucket, _sum and _count).
    for (const s of series) {
      const family = types.has(s.name) ? s.name : s.name.replace(/_(bucket|sum|count)$/, '');
      expect(types.has(family), `TYPE of ${s.name}`).toBe(true);
      expect(helps.get(family)?.length ?? 0, `HELP of ${family}`).toBeGreaterThan(10);
    }
    // One registry per node: the scrape target names the node, no series does.
    expect(series.filter((s) => 'node' in s.labels)).toEqual([]);
  });

  it('counts writes in the HTTP histogram by route pattern, and unmatched requests under one route', async () => {
    const { series } = parseExposition((await http.app.inject({ method: 'GET', url: '/metrics' })).body);
    const puts = series.filter((s) => s.name.startsWith('flotilla_http_request_duration_seconds') && s.labels['route'] === '/kv/*' && s.labels['method'] === 'PUT' && s.labels['status_code'] === String(putStatus));
    expectHistogram(puts, 'flotilla_http_request_duration_seconds', WRITE_COUNT);
    const gets = series.filter((s) => s.name === 'flotilla_http_request_duration_seconds_count' && s.labels['route'] === '/kv/*' && s.labels['method'] === 'GET');
    expect(gets.map((s) => [s.labels['status_code'], s.value])).toEqual([['200', 1]]);
    const unmatched = series.find((s) => s.name === 'flotilla_http_request_duration_seconds_count' && s.labels['route'] === 'unmatched');
    expect(unmatched?.labels).toEqual({ route: 'unmatched', method: 'GET', status_code: '404' });
    // No series per URL: every route label is a pattern the server has (or `unmatched`).
    const routes = new Set(series.filter((s) => s.name === 'flotilla_http_request_duration_seconds_count').map((s) => s.labels['route']));
    for (const route of routes) expect(['/kv/*', '/metrics', 'unmatched']).toContain(route);
  });

  it('counts the writes in the latency histograms the worker cores keep', async () => {
    const { series } = parseExposition((await http.app.inject({ method: 'GET', url: '/metrics' })).body);
    const family = (name: string, labels: Record<string, string> = {}) => series.filter((s) => s.name.startsWith(name) && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    // Writes of one range in one turn share an entry: at least one per write sent one at a time here, and the
    // meta range's own writes (the node recording itself) come on top.
    expectHistogram(family('flotilla_raft_proposal_commit_duration_seconds'), 'flotilla_raft_proposal_commit_duration_seconds', WRITE_COUNT);
    expectHistogram(family('flotilla_raft_commit_apply_duration_seconds'), 'flotilla_raft_commit_apply_duration_seconds', WRITE_COUNT);
    expectHistogram(family('flotilla_storage_commit_duration_seconds', { synced: 'true' }), 'flotilla_storage_commit_duration_seconds', WRITE_COUNT);
    // The counters compare-bench reads are still there, per core.
    const syncs = series.filter((s) => s.name === 'flotilla_core_commits_synced_total');
    expect(syncs.map((s) => s.labels['core']).sort()).toEqual(['0', '1']);
    expect(syncs.reduce((sum, s) => sum + s.value, 0)).toBeGreaterThanOrEqual(WRITE_COUNT);
    expect(series.filter((s) => s.name === 'flotilla_core_entries_persisted_total').reduce((sum, s) => sum + s.value, 0)).toBeGreaterThanOrEqual(WRITE_COUNT);
    // Every group commit wrote a log tail record; the tail holds them or a checkpoint moved them.
    const tail = (name: string) => series.filter((s) => s.name === name);
    expect(tail('flotilla_storage_tail_records').map((s) => s.labels['core']).sort()).toEqual(['0', '1']);
    expect([...tail('flotilla_storage_tail_records'), ...tail('flotilla_storage_tail_checkpoints_total')].reduce((sum, s) => sum + s.value, 0)).toBeGreaterThan(0);
  });

  it("has the ranges' health, the store's size and the process's default metrics", async () => {
    const { series } = parseExposition((await http.app.inject({ method: 'GET', url: '/metrics' })).body);
    const value = (name: string) => series.find((s) => s.name === name && Object.keys(s.labels).length === 0)?.value;
    // The meta range and the user ranges, all led here, all healthy.
    expect(value('flotilla_ranges_led')).toBe(RANGE_COUNT + 1);
    expect(value('flotilla_ranges_under_replicated')).toBe(0);
    expect(value('flotilla_ranges_leaderless')).toBe(0);
    expect(value('flotilla_ranges_unavailable')).toBe(0);
    expect(value('flotilla_peers_up')).toBe(0);
    for (const s of series.filter((s) => s.name === 'flotilla_storage_used_bytes')) expect(s.value).toBeGreaterThan(0);
    expect(series.filter((s) => s.name === 'flotilla_storage_used_bytes')).toHaveLength(2);
    for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_eventloop_active_seconds_total', 'nodejs_array_buffers_bytes']) {
      expect(value(name), name).toBeGreaterThan(0);
    }
    expect(series.some((s) => s.name === 'nodejs_gc_duration_seconds_count' || s.name === 'nodejs_active_resources')).toBe(true);
  });

  it('gives the same numbers as structured values, and a second registry for the same process does not collide', async () => {
    const other = new NodeMetrics({ host: node.host, store: node.store });
    const families = await other.values();
    const led = families.find((f) => f.name === 'flotilla_ranges_led');
    expect(led?.type).toBe('gauge');
    expect(led?.samples).toEqual([{ name: 'flotilla_ranges_led', labels: {}, value: RANGE_COUNT + 1 }]);
    const proposals = families.find((f) => f.name === 'flotilla_raft_proposal_commit_duration_seconds');
    expect(proposals?.type).toBe('histogram');
    const count = proposals?.samples.find((s) => s.name === 'flotilla_raft_proposal_commit_duration_seconds_count');
    expect(count?.value).toBeGreaterThanOrEqual(WRITE_COUNT);
    // Both registries hold the process's metrics; neither holds the other's HTTP histogram counts.
    expect((await other.exposition()).text).toContain('process_cpu_seconds_total');
    expect((await other.exposition()).text).not.toContain('route="/kv/*"');
  });
});

/** A histogram's series: buckets for every bound and +Inf, never decreasing, +Inf equal to _count, at least `countMin` observations. */
function expectHistogram(series: readonly Series[], name: string, countMin: number): void {
  const buckets = series.filter((s) => s.name === `${name}_bucket`);
  expect(buckets.map((b) => b.labels['le'])).toEqual([...LATENCY_BUCKET_BOUNDS_SECONDS.map(String), '+Inf']);
  for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
  const count = series.find((s) => s.name === `${name}_count`)?.value;
  expect(count).toBeGreaterThanOrEqual(countMin);
  expect(buckets.at(-1)!.value).toBe(count);
  expect(series.find((s) => s.name === `${name}_sum`)?.value).toBeGreaterThan(0);
}

describe("the ranges' health as one node sees them", () => {
  const replica = (o: Partial<ShardStatus>): ShardStatus => ({
    shardId: 2,
    role: 'follower',
    leader: 2,
    term: 3,
    commit: 10,
    applied: 10,
    lastIndex: 10,
    firstIndex: 1,
    quiesced: false,
    voters: [1, 2, 3],
    learners: [],
    start: Uint8Array.of(1),
    end: null,
    epoch: 1,
    ...o,
  });
  const cases: { what: string; replicas: ShardStatus[]; live: number[]; expected: { led: number; underReplicated: number; leaderless: number; unavailable: number } }[] = [
    { what: 'a healthy follower and leader', replicas: [replica({}), replica({ role: 'leader', leader: 1 })], live: [2, 3], expected: { led: 1, underReplicated: 0, leaderless: 0, unavailable: 0 } },
    { what: 'a leader with a voter down is under-replicated, still available', replicas: [replica({ role: 'leader', leader: 1 })], live: [2], expected: { led: 1, underReplicated: 1, leaderless: 0, unavailable: 0 } },
    { what: 'two of three voters down: unavailable (and leaderless once it knows no leader)', replicas: [replica({ leader: 0 })], live: [], expected: { led: 0, underReplicated: 0, leaderless: 1, unavailable: 1 } },
    { what: 'a quiesced replica that knows no leader (a restart before traffic) is idle, not leaderless', replicas: [replica({ leader: 0, quiesced: true })], live: [2, 3], expected: { led: 0, underReplicated: 0, leaderless: 0, unavailable: 0 } },
    { what: 'a replica waiting for its first snapshot is no range yet', replicas: [replica({ leader: 0, epoch: 0, voters: [] })], live: [], expected: { led: 0, underReplicated: 0, leaderless: 0, unavailable: 0 } },
    { what: 'a single-voter range is available with no peer', replicas: [replica({ role: 'leader', leader: 1, voters: [1] })], live: [], expected: { led: 1, underReplicated: 0, leaderless: 0, unavailable: 0 } },
    { what: 'two voters, the other down: no majority', replicas: [replica({ voters: [1, 2] })], live: [], expected: { led: 0, underReplicated: 0, leaderless: 0, unavailable: 1 } },
  ];
  for (const c of cases) {
    it(c.what, () => {
      expect(rangeHealthOf(c.replicas, { self: 1, livePeers: new Set(c.live) })).toEqual(c.expected);
    });
  }
});
