import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { META_RANGE_END, META_RANGE_ID, META_RANGE_START, type RangeDescriptor } from '@flotilla/placement';
import type { ShellLogger } from '@flotilla/shards';
import type { PlacementService } from './placement-service.js';
import type { HostKvStore } from './kv/host-store.js';

/**
 * How a node that joined a running cluster finds it again: the members it
 * was told of and where the meta range lives. Written once, when the join
 * succeeds; a restart reads it instead of joining again. Everything else
 * (ranges, later members) is read from the meta range.
 */
export interface Membership {
  readonly nodes: readonly { readonly nodeId: number; readonly address: string }[];
  readonly meta: { readonly epoch: number; readonly replicas: readonly number[] };
}

export const MEMBERSHIP_FILE = 'cluster.json';

export function readMembership(dir: string): Membership | undefined {
  const path = join(dir, MEMBERSHIP_FILE);
  if (!existsSync(path)) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path} is not valid JSON (${(err as Error).message}); it records the cluster this node joined`);
  }
  return checkMembership(parsed, path);
}

export function writeMembership(dir: string, m: Membership): void {
  const path = join(dir, MEMBERSHIP_FILE);
  writeFileSync(`${path}.tmp`, JSON.stringify(m, null, 2));
  renameSync(`${path}.tmp`, path);
}

/** The meta range as a joined node first knows it; the rest of the table comes from there. */
export function metaDescriptorOf(m: Membership): RangeDescriptor {
  return { rangeId: META_RANGE_ID, start: META_RANGE_START, end: META_RANGE_END, epoch: m.meta.epoch, replicas: m.meta.replicas };
}

/** Asks a member (its HTTP address) to record this node in the meta range; answers the membership to start with. */
export async function joinThrough(url: string, self: { nodeId: number; address: string; httpAddress: string | null }): Promise<Membership> {
  const base = url.replace(/\/+$/, '');
  let response: Response;
  try {
    response = await fetch(`${base}/cluster/join`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(self), signal: AbortSignal.timeout(30_000) });
  } catch (err) {
    throw new Error(`cannot join through ${base}: ${(err as Error).message}`);
  }
  const text = await response.text();
  if (!response.ok) throw new Error(`joining through ${base} failed: ${response.status} ${text}`);
  return checkMembership(JSON.parse(text), `the join answer of ${base}`);
}

function checkMembership(raw: unknown, where: string): Membership {
  const m = raw as Membership;
  const positive = (n: unknown) => typeof n === 'number' && Number.isSafeInteger(n) && n > 0;
  const ok =
    m !== null &&
    typeof m === 'object' &&
    Array.isArray(m.nodes) &&
    m.nodes.every((n) => positive(n?.nodeId) && typeof n.address === 'string' && /^[^\s]+:\d{1,5}$/.test(n.address)) &&
    m.meta !== null &&
    typeof m.meta === 'object' &&
    positive(m.meta.epoch) &&
    Array.isArray(m.meta.replicas) &&
    m.meta.replicas.length > 0 &&
    m.meta.replicas.every(positive);
  if (!ok) throw new Error(`${where} is not a cluster membership record`);
  return { nodes: m.nodes.map((n) => ({ nodeId: n.nodeId, address: n.address })), meta: { epoch: m.meta.epoch, replicas: [...m.meta.replicas] } };
}

/**
 * A node's background duty to the meta range, on a timer, one run at a time:
 * record itself (once it succeeds), learn the other members' addresses
 * (a node that joined later must be reachable to answer what it forwards),
 * and record the descriptors of the ranges it leads. A run that fails (no
 * meta leader yet, shutting down) is retried on the next tick and logged at
 * debug: meta converges, nothing waits on it. Cost: one linearizable scan of
 * the meta range per tick keeps that one group from quiescing (a watch on
 * the node records would let it sleep).
 */
/** Consecutive failed duty ticks between warnings. */
const DUTY_FAILURES_WARN_EVERY = 10;

export class MetaDuties {
  private readonly timer: NodeJS.Timeout;
  private running: Promise<void> | undefined;
  private stopped = false;
  private selfRecorded = false;
  private failuresInARow = 0;

  constructor(
    private readonly o: {
      store: HostKvStore;
      log: ShellLogger;
      self: { nodeId: number; address: string; httpAddress: string | null };
      intervalMs: number;
      /** Heartbeats to the placement driver, and the driver itself where the meta range is led. */
      placement?: PlacementService;
    },
  ) {
    this.timer = setInterval(() => this.run(), o.intervalMs);
    this.timer.unref();
  }

  private run(): void {
    if (this.running !== undefined || this.stopped) return;
    this.running = this.once()
      .then(() => {
        this.failuresInARow = 0;
      })
      .catch((err: unknown) => {
        // One failure is the meta range electing; many in a row is worth an operator's look.
        this.failuresInARow++;
        if (this.failuresInARow % DUTY_FAILURES_WARN_EVERY === 0) this.o.log.warn({ err, failuresInARow: this.failuresInARow }, 'meta range duties keep failing');
        else this.o.log.debug({ err }, 'meta range duties failed; retrying on the next tick');
      })
      .finally(() => (this.running = undefined));
  }

  private async once(): Promise<void> {
    const { store, self } = this.o;
    if (!this.selfRecorded) {
      await store.recordNode({ ...self, state: 'up' });
      this.selfRecorded = true;
      this.o.log.info({ nodeId: self.nodeId, address: self.address }, 'node recorded in the meta range');
    }
    // Each duty on its own: one failing (a meta write timing out) must not starve the heartbeat.
    // One read of the node records serves both duties that need them.
    const nodes = store.metaNodes();
    const results = await Promise.allSettled([
      store.learnPeers(nodes),
      store.reportDescriptors().then((written) => {
        if (written > 0) this.o.log.info({ written }, 'range descriptors recorded in the meta range');
      }),
      this.o.placement?.tick(nodes),
    ]);
    const failed = results.find((r) => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  /** Stops the timer; a run in flight fails on its own once the Host closes (and is only logged). */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }
}
