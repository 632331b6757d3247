import { Registry, type Metric } from 'prom-client';
import type { CoreStats, CoreStatsReport, Host, ShardStatus } from '@flotilla/shards';
import type { TransportStats } from '@flotilla/transport';
import type { ConsistencyStats } from '../consistency.js';
import type { HostKvStoreStats } from '../kv/host-store.js';
import { HttpMetrics } from './http-metrics.js';
import { BucketHistogram, mirroredCounter, mirroredGauge, sumBuckets, type Sample } from './mirrored.js';
import { processMetricsRegistry } from './process-metrics.js';
import { rangeHealthOf, type RangeHealth } from './range-health.js';

/** What a node's metrics read: its Host (cores, transport, replicas, peers), its KV store and, in a cluster node, its consistency checker. */
export interface NodeMetricsSources {
  readonly host: Host;
  readonly store: { readonly stats: HostKvStoreStats };
  readonly consistency?: { readonly stats: ConsistencyStats };
}

/**
 * One metric with its series, as `NodeMetrics.values()` gives them: the
 * numbers /metrics shows, read at the call, without the text format to parse.
 */
export interface MetricFamily {
  /** The Prometheus name, e.g. `flotilla_core_rounds_total`; its suffix gives the unit (`_seconds`, `_bytes`; `_total`: a count). */
  readonly name: string;
  /** What the metric counts or measures, as /metrics prints it after `# HELP`. */
  readonly help: string;
  /**
   * Prometheus's metric type: a counter only grows, except that it starts
   * from 0 again when whatever counts it restarts (compare two reads for a
   * rate, as Prometheus does); a gauge goes up and down; a histogram
   * gives cumulative buckets, a sum and a count. 'summary' is prom-client's
   * fourth type; no metric of a node has it today.
   */
  readonly type: 'counter' | 'gauge' | 'histogram' | 'summary';
  /** The metric's series: one per label set, and for a histogram each series' buckets, sum and count. */
  readonly samples: readonly {
    /** The series' name: the family's, or for a histogram the family's with `_bucket`, `_sum` or `_count`. */
    readonly name: string;
    /** The labels that tell the series apart (e.g. `core`: a worker core's index); a `_bucket` sample's `le` is its upper bound. */
    readonly labels: Readonly<Record<string, string | number>>;
    /** The number, in the unit the name gives; a `_bucket` sample's is the count of observations at or below `le`. */
    readonly value: number;
  }[];
}

/** What one scrape reads from the Host before the registry collects (each metric's collect() reads from it). */
interface Snapshot {
  readonly cores: readonly CoreStatsReport[];
  readonly ranges: RangeHealth;
  readonly transport: TransportStats;
  readonly livePeerCount: number;
}

const EMPTY_SNAPSHOT: Snapshot = {
  cores: [],
  ranges: { led: 0, underReplicated: 0, leaderless: 0, unavailable: 0 },
  transport: { batchesSent: 0, batchesReceived: 0, bytesSent: 0, bytesReceived: 0, batchesDropped: 0, batchesOversized: 0, framesRejected: 0, hellosRefusedCluster: 0, hellosRefusedNotMember: 0, hellosRefusedVersion: 0, connectionsOpened: 0, reconnects: 0 },
  livePeerCount: 0,
};

/**
 * One node's metrics in a prom-client Registry of its own (two nodes in one
 * process each have theirs; no series carries a node label — the scrape
 * target names the node). The process's metrics (process-metrics.ts) are
 * added to it at the first scrape. Every value is read when scraped: the counters the Host,
 * the transport, the KV store and the worker cores keep already, and the
 * cores' latency histograms (bucket counts, shards/src/host/latency.ts),
 * fetched once per scrape with the cores' stats. Only the HTTP histogram
 * is observed as requests are answered. ARCHITECTURE.md ("Metrics") says
 * what each one means.
 */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly http: HttpMetrics;
  private snapshot: Snapshot = EMPTY_SNAPSHOT;
  private processMetricsAdded = false;

  constructor(private readonly sources: NodeMetricsSources) {
    const registry = this.registry;
    this.http = new HttpMetrics(registry);
    this.coreMetrics();
    this.latencyMetrics();
    this.nodeMetrics();
  }

  /** The Prometheus text exposition (format 0.0.4), after reading every core's stats. */
  async exposition(): Promise<{ contentType: string; text: string }> {
    await this.refresh();
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }

  /** The same numbers as structured values (the embedding API). */
  async values(): Promise<MetricFamily[]> {
    await this.refresh();
    const families = await this.registry.getMetricsAsJSON();
    return families.map((f) => ({
      name: f.name,
      help: f.help,
      type: String(f.type) as MetricFamily['type'],
      samples: f.values.map((v) => ({ name: (v as { metricName?: string }).metricName ?? f.name, labels: { ...(v.labels as Record<string, string | number>) }, value: v.value })),
    }));
  }

  private async refresh(): Promise<void> {
    // At the first scrape, not before: a node nobody scrapes (a simulation, most tests) starts no GC
    // observer and no event-loop sampler (process-metrics.ts).
    if (!this.processMetricsAdded) {
      this.processMetricsAdded = true;
      // getMetricsAsArray is typed as plain objects; they are the metric instances themselves.
      for (const m of processMetricsRegistry().getMetricsAsArray()) this.registry.registerMetric(m as unknown as Metric);
    }
    const { host } = this.sources;
    const [cores, shards] = await Promise.all([host.coreStats(), host.shards()]);
    const livePeers = host.livePeers();
    this.snapshot = {
      cores,
      ranges: rangeHealthOf(shards as readonly ShardStatus[], { self: host.nodeId, livePeers: new Set(livePeers) }),
      transport: host.transportStats(),
      livePeerCount: livePeers.length,
    };
  }

  /** The cores' counters and gauges, one series per core (label `core`, its index). */
  private coreMetrics(): void {
    const perCore = (read: (c: CoreStats) => number) => (): Sample[] => this.snapshot.cores.map((c, core) => ({ labels: { core }, value: read(c) }));
    const counter = (name: string, help: string, read: (c: CoreStats) => number) => mirroredCounter(this.registry, { name, help, labelNames: ['core'], samples: perCore(read) });
    const gauge = (name: string, help: string, read: (c: CoreStats) => number) => mirroredGauge(this.registry, { name, help, labelNames: ['core'], samples: perCore(read) });
    counter('flotilla_core_rounds_total', "Rounds the core ran: each takes its ready replicas' Raft updates and makes one group commit (more when a checksum entry splits it).", (c) => c.rounds);
    counter('flotilla_core_commits_synced_total', 'Group commits made durable (new entries, a term or a vote); entries per sync = flotilla_core_entries_persisted_total / this.', (c) => c.commitsSynced);
    counter('flotilla_core_commits_unsynced_total', 'Group commits of commit indexes and applied entries only, not synced (replayed from the log after a power failure).', (c) => c.commitsUnsynced);
    counter('flotilla_core_entries_persisted_total', 'Raft log entries written durably.', (c) => c.entriesPersisted);
    counter('flotilla_core_entries_applied_total', 'Committed Raft entries applied to the key-value state.', (c) => c.entriesApplied);
    counter('flotilla_core_proposals_total', "Write and split requests taken by the core's leaders.", (c) => c.proposals);
    counter('flotilla_core_proposal_entries_total', 'Raft entries those requests were proposed in (the writes a range takes in one turn share one).', (c) => c.proposalEntries);
    counter('flotilla_core_reads_total', 'Reads the core served or started.', (c) => c.reads);
    counter('flotilla_core_lease_reads_total', "Linearizable reads this node's leaders answered under a node lease, with no heartbeat round (ARCHITECTURE.md, \"Node leases\").", (c) => c.leaseReads);
    counter('flotilla_core_group_ticks_total', 'Raft ticks delivered to replicas (quiesced replicas get none).', (c) => c.groupTicks);
    counter('flotilla_core_messages_sent_total', 'Raft messages sent to peers.', (c) => c.messagesSent);
    counter('flotilla_core_messages_stepped_total', 'Raft messages from peers stepped.', (c) => c.messagesStepped);
    counter('flotilla_core_messages_rejected_total', 'Raft messages from the network dropped as invalid (wrong node, unknown range, undecodable).', (c) => c.messagesRejected);
    counter('flotilla_core_snapshots_sent_total', 'Snapshot streams started to followers.', (c) => c.snapshotsSent);
    counter('flotilla_core_snapshots_installed_total', 'Snapshots installed from leaders.', (c) => c.snapshotsInstalled);
    counter('flotilla_core_compactions_total', 'Raft log compactions.', (c) => c.compactions);
    counter('flotilla_core_merges_held_total', "Merges held on this node until its replica of the merged range caught up.", (c) => c.mergesHeld);
    counter('flotilla_core_disk_full_commits_total', 'Group commits that failed for want of disk space (each retried until one succeeds).', (c) => c.diskFullCommits);
    counter('flotilla_core_checksum_passes_total', "Consistency check passes started on the core's replicas.", (c) => c.checksumPasses);
    counter('flotilla_core_checksum_chunks_total', 'Chunks hashed by consistency check passes (at most one per core per tick).', (c) => c.checksumChunks);
    gauge('flotilla_core_groups', 'Replicas on the core.', (c) => c.groupCount);
    gauge('flotilla_core_groups_active', 'Replicas on the core that are not quiesced (they tick).', (c) => c.activeGroupCount);
    gauge('flotilla_core_groups_loaded', 'Replicas on the core whose Raft state is built in memory (the rest were opened at start and have had no traffic since).', (c) => c.loadedGroupCount);
    counter('flotilla_storage_tail_checkpoints_total', "Checkpoints of the core's log tail: group commits that also moved the tail's records into the per-shard log (ARCHITECTURE.md, \"The log tail\").", (c) => c.tailCheckpoints);
    counter('flotilla_storage_tail_compactions_total', 'Quiesced replicas whose log a tail checkpoint compacted to their applied index instead of moving their entries into the per-shard log (ARCHITECTURE.md, "Compaction at checkpoints").', (c) => c.tailCompactions);
    gauge('flotilla_storage_tail_records', "Records in the core's log tail since its last checkpoint (one per group commit; a restart replays them).", (c) => c.tailRecords);
    gauge('flotilla_storage_used_bytes', "Bytes of the core's LMDB file in use: pages up to the last one written times the page size (freed pages inside it are reused, never returned).", (c) => c.storeUsedBytes);
  }

  /** The cores' latency histograms, summed over the node's cores. */
  private latencyMetrics(): void {
    const cores = () => this.snapshot.cores;
    new BucketHistogram(
      'flotilla_raft_proposal_commit_duration_seconds',
      "Leader side: from a request's Raft entry being proposed (writes batch per range and turn) to the core taking it as committed, i.e. replicated to a quorum.",
      () => [{ buckets: sumBuckets(cores().map((c) => c.latencies.proposalToCommit)) }],
    ).register(this.registry);
    new BucketHistogram(
      'flotilla_raft_commit_apply_duration_seconds',
      'Leader side: from the core taking an entry of a request as committed to its apply being committed to the store and the request answered.',
      () => [{ buckets: sumBuckets(cores().map((c) => c.latencies.commitToApply)) }],
    ).register(this.registry);
    new BucketHistogram(
      'flotilla_storage_commit_duration_seconds',
      'Group commits to LMDB (one transaction per round): synced="true" made entries, a term or a vote durable (fsync); "false" wrote commit indexes and applies only.',
      () => [
        { labels: { synced: 'true' }, buckets: sumBuckets(cores().map((c) => c.latencies.storeCommitSynced)) },
        { labels: { synced: 'false' }, buckets: sumBuckets(cores().map((c) => c.latencies.storeCommitUnsynced)) },
      ],
    ).register(this.registry);
  }

  /** The Host's, the transport's, the KV store's and the consistency checker's figures, and the ranges' health. */
  private nodeMetrics(): void {
    const { host, store, consistency } = this.sources;
    const registry = this.registry;
    const one = (value: () => number) => (): Sample[] => [{ value: value() }];
    const counter = (name: string, help: string, value: () => number) => mirroredCounter(registry, { name, help, samples: one(value) });
    const gauge = (name: string, help: string, value: () => number) => mirroredGauge(registry, { name, help, samples: one(value) });
    const ranges = () => this.snapshot.ranges;
    gauge('flotilla_ranges_led', 'Ranges whose leader is this node.', () => ranges().led);
    gauge('flotilla_ranges_under_replicated', 'Ranges this node leads with a voter it has not heard from within the liveness timeout (this node\'s view).', () => ranges().underReplicated);
    gauge('flotilla_ranges_leaderless', "Ranges with an active (not quiesced) replica on this node that knows no leader (this node's view).", () => ranges().leaderless);
    gauge('flotilla_ranges_unavailable', "Ranges with a replica on this node whose voters it hears from, itself included, are not a majority (this node's view).", () => ranges().unavailable);
    gauge('flotilla_peers_up', 'Peers this node heard from within the liveness timeout.', () => this.snapshot.livePeerCount);
    gauge('flotilla_snapshot_send_bytes_per_second', 'Snapshot bytes per second this node may send now: snapshot flow control lowers it while its client writes slow down (at most the configured maximum).', () => host.snapshotBytesPerSec().send);
    mirroredGauge(registry, {
      name: 'flotilla_snapshot_receive_bytes_per_second',
      help: 'Snapshot bytes per second this node may stage now (flow control, as for sending); no sample with flow control off.',
      samples: () => {
        const receive = host.snapshotBytesPerSec().receive;
        return receive === undefined ? [] : [{ value: receive }];
      },
    });
    counter('flotilla_host_frames_dropped_total', 'Frames from peers whose batch did not decode (dropped whole).', () => host.stats.framesDropped);
    counter('flotilla_host_requests_timed_out_total', 'Requests to cores or peers failed with REQUEST_TIMEOUT (outcome unknown).', () => host.stats.requestsTimedOut);
    counter('flotilla_host_local_reads_total', "Linearizable reads served on the node's main thread under the node lease, without a hop to the core (also counted in flotilla_core_lease_reads_total).", () => host.stats.localReads);
    counter('flotilla_host_requests_refused_total', 'Requests refused because too many were already waiting (OVERLOADED).', () => host.stats.requestsRefused);
    const transport = () => this.snapshot.transport;
    counter('flotilla_transport_batches_sent_total', 'Batches of Raft traffic sent (or queued) to peers, one frame each.', () => transport().batchesSent);
    counter('flotilla_transport_bytes_sent_total', 'Batch bytes sent to peers.', () => transport().bytesSent);
    counter('flotilla_transport_batches_received_total', 'Batches received from peers.', () => transport().batchesReceived);
    counter('flotilla_transport_bytes_received_total', 'Batch bytes received from peers.', () => transport().bytesReceived);
    counter('flotilla_transport_batches_dropped_total', 'Batches dropped before sending: peer unknown or unreachable, or its send queue full.', () => transport().batchesDropped);
    counter('flotilla_transport_frames_rejected_total', 'Frames from peers rejected as malformed (each closed its connection).', () => transport().framesRejected);
    gauge('flotilla_kv_requests_in_flight', 'Calls into the KV store not answered yet.', () => store.stats.requestsInFlight);
    gauge('flotilla_kv_host_calls_in_flight', 'Host calls the KV store awaits.', () => store.stats.hostCallsInFlight);
    gauge('flotilla_kv_host_calls_abandoned', 'Host calls given up at their deadline that the Host still holds.', () => store.stats.hostCallsAbandoned);
    gauge('flotilla_kv_refreshes_in_flight', 'Reads of the range descriptors from the meta range in flight (at most one).', () => store.stats.refreshesInFlight);
    counter('flotilla_kv_meta_refreshes_total', 'Reads of every range descriptor from the meta range started.', () => store.stats.metaRefreshesStarted);
    counter('flotilla_kv_meta_lookups_total', 'Routing misses looked up in the meta range by key (one bounded index read, then at most one descriptor) or by range id (one descriptor).', () => store.stats.metaLookupsStarted);
    counter('flotilla_kv_meta_lookup_fallbacks_total', 'Rounds of lookups by key that fell back to reading every range descriptor.', () => store.stats.metaLookupFallbacks);
    if (consistency !== undefined) {
      counter('flotilla_consistency_checks_total', 'Consistency checks this node ran to a verdict (periodic and on request).', () => consistency.stats.checks);
      counter('flotilla_consistency_mismatches_total', 'Consistency checks this node ran that found replicas of a range disagreeing.', () => consistency.stats.mismatches);
      counter('flotilla_consistency_checks_failed_total', 'Consistency checks this node could not run to a verdict.', () => consistency.stats.checksFailed);
    }
  }
}
