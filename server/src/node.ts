import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SYSTEM_CLOCK, assert, formatHostPort, groupId, sleep, type Clock } from '@flotilla/core';
import { DRIVER_CONFIG_DEFAULTS, FIRST_ALLOCATED_RANGE_ID, META_RANGE_END, META_RANGE_ID, META_RANGE_START, RangeTable, SCHEDULER_CONFIG_DEFAULTS, USER_KEY_MIN, type DriverConfig } from '@flotilla/placement';
import { Host, childLogger, type HostOptions, type ShellLogger } from '@flotilla/shards';
import { TcpTransport, type ClusterId, type Transport } from '@flotilla/transport';
import type { Logger } from 'pino';
import { AdvertiseError, advertiseProblem, advertisedAddress, isWildcardHost } from './advertise.js';
import { clusterViewOf } from './cluster-view.js';
import { CONSISTENCY_CHECK_INTERVAL_MS_DEFAULT, ConsistencyChecker, ConsistencyDuty } from './consistency.js';
import type { ClusterView } from './http/admin-routes.js';
import { HostKvStore } from './kv/host-store.js';
import { descriptorOf } from './kv/meta-client.js';
import { logFormatOf } from './logging.js';
import { NodeMetrics } from './metrics/node-metrics.js';
import { PlacementService } from './placement-service.js';
import { CLUSTER_TOKEN_DEFAULT, LEGACY_CLUSTER_ID, deriveClusterId, readClusterIdentity, writeClusterIdentity, type ClusterIdentity } from './cluster-identity.js';
import { MEMBERSHIP_FILE, MetaDuties, joinedMembership, metaDescriptorOf, readKnownPeers } from './membership.js';

/** Ranges a new cluster starts with when not told otherwise: enough to spread leaders over three nodes. */
export const INITIAL_RANGE_COUNT_DEFAULT = 8;
/**
 * Most ranges a static bootstrap may pre-split into. Their ids (2 up) must stay below the ids the meta
 * range allocates for splits (FIRST_ALLOCATED_RANGE_ID, 1024), which every existing cluster's allocator
 * already counts from; more ranges than this come from splits.
 */
export const INITIAL_RANGE_COUNT_MAX = 1_000;

export interface NodeOptions {
  readonly nodeId: number;
  readonly dir: string;
  /** Where this node's transport listens (node-to-node traffic); an IPv6 host bare (::1, :: for every interface). */
  readonly listen: { readonly host: string; readonly port: number };
  /**
   * The transport address peers dial ("host:port"), recorded in the meta
   * range and answered to joiners; default the bound listen address. Differs
   * from it when the node listens on a wildcard (0.0.0.0: required then), or
   * when something relays node traffic (the fault suite's proxy). Never a
   * wildcard nor port 0 (advertise.ts).
   */
  readonly advertise?: string;
  /** Every other member: node id → "host:port" of its transport. */
  readonly peers: Readonly<Record<number, string>>;
  /** On a first start with no ranges: pre-split the key space into this many ranges, each replicated on every member. */
  readonly initialRangeCount?: number;
  readonly coreCount?: number;
  readonly tickIntervalMs?: number;
  /** Snapshot bytes per second this node sends, over all streams (the Host's default otherwise). */
  readonly snapshotBytesPerSecMax?: number;
  readonly logger: ShellLogger;
  readonly onFatal?: (err: Error) => void;
  /** How often the node does its meta range duties: record itself, learn members, record the descriptors of ranges it leads (only changed ones are written). */
  readonly metaDutyIntervalMs?: number;
  /**
   * This node's HTTP address as others reach it ("host:port": `flotilla
   * start`'s --advertise-http, else --http), recorded in the meta range and
   * shown on /cluster. Never a wildcard nor port 0 (advertise.ts).
   */
  readonly httpAddress?: string;
  /**
   * Join a running cluster through any member's HTTP URL instead of
   * bootstrapping one (then `peers` must be empty). Only the first start
   * joins; `<dir>/cluster.json` remembers the cluster for restarts.
   */
  readonly join?: string;
  /**
   * Mixed into the cluster id a static bootstrap derives (cluster-identity.ts);
   * every member must be given the same one. Default CLUSTER_TOKEN_DEFAULT.
   */
  readonly clusterToken?: string;
  /** The placement driver's timings and limits (placement/src/driver.ts), for tests and tuning; defaults otherwise. */
  readonly placement?: PlacementOptions;
  /** Budget of a store call that names no deadline of its own (API calls, meta duties); HostKvStore's default otherwise. */
  readonly requestDeadlineMs?: number;
  /**
   * Least time between two background consistency checks of a range this
   * node leads (consistency.ts); 0 turns them off (POST
   * /ranges/:id/consistency-check still runs one). Default
   * CONSISTENCY_CHECK_INTERVAL_MS_DEFAULT.
   */
  readonly consistencyCheckIntervalMs?: number;
  /** Budget of one consistency check (consistency.ts CONSISTENCY_CHECK_BUDGET_MS_DEFAULT otherwise). */
  readonly consistencyCheckBudgetMs?: number;
  /**
   * Node-to-node traffic over a transport the caller made (the whole-node
   * simulation's memory network) instead of TCP on `listen`: `address` is
   * what the meta range records for this node.
   */
  readonly transport?: { readonly endpoint: Transport; readonly address: string };
  /** Host options beyond the ones above (the simulation: inline cores, a manual ticker, simulated store I/O, Raft timings). */
  readonly hostOptions?: Partial<Omit<HostOptions, 'nodeId' | 'dir' | 'transport' | 'logger' | 'clock'>>;
  /** What every timer of the node runs on: deadlines, retries, duties, placement (SYSTEM_CLOCK otherwise). */
  readonly clock?: Clock;
  /** What the placement heartbeat reports of the disk (measured otherwise). */
  readonly disk?: () => { usedBytes: number; availableBytes: number };
}

export interface PlacementOptions {
  readonly suspectAfterMs?: number;
  readonly downAfterMs?: number;
  readonly operatorTimeoutMs?: number;
  readonly stepRetryMs?: number;
  readonly scheduler?: Partial<DriverConfig['scheduler']>;
  /** Until an operator sets them (PUT /placement/settings). */
  readonly replicationFactor?: number;
  readonly paused?: boolean;
}

/** The driver's configuration from a node's options. */
export function driverConfigOf(o: PlacementOptions = {}): DriverConfig {
  const { paused: _paused, replicationFactor: _rf, ...scheduler } = SCHEDULER_CONFIG_DEFAULTS;
  return {
    ...DRIVER_CONFIG_DEFAULTS,
    ...(o.suspectAfterMs === undefined ? {} : { suspectAfterMs: o.suspectAfterMs }),
    ...(o.downAfterMs === undefined ? {} : { downAfterMs: o.downAfterMs }),
    ...(o.operatorTimeoutMs === undefined ? {} : { operatorTimeoutMs: o.operatorTimeoutMs }),
    ...(o.stepRetryMs === undefined ? {} : { stepRetryMs: o.stepRetryMs }),
    scheduler: { ...scheduler, unsplittable: [META_RANGE_ID], leaderPinned: [META_RANGE_ID], ...o.scheduler },
  };
}

export const META_DUTY_INTERVAL_MS_DEFAULT = 1_000;

/**
 * One cluster node: a Host on a TCP transport (or the caller's) and the
 * KvStore over it.
 *
 * A node either bootstraps a cluster with the others (etcd's
 * `--initial-cluster`): every member is started with the same peers and range
 * count, and on its first start creates its replicas of the same ranges — the
 * meta range, then [i·256/n, (i+1)·256/n) on the first key byte — each on
 * min(3, members) members (bootstrapRanges); or it joins a running cluster
 * through a member's HTTP URL (`join`, membership.ts) and is given replicas
 * by the placement driver. The node records the descriptors of the ranges it
 * leads in the meta range, and its router reads them from there.
 */
export class FlotillaNode {
  private constructor(
    readonly host: Host,
    readonly store: HostKvStore,
    readonly transportAddress: string,
    /** What the node serves on /cluster, /ranges and /metrics. */
    readonly view: ClusterView,
    /** The cluster this node belongs to, as recorded in `<dir>/CLUSTER`. */
    readonly clusterId: ClusterId,
    /** What /metrics shows, also as structured values (`metrics.values()`). */
    readonly metrics: NodeMetrics,
  ) {}

  static async start(options: NodeOptions): Promise<FlotillaNode> {
    const count = options.initialRangeCount ?? INITIAL_RANGE_COUNT_DEFAULT;
    if (!Number.isSafeInteger(count) || count < 1 || count > INITIAL_RANGE_COUNT_MAX) {
      throw new RangeError(`initial range count ${count} is not an integer in [1, ${INITIAL_RANGE_COUNT_MAX}]`);
    }
    checkAdvertised(options);
    const consistencyIntervalMs = options.consistencyCheckIntervalMs ?? CONSISTENCY_CHECK_INTERVAL_MS_DEFAULT;
    if (!Number.isSafeInteger(consistencyIntervalMs) || consistencyIntervalMs < 0) throw new RangeError(`consistency check interval ${consistencyIntervalMs} ms is not a non-negative integer`);
    const tcp = options.transport === undefined ? new TcpTransport({ nodeId: options.nodeId, host: options.listen.host, port: options.listen.port, logger: options.logger as unknown as Logger }) : undefined;
    const clock = options.clock ?? SYSTEM_CLOCK;
    const host = await Host.start({
      ...options.hostOptions,
      nodeId: options.nodeId,
      dir: options.dir,
      transport: tcp ?? options.transport!.endpoint,
      logger: options.logger,
      // The worker cores write the format the node's logger writes (a logger made by createNodeLogger says which).
      logFormat: logFormatOf(options.logger),
      clock,
      ...(options.coreCount === undefined ? {} : { coreCount: options.coreCount }),
      ...(options.snapshotBytesPerSecMax === undefined ? {} : { snapshotBytesPerSecMax: options.snapshotBytesPerSecMax }),
      // The reports the placement heartbeat carries name a size split key where the driver would split.
      splitKeyMinBytes: driverConfigOf(options.placement).scheduler.splitSizeBytes,
      ...(options.tickIntervalMs === undefined ? {} : { ticker: { kind: 'timer' as const, intervalMs: options.tickIntervalMs } }),
      ...(options.onFatal === undefined ? {} : { onFatal: options.onFatal }),
    });
    try {
      const address = tcp?.address();
      const transportAddress = options.advertise ?? (address === undefined ? options.transport!.address : formatHostPort(address));
      const self = { nodeId: options.nodeId, address: transportAddress, httpAddress: options.httpAddress ?? null };
      let ranges: RangeTable;
      let clusterId: ClusterId;
      let joinedPeers: number[] = [];
      const recorded = await recordedClusterIdentity(host, options);
      if (options.join !== undefined || existsSync(join(options.dir, MEMBERSHIP_FILE)) || recorded?.origin === 'join') {
        if (Object.keys(options.peers).length > 0) throw new RangeError('a node joins a cluster or is given its peers, not both');
        const joined = await joinedMembership({ dir: options.dir, join: options.join, self, recorded, log: childLogger(options.logger, { nodeId: options.nodeId }) });
        clusterId = joined.clusterId;
        // Before the first peer: hellos carry it, and until it is set the transport refuses every hello.
        tcp?.setClusterId(clusterId);
        for (const n of joined.membership.nodes) if (n.nodeId !== options.nodeId) host.setPeer(n.nodeId, n.address);
        joinedPeers = joined.membership.nodes.map((n) => n.nodeId).filter((id) => id !== options.nodeId);
        ranges = new RangeTable([metaDescriptorOf(joined.membership)]);
        for (const s of await host.shards()) if (s.epoch > 0) ranges.upsert(descriptorOf(s));
      } else {
        // Recorded before bootstrapRanges creates a replica, so a restart never derives it again.
        clusterId = recorded?.clusterId ?? recordBootstrapClusterId(options);
        tcp?.setClusterId(clusterId);
        for (const [id, addr] of Object.entries(options.peers)) host.setPeer(Number(id), addr);
        const members = [options.nodeId, ...Object.keys(options.peers).map(Number)].sort((a, b) => a - b);
        ranges = await bootstrapRanges(host, members, count, { create: recorded?.rangesCreated !== true });
        if (recorded?.rangesCreated !== true) writeClusterIdentity(options.dir, { clusterId, origin: recorded?.origin ?? 'bootstrap', rangesCreated: true });
      }
      // The members this node last read from the meta range (membership.ts, PEERS_FILE): a node that was
      // joined by others after it started (a founder alone, a static member) knows them only from there.
      // The flags and cluster.json were applied first and win: their addresses are the same or older.
      for (const p of readKnownPeers(options.dir, options.logger)) if (p.nodeId !== options.nodeId && !host.hasPeer(p.nodeId)) host.setPeer(p.nodeId, p.address);
      let duties: MetaDuties | undefined;
      let consistencyDuty: ConsistencyDuty | undefined;
      const store = new HostKvStore({
        host,
        ranges,
        ...(options.requestDeadlineMs === undefined ? {} : { requestDeadlineMs: options.requestDeadlineMs }),
        clock,
        onClose: async () => {
          duties?.stop();
          consistencyDuty?.stop();
          await host.close();
        },
      });
      const placement = new PlacementService({
        host,
        store,
        log: childLogger(options.logger, { component: 'placement', nodeId: options.nodeId }),
        dir: options.dir,
        config: driverConfigOf(options.placement),
        defaults: { paused: options.placement?.paused ?? false, replicationFactor: options.placement?.replicationFactor ?? REPLICATION_FACTOR_DEFAULT },
        clock,
        ...(options.disk === undefined ? {} : { disk: options.disk }),
      });
      duties = new MetaDuties({ store, log: childLogger(options.logger, { component: 'meta', nodeId: options.nodeId }), self, intervalMs: options.metaDutyIntervalMs ?? META_DUTY_INTERVAL_MS_DEFAULT, placement, clock, dir: options.dir });
      const consistency = new ConsistencyChecker({
        host,
        store,
        log: childLogger(options.logger, { component: 'consistency', nodeId: options.nodeId }),
        ...(options.consistencyCheckBudgetMs === undefined ? {} : { budgetMs: options.consistencyCheckBudgetMs }),
        clock,
      });
      if (consistencyIntervalMs > 0) {
        consistencyDuty = new ConsistencyDuty({ host, checker: consistency, log: childLogger(options.logger, { component: 'consistency', nodeId: options.nodeId }), intervalMs: consistencyIntervalMs, clock });
      }
      const metrics = new NodeMetrics({ host, store, consistency });
      // A member learns a joiner's address from the meta range on its next duty tick, and until then
      // refuses its connections: requests this node forwarded meanwhile were lost, and waited out their
      // whole deadline (every client of the rebalance bench stalled 5 s on one). So the node serves once
      // each member has been heard from, or after a few duty ticks (a member may be down).
      if (joinedPeers.length > 0) await untilHeardFrom(host, joinedPeers, clock, JOIN_HEARD_WAIT_DUTY_TICKS * (options.metaDutyIntervalMs ?? META_DUTY_INTERVAL_MS_DEFAULT), options.logger);
      const view = clusterViewOf({ host, store, peers: options.peers, transportAddress, httpAddress: self.httpAddress, log: childLogger(options.logger, { nodeId: options.nodeId }), placement, consistency, metrics });
      return new FlotillaNode(host, store, transportAddress, withClusterIdInJoinAnswer(view, clusterId), clusterId, metrics);
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
 * Refuses, before anything binds or is recorded, addresses others could not
 * use: an advertised wildcard or port 0, or a wildcard listen without an
 * advertised transport address (advertise.ts). A node given its own
 * transport (the simulation) advertises that transport's address.
 */
function checkAdvertised(options: NodeOptions): void {
  if (options.transport === undefined) {
    const listen = formatHostPort(options.listen);
    // Port 0 is fine to listen on: without an advertised address the node advertises the port it bound.
    if (options.advertise !== undefined || isWildcardHost(options.listen.host)) advertisedAddress({ listen, advertise: options.advertise, flags: { listen: 'listen', advertise: 'advertise' } });
  }
  if (options.httpAddress !== undefined) {
    const problem = advertiseProblem(options.httpAddress);
    if (problem !== undefined) throw new AdvertiseError(`HTTP address ${options.httpAddress} cannot be advertised: ${problem}; pass the address clients and other nodes reach this node's HTTP API at`);
  }
}

/**
 * The identity `<dir>/CLUSTER` records, after recording the legacy id in a
 * data directory from before cluster ids: one that joined (cluster.json) or
 * holds replicas. (A new directory records its id before either exists.)
 */
async function recordedClusterIdentity(host: Host, options: NodeOptions): Promise<ClusterIdentity | undefined> {
  const recorded = readClusterIdentity(options.dir);
  if (recorded !== undefined) return recorded;
  if (!existsSync(join(options.dir, MEMBERSHIP_FILE)) && (await host.shards()).length === 0) return undefined;
  const legacy: ClusterIdentity = { clusterId: LEGACY_CLUSTER_ID, origin: 'legacy' };
  writeClusterIdentity(options.dir, legacy);
  options.logger.warn({ clusterId: legacy.clusterId, dir: options.dir }, 'data directory from before cluster ids: recorded the legacy cluster id (ARCHITECTURE.md); every member must run this version');
  return legacy;
}

/** A static member's first start: the id every member derives from the same members and token, recorded. */
function recordBootstrapClusterId(options: NodeOptions): ClusterId {
  // Itself as the others name it in their --peers: the advertised address when something relays its traffic.
  const self = options.advertise ?? formatHostPort(options.listen);
  const members = [{ nodeId: options.nodeId, address: self }, ...Object.entries(options.peers).map(([id, address]) => ({ nodeId: Number(id), address }))];
  const clusterId = deriveClusterId({ members, token: options.clusterToken ?? CLUSTER_TOKEN_DEFAULT });
  writeClusterIdentity(options.dir, { clusterId, origin: 'bootstrap' });
  options.logger.info({ clusterId, members: members.length }, 'cluster id derived and recorded');
  return clusterId;
}

/** The view with the cluster id added to the join answer: the joining node records it and says it in every hello. */
function withClusterIdInJoinAnswer(view: ClusterView, clusterId: ClusterId): ClusterView {
  return { ...view, join: async (...args: Parameters<ClusterView['join']>) => ({ ...((await view.join(...args)) as Record<string, unknown>), clusterId }) };
}

/**
 * The node's range table, creating the cluster's ranges on a first start:
 * the meta range (system keys, below USER_KEY_MIN) and `count` user ranges,
 * each replicated on min(3, members) members. Every member of a static
 * cluster runs this with the same members and count, so all agree on which
 * ranges exist and where, and each creates its own replicas.
 */
export async function bootstrapRanges(host: Host, members: readonly number[], count: number, options: { create?: boolean } = {}): Promise<RangeTable> {
  const sorted = [...members].sort((a, b) => a - b);
  const factor = Math.min(REPLICATION_FACTOR_DEFAULT, sorted.length);
  // Range i on `factor` members from member i on: the same on every member, leaders and data spread.
  const initial = initialRanges(count).map((r, i) => ({ ...r, epoch: 1, replicas: Array.from({ length: factor }, (_, k) => sorted[(i + k) % sorted.length]!).sort((a, b) => a - b) }));
  let shards = await host.shards();
  // Only on a first start (`create`): a member whose replicas all left it since (moved off, merged away)
  // holds none either, and made again they would be stale replicas at the bootstrap's index and members
  // (node simulation seed 86019: a replica at applied 5 where the range had reached 30). A first start
  // cut short after creating some keeps those; the rest come from their leaders (replica adoption).
  if (shards.length === 0 && options.create !== false) {
    const mine = initial.filter((r) => r.replicas.includes(host.nodeId));
    // In key order, in one run per core: two ranges merge only where one store holds both, and dealt to
    // the cores one by one no two neighbours would share one. (createShard places each at once, in call order.)
    const run = Math.ceil(mine.length / host.coreCount);
    await Promise.all(mine.map((r, i) => host.createShard({ shardId: groupId(r.rangeId), voters: r.replicas, bounds: r, ...(i % run === 0 ? {} : { colocateWith: groupId(mine[i - 1]!.rangeId) }) })));
    shards = await host.shards();
  }
  // What every member knows at start; the replicas here are fresher for their ranges, the meta range for the rest (refreshed on a miss).
  const table = new RangeTable(initial);
  // A replica still waiting for its first snapshot (epoch 0, added by a move) knows no range yet.
  for (const s of shards) if (s.epoch > 0) table.upsert(descriptorOf(s));
  return table;
}

/** Duty ticks a joining node waits at most for every member to have learned its address (FlotillaNode.start). */
const JOIN_HEARD_WAIT_DUTY_TICKS = 3;
/** How often that wait looks. */
const JOIN_HEARD_POLL_MS = 20;

/** Resolves once every peer in `peers` was heard from, or after `waitMs` (logged: some member may be down). */
async function untilHeardFrom(host: Host, peers: readonly number[], clock: Clock, waitMs: number, logger: NodeOptions['logger']): Promise<void> {
  const deadline = clock.nowMs() + waitMs;
  for (;;) {
    const unheard = peers.filter((id) => !host.hasHeardFrom(id));
    if (unheard.length === 0) return;
    if (clock.nowMs() >= deadline) {
      logger.info({ nodeId: host.nodeId, unheard, waitedMs: waitMs }, 'joined; serving before every member was heard from (down, or slow to read the meta range)');
      return;
    }
    await sleep(clock, JOIN_HEARD_POLL_MS);
  }
}

/** Replicas per range when the cluster has that many members (fewer members: every member holds every range). */
export const REPLICATION_FACTOR_DEFAULT = 3;

/**
 * The ranges of a static bootstrap: the meta range (id 1), then `count` user ranges split evenly on the
 * first key byte (ids from 2) — on the first two bytes when there are more than 256, so that each split
 * point is distinct. (Up to 256 the points stay one byte: clusters bootstrapped before keep their bounds.)
 */
export function initialRanges(count: number): { rangeId: number; start: Uint8Array; end: Uint8Array | null }[] {
  assert(count <= FIRST_ALLOCATED_RANGE_ID - META_RANGE_ID - 1, () => `${count} bootstrap ranges would reach the allocated range ids`);
  const point = (i: number): Uint8Array => {
    if (count <= 256) return Uint8Array.of(Math.floor((i * 256) / count));
    const p = Math.floor((i * 65_536) / count);
    return Uint8Array.of(p >> 8, p & 0xff);
  };
  return [
    { rangeId: META_RANGE_ID, start: META_RANGE_START, end: META_RANGE_END },
    ...Array.from({ length: count }, (_, i) => ({
      rangeId: META_RANGE_ID + 1 + i,
      start: i === 0 ? USER_KEY_MIN : point(i),
      end: i === count - 1 ? null : point(i + 1),
    })),
  ];
}
