import { groupId } from '@flotilla/core';
import { META_RANGE_END, META_RANGE_ID, META_RANGE_START, RangeTable, USER_KEY_MIN } from '@flotilla/placement';
import { Host, type ShellLogger } from '@flotilla/shards';
import { TcpTransport } from '@flotilla/transport';
import type { Logger } from 'pino';
import { clusterViewOf } from './cluster-view.js';
import type { ClusterView } from './http/app.js';
import { HostKvStore } from './kv/host-store.js';
import type { KvStore } from './kv/store.js';

/** Ranges a new cluster starts with when not told otherwise: enough to spread leaders over three nodes. */
export const INITIAL_RANGE_COUNT_DEFAULT = 8;
/** Most ranges a static bootstrap may pre-split into (split points sit on the first key byte). */
export const INITIAL_RANGE_COUNT_MAX = 256;

export interface NodeOptions {
  readonly nodeId: number;
  readonly dir: string;
  /** Where this node's transport listens (node-to-node traffic). */
  readonly listen: { readonly host: string; readonly port: number };
  /** Every other member: node id → "host:port" of its transport. */
  readonly peers: Readonly<Record<number, string>>;
  /** On a first start with no ranges: pre-split the key space into this many ranges, each replicated on every member. */
  readonly initialRangeCount?: number;
  readonly coreCount?: number;
  readonly tickIntervalMs?: number;
  readonly logger: ShellLogger;
  readonly onFatal?: (err: Error) => void;
  /** How often the node records the descriptors of the ranges it leads in the meta range (only changed ones are written). */
  readonly descriptorReportIntervalMs?: number;
}

export const DESCRIPTOR_REPORT_INTERVAL_MS_DEFAULT = 1_000;

/**
 * Runs HostKvStore.reportDescriptors on a timer, one run at a time; a run
 * that fails (no meta leader yet, shutting down) is retried on the next tick
 * and logged at debug: meta converges, nothing waits on it.
 */
class DescriptorReporter {
  private readonly timer: NodeJS.Timeout;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: HostKvStore,
    private readonly log: ShellLogger,
    intervalMs: number,
  ) {
    this.timer = setInterval(() => this.run(), intervalMs);
    this.timer.unref();
  }

  private run(): void {
    if (this.running !== undefined || this.stopped) return;
    this.running = this.store
      .reportDescriptors()
      .then(
        (written) => {
          if (written > 0) this.log.info({ written }, 'range descriptors recorded in the meta range');
        },
        (err: unknown) => this.log.debug({ err }, 'recording range descriptors failed; retrying on the next tick'),
      )
      .finally(() => (this.running = undefined));
  }

  /** Stops the timer; a run in flight fails on its own once the Host closes (and is only logged). */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }
}

/**
 * One cluster node: a Host on a TCP transport and the KvStore over it.
 *
 * Membership is static for now (etcd's `--initial-cluster`): every member is
 * started with the same peers and range count, and on its first start
 * creates the same ranges — [i·256/n, (i+1)·256/n) on the first key byte —
 * replicated on all members. Joining a running cluster by address needs the
 * meta range (next step of the KV service issue).
 */
export class FlotillaNode {
  private constructor(
    readonly host: Host,
    readonly store: HostKvStore,
    readonly transportAddress: string,
    /** What the node serves on /cluster, /ranges and /metrics. */
    readonly view: ClusterView,
  ) {}

  static async start(options: NodeOptions): Promise<FlotillaNode> {
    const count = options.initialRangeCount ?? INITIAL_RANGE_COUNT_DEFAULT;
    if (!Number.isSafeInteger(count) || count < 1 || count > INITIAL_RANGE_COUNT_MAX) {
      throw new RangeError(`initial range count ${count} is not an integer in [1, ${INITIAL_RANGE_COUNT_MAX}]`);
    }
    const transport = new TcpTransport({ nodeId: options.nodeId, host: options.listen.host, port: options.listen.port, logger: options.logger as unknown as Logger });
    const host = await Host.start({
      nodeId: options.nodeId,
      dir: options.dir,
      transport,
      logger: options.logger,
      ...(options.coreCount === undefined ? {} : { coreCount: options.coreCount }),
      ...(options.tickIntervalMs === undefined ? {} : { ticker: { kind: 'timer' as const, intervalMs: options.tickIntervalMs } }),
      ...(options.onFatal === undefined ? {} : { onFatal: options.onFatal }),
    });
    try {
      for (const [id, address] of Object.entries(options.peers)) host.setPeer(Number(id), address);
      const members = [options.nodeId, ...Object.keys(options.peers).map(Number)].sort((a, b) => a - b);
      const ranges = await bootstrapRanges(host, members, count);
      let reporter: DescriptorReporter | undefined;
      const store = new HostKvStore({
        host,
        ranges,
        onClose: async () => {
          reporter?.stop();
          await host.close();
        },
      });
      reporter = new DescriptorReporter(store, options.logger, options.descriptorReportIntervalMs ?? DESCRIPTOR_REPORT_INTERVAL_MS_DEFAULT);
      const address = transport.address();
      const transportAddress = `${address.host}:${address.port}`;
      return new FlotillaNode(host, store, transportAddress, clusterViewOf({ host, store, peers: options.peers, transportAddress }));
    } catch (err) {
      await host.close();
      throw err;
    }
  }

  close(): Promise<void> {
    return this.store.close();
  }
}

/**
 * The node's range table, creating the cluster's ranges on a first start:
 * the meta range (system keys, below USER_KEY_MIN) and `count` user ranges,
 * every one replicated on every member. Every member of a static cluster runs
 * this with the same members and count, so all create the same ranges.
 */
export async function bootstrapRanges(host: Host, members: readonly number[], count: number): Promise<RangeTable> {
  let shards = await host.shards();
  if (shards.length === 0) {
    await Promise.all(initialRanges(count).map((r) => host.createShard({ shardId: groupId(r.rangeId), voters: members, bounds: r })));
    shards = await host.shards();
  }
  return new RangeTable(shards.map((s) => ({ rangeId: s.shardId, start: s.start, end: s.end, epoch: s.epoch, replicas: s.voters })));
}

/** The ranges of a static bootstrap: the meta range (id 1), then `count` user ranges split evenly on the first key byte (ids from 2). */
export function initialRanges(count: number): { rangeId: number; start: Uint8Array; end: Uint8Array | null }[] {
  return [
    { rangeId: META_RANGE_ID, start: META_RANGE_START, end: META_RANGE_END },
    ...Array.from({ length: count }, (_, i) => ({
      rangeId: META_RANGE_ID + 1 + i,
      start: i === 0 ? USER_KEY_MIN : Uint8Array.of(Math.floor((i * 256) / count)),
      end: i === count - 1 ? null : Uint8Array.of(Math.floor(((i + 1) * 256) / count)),
    })),
  ];
}
