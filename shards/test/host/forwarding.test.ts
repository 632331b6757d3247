import { createServer } from 'node:net';
import { FlotillaError } from '@flotilla/core';
import { TcpTransport } from '@flotilla/transport';
import { afterEach, describe, expect, it } from 'vitest';
import { useTempStores } from '../support/fixtures.js';
import { HostCluster } from '../support/host-cluster.js';

useTempStores();

let cluster: HostCluster | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** An expected failure of the peer's handler: it crosses with its code and message. */
class Refusal extends FlotillaError {
  readonly code = 'NOT_LEADER';
  readonly retryable = true;
}

/** Settles the promise while time moves, so a test can wait for answers that need ticks. */
async function answer<T>(c: HostCluster, p: Promise<T>, ticksMax = 100): Promise<{ ok: true; value: T } | { ok: false; err: unknown }> {
  let out: { ok: true; value: T } | { ok: false; err: unknown } | undefined;
  p.then(
    (value) => (out = { ok: true, value }),
    (err: unknown) => (out = { ok: false, err }),
  );
  await c.settle();
  for (let t = 0; out === undefined && t < ticksMax; t++) await c.tick();
  if (out === undefined) throw new Error('no answer');
  return out;
}

describe('requests forwarded between Hosts', () => {
  it('reach the peer handler inside the Raft frames and bring its answer or its coded error back', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 1, seed: 31 }));
    c.host(2).setRequestHandler(async (from, payload) => {
      const s = text(payload);
      if (s === 'fail') throw new Refusal('refused on purpose');
      if (s === 'crash') throw new Error('an uncoded bug');
      return bytes(`node 2 got "${s}" from node ${from}`);
    });
    const ok = await answer(c, c.host(1).forward(2, bytes('hello')));
    expect(ok.ok && text(ok.value)).toBe('node 2 got "hello" from node 1');
    const many = await answer(c, Promise.all(Array.from({ length: 50 }, (_, i) => c.host(3).forward(2, bytes(`n${i}`)))));
    expect(many.ok && many.value.map(text)).toEqual(Array.from({ length: 50 }, (_, i) => `node 2 got "n${i}" from node 3`));
    const coded = await answer(c, c.host(1).forward(2, bytes('fail')));
    expect(coded.ok ? undefined : coded.err).toMatchObject({ code: 'NOT_LEADER', message: 'refused on purpose' });
    const uncoded = await answer(c, c.host(1).forward(2, bytes('crash')));
    expect(uncoded.ok ? undefined : uncoded.err).toMatchObject({ code: 'INTERNAL' });
    // A node without a handler says so instead of leaving the caller to time out.
    const none = await answer(c, c.host(2).forward(3, bytes('x')));
    expect(none.ok ? undefined : none.err).toMatchObject({ code: 'NO_HANDLER' });
  });

  it('time out when the wire loses them, and drop answers nobody waits for', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 2, coreCount: 1, seed: 32, host: { requestTimeoutTicks: 5 } }));
    let served = 0;
    c.host(2).setRequestHandler(async () => {
      served++;
      return bytes('late');
    });
    // Accepted by the transport, lost on the way: the sender cannot know whether it ran.
    c.network.setLinkFaults(1, 2, { dropProbability: 1 });
    const lost = await answer(c, c.host(1).forward(2, bytes('x')));
    expect(lost.ok ? undefined : lost.err).toMatchObject({ code: 'REQUEST_TIMEOUT', retryable: true });
    // The answer lost instead: the request ran, its answer is dropped and counted when it comes late.
    c.network.clearLinkFaults(1, 2);
    c.network.setLinkFaults(2, 1, { dropProbability: 1 });
    const unanswered = await answer(c, c.host(1).forward(2, bytes('y')));
    expect(unanswered.ok ? undefined : unanswered.err).toMatchObject({ code: 'REQUEST_TIMEOUT' });
    expect(served).toBe(1);
    c.network.clearLinkFaults(2, 1);
    const fine = await answer(c, c.host(1).forward(2, bytes('z')));
    expect(fine.ok && text(fine.value)).toBe('late');
  });

  it('fail at once as PEER_UNREACHABLE, not run, when the transport refuses their frame', async () => {
    const c = (cluster = await HostCluster.start({ nodeCount: 3, coreCount: 1, seed: 33, host: { requestTimeoutTicks: 50 } }));
    let served = 0;
    c.host(2).setRequestHandler(async () => {
      served++;
      return bytes('ran');
    });
    // A cut link refuses sends (TCP: no connection, or one in backoff after a refused hello).
    c.network.cut(1, 2);
    const refused = await answer(c, c.host(1).forward(2, bytes('x')), 1);
    expect(refused.ok ? undefined : refused.err).toMatchObject({ code: 'PEER_UNREACHABLE', retryable: true });
    // Many at once, beside traffic to another peer that goes through: each refused one fails, none runs.
    const burst = await answer(c, Promise.allSettled(Array.from({ length: 20 }, () => c.host(1).forward(2, bytes('y')))), 1);
    expect(burst.ok && burst.value.map((r) => (r.status === 'rejected' ? (r.reason as { code?: string }).code : 'ran'))).toEqual(Array(20).fill('PEER_UNREACHABLE'));
    expect(c.host(1).stats.requestsTimedOut).toBe(0);
    c.network.heal(1, 2);
    const fine = await answer(c, c.host(1).forward(2, bytes('z')));
    expect(fine.ok && text(fine.value)).toBe('ran');
    expect(served).toBe(1);
  });

  it('fail at once as PEER_UNREACHABLE when a frame the transport took is dropped unsent (the connection failed)', async () => {
    // Over TCP: queued while the connection opens (send cannot know yet), dropped when it is refused.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const deadPort = (probe.address() as { port: number }).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const c = (cluster = await HostCluster.start({
      nodeCount: 1,
      coreCount: 1,
      seed: 34,
      transportFor: () => new TcpTransport({ nodeId: 1, clusterId: 'f0'.repeat(16), host: '127.0.0.1', port: 0 }),
    }));
    c.host(1).setPeer(9, `127.0.0.1:${deadPort}`);
    const sent = c.host(1).forward(9, bytes('x'));
    // No tick passes, so no deadline can fire: only the dropped frame can answer.
    await expect(sent).rejects.toMatchObject({ code: 'PEER_UNREACHABLE' });
    expect(c.host(1).stats.requestsTimedOut).toBe(0);
  });
});
