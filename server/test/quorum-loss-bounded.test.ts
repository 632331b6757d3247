// Issue 14, bug 2: a node that lost its quorum must not grow without bound. Three nodes, one write, two
// stopped: the survivor runs alone for 60 duty ticks (compressed: a 50 ms duty interval) with clients
// writing to it, and every count of work in flight or issued stays bounded; then the two come back and
// writes work again.
import { afterAll, describe, expect, it, vi } from 'vitest';
import type { Host } from '@flotilla/shards';
import { InProcessCluster, hostPendingCounts, untilTrue } from './support/in-process-cluster.js';

const META_DUTY_INTERVAL_MS = 50;
/** A minute of duty ticks at the default interval (1 s). */
const DUTY_TICKS_ALONE = 60;
const REQUEST_DEADLINE_MS = 1_000;
const CLIENT_COUNT = 4;
const SAMPLE_INTERVAL_MS = 25;
/**
 * A client call unanswered this long past its deadline hangs (and fails the test): a guard that tells a
 * hang from a slow answer on a loaded machine, not a bound on how fast the answer comes.
 */
const HANG_GUARD_MS = 20_000;
/** Calls per client while alone, at most (each takes about its deadline to fail): bounds the loop in count as well as time. */
const CALLS_PER_CLIENT_MAX = 1_000;

/**
 * The bounds. A store call has at most one Host call out at a time, a duty run makes a handful of store
 * calls, and the clients make CLIENT_COUNT; a Host call cut off at its deadline keeps its slot until the
 * Host's own timeout (50 ticks), so a few more may linger. Before the fix the count of store calls in
 * flight grew by one per Host round trip (each meta read started a refresh that read meta again).
 */
const STORE_REQUESTS_IN_FLIGHT_MAX = CLIENT_COUNT + 16;
const HOST_PENDING_MAX = 64;
/**
 * Host calls a request makes while nobody leads its range: one per round, the rounds backing off to a
 * few per second; per duty tick, a generous multiple of what a duty run and the clients need. Before the
 * fix, thousands per second.
 */
const HOST_CALLS_PER_DUTY_TICK_MAX = 40;

/** The Host calls the store makes, counted on one node. */
const HOST_CALLS = ['get', 'scan', 'propose', 'forward', 'shards', 'shardChanges', 'changeMembership'] as const;

function countHostCalls(host: Host): { count: () => number; restore: () => void } {
  const spies = HOST_CALLS.map((name) => vi.spyOn(host, name));
  return { count: () => spies.reduce((sum, s) => sum + s.mock.calls.length, 0), restore: () => spies.forEach((s) => s.mockRestore()) };
}

/** `call`, retried while it fails UNAVAILABLE or TIMEOUT (a cluster electing leaders), at most 20 times. */
async function untilServed<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (attempt >= 20 || (code !== 'UNAVAILABLE' && code !== 'TIMEOUT')) throw err;
    }
  }
}

describe('a node that lost its quorum (issue 14, bug 2)', () => {
  let cluster: InProcessCluster | undefined;
  afterAll(async () => {
    await cluster?.close();
  });

  it('keeps what it has in flight bounded through 60 duty ticks alone, and serves writes once the others return', async () => {
    cluster = await InProcessCluster.start({ count: 3, prefix: 'flotilla-quorum-bounded-', options: { tickIntervalMs: 20, metaDutyIntervalMs: META_DUTY_INTERVAL_MS, requestDeadlineMs: REQUEST_DEADLINE_MS } });
    const survivor = cluster.node(1);
    await survivor.store.put(Buffer.from('before'), Buffer.from('v1'));

    await cluster.stopNode(2);
    await cluster.stopNode(3);
    await untilTrue('the survivor sees both peers down', 10_000, () => survivor.host.livePeers().length === 0);

    const calls = countHostCalls(survivor.host);
    const max = { storeRequests: 0, refreshes: 0, hostPending: 0, hostForwards: 0 };
    const sample = () => {
      const store = survivor.store.stats;
      const host = hostPendingCounts(survivor.host);
      max.storeRequests = Math.max(max.storeRequests, store.requestsInFlight);
      max.refreshes = Math.max(max.refreshes, store.refreshesInFlight);
      max.hostPending = Math.max(max.hostPending, host.pending);
      max.hostForwards = Math.max(max.hostForwards, host.pendingForwards);
    };
    const sampler = setInterval(sample, SAMPLE_INTERVAL_MS);
    const aloneUntilMs = performance.now() + DUTY_TICKS_ALONE * META_DUTY_INTERVAL_MS;
    const outcomes = new Map<string, number>();
    const client = async (lane: number) => {
      for (let n = 0; performance.now() < aloneUntilMs && n < CALLS_PER_CLIENT_MAX; n++) {
        let timer: NodeJS.Timeout | undefined;
        const hung = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(Object.assign(new Error('no answer'), { code: 'HUNG' })), REQUEST_DEADLINE_MS + HANG_GUARD_MS)));
        try {
          await Promise.race([survivor.store.put(Buffer.from(`alone-${lane}-${n}`), Buffer.from('x')), hung]);
          outcomes.set('ok', (outcomes.get('ok') ?? 0) + 1);
        } catch (err) {
          const code = (err as { code?: string }).code ?? 'uncoded';
          outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
        } finally {
          clearTimeout(timer);
        }
      }
    };
    let hostCalls = 0;
    try {
      await Promise.all(Array.from({ length: CLIENT_COUNT }, (_, lane) => client(lane)));
      sample();
      hostCalls = calls.count();
    } finally {
      clearInterval(sampler);
      calls.restore();
    }
    console.info(`alone for ${DUTY_TICKS_ALONE} duty ticks: ${hostCalls} host calls, maxima ${JSON.stringify(max)}, client outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`);

    expect(hostCalls, 'Host calls issued while alone').toBeLessThanOrEqual(DUTY_TICKS_ALONE * HOST_CALLS_PER_DUTY_TICK_MAX);
    expect(max.storeRequests, 'store calls in flight').toBeLessThanOrEqual(STORE_REQUESTS_IN_FLIGHT_MAX);
    expect(max.refreshes, 'refreshes in flight (single-flight)').toBeLessThanOrEqual(1);
    expect(max.hostPending, 'Host requests waiting for a core').toBeLessThanOrEqual(HOST_PENDING_MAX);
    expect(max.hostForwards, 'Host requests forwarded to a peer').toBeLessThanOrEqual(HOST_PENDING_MAX);
    // No write succeeded without a quorum, and each failed by its deadline: UNAVAILABLE or TIMEOUT, the errors a deadline produces.
    expect(outcomes.get('ok') ?? 0).toBe(0);
    expect([...outcomes.keys()].every((code) => code === 'UNAVAILABLE' || code === 'TIMEOUT'), JSON.stringify(Object.fromEntries(outcomes))).toBe(true);

    await cluster.startNode(2);
    await cluster.startNode(3);
    // Writes work again. The first calls may race the elections (UNAVAILABLE, or TIMEOUT for a write
    // appended before a leader change; the put is idempotent), so each is retried a bounded number of times.
    await untilServed(() => survivor.store.put(Buffer.from('after'), Buffer.from('v2')));
    for (const id of [1, 2, 3]) {
      const store = cluster.node(id).store;
      expect(Buffer.from((await untilServed(() => store.get(Buffer.from('before'))))!.value).toString()).toBe('v1');
      expect(Buffer.from((await untilServed(() => store.get(Buffer.from('after'))))!.value).toString()).toBe('v2');
    }
    // Once serving again, nothing is left over in flight.
    await untilTrue('the survivor settles', 5_000, () => survivor.store.stats.requestsInFlight <= 2 && survivor.store.stats.refreshesInFlight === 0);
  }, 90_000);
});
