import { readdirSync } from 'node:fs';
import { META_RANGE_ID, type NodeRecord } from '@flotilla/placement';
import type { CoreStats, Host, ShellLogger } from '@flotilla/shards';
import { KvError } from './kv/store.js';
import type { ClusterView } from './http/admin-routes.js';
import type { ConsistencyChecker, ConsistencyStats } from './consistency.js';
import type { HostKvStore, HostKvStoreStats } from './kv/host-store.js';
import type { PlacementService } from './placement-service.js';

const hex = (b: Uint8Array | null): string | null => (b === null ? null : Buffer.from(b).toString('hex'));

/**
 * What a node tells about itself and the ranges it holds — /cluster, /ranges,
 * /metrics and /ready — and the admin calls it serves (/cluster/join,
 * /ranges/:id/split). Ranges are this node's own replicas; members are its
 * static peers plus the nodes recorded in the meta range. The first four
 * answer from local knowledge only (replicas, liveness, what the meta range
 * said when last read), so they answer at once with the cluster in any state.
 */
export function clusterViewOf(o: {
  host: Host;
  store: HostKvStore;
  peers: Readonly<Record<number, string>>;
  transportAddress: string;
  log: ShellLogger;
  placement: PlacementService;
  /** Serves POST /ranges/:id/consistency-check and the consistency metrics (absent: neither). */
  consistency?: ConsistencyChecker;
}): ClusterView {
  const { host } = o;
  // The other members: the static peers and every node recorded (up) in the meta range.
  const otherMembers = (recorded: readonly NodeRecord[]): Map<number, string> => {
    const members = new Map<number, string>(Object.entries(o.peers).map(([id, address]) => [Number(id), address]));
    for (const n of recorded) if (n.nodeId !== host.nodeId && n.state !== 'decommissioned') members.set(n.nodeId, n.address);
    return members;
  };
  const ranges = async () =>
    (await host.shards()).map((s) => ({
      rangeId: s.shardId,
      start: hex(s.start),
      end: hex(s.end),
      epoch: s.epoch,
      leader: s.leader,
      term: s.term,
      replicas: s.voters,
      learners: s.learners,
      local: { role: s.role, commit: s.commit, applied: s.applied, quiesced: s.quiesced },
    }));
  return {
    ranges: async () => ({ nodeId: host.nodeId, keyEncoding: 'hex', ranges: await ranges() }),
    cluster: async () => {
      const live = new Set(host.livePeers());
      // The members as the meta range listed them when last read (the duties read it every tick), never
      // read now: that would wait on the meta range's quorum. Until a first read, the static peers.
      const recorded = o.store.cachedMetaNodes();
      const known = otherMembers(recorded?.nodes ?? []);
      return {
        nodeId: host.nodeId,
        nodes: [
          { nodeId: host.nodeId, transport: o.transportAddress, state: 'self' },
          ...[...known].map(([id, address]) => ({ nodeId: id, transport: address, state: live.has(id) ? 'up' : 'down' })),
        ].sort((a, b) => a.nodeId - b.nodeId),
        // Age of the meta range read the members come from; null: not read yet (only the static peers are listed).
        membersAgeMs: recorded === undefined ? null : Math.round(recorded.ageMs),
        keyEncoding: 'hex',
        ranges: (await ranges()).map(({ rangeId, start, end, epoch, leader, term, replicas }) => ({ rangeId, start, end, epoch, leader, term, replicas })),
      };
    },
    ready: () => o.store.readiness(),
    join: async (node, deadline) => {
      if (node.nodeId === host.nodeId) throw new KvError('INVALID_ARGUMENT', `node id ${node.nodeId} is this node's own`);
      await o.store.recordNode({ ...node, state: 'up' }, { deadline });
      host.setPeer(node.nodeId, node.address);
      const nodes = otherMembers(await o.store.metaNodes({ deadline })).set(host.nodeId, o.transportAddress);
      const meta = o.store.knownRange(META_RANGE_ID)!;
      o.log.info({ joined: node.nodeId, address: node.address }, 'node joined the cluster');
      return { nodes: [...nodes].map(([nodeId, address]) => ({ nodeId, address })).sort((a, b) => a.nodeId - b.nodeId), meta: { epoch: meta.epoch, replicas: meta.replicas } };
    },
    split: async (rangeId, key, deadline) => {
      const { left, right } = await o.store.split(rangeId, key, { deadline });
      const half = (h: { shardId: number; start: Uint8Array; end: Uint8Array | null; epoch: number }) => ({ rangeId: h.shardId, start: hex(h.start), end: hex(h.end), epoch: h.epoch });
      return { keyEncoding: 'hex', left: half(left), right: half(right) };
    },
    placement: () => o.placement.status(),
    placementSettings: async (change, deadline) => ({ settings: await o.store.updatePlacementSettings(o.placement.defaults, change, { deadline }) }),
    nodeState: async (nodeId, state, deadline) => {
      const record = await o.store.setNodeState(nodeId, state, { deadline });
      o.log.info({ nodeId, state }, 'node state set');
      return { nodeId: record.nodeId, state: record.state };
    },
    operator: (op) => o.placement.submit(op),
    ...(o.consistency === undefined ? {} : { consistencyCheck: (rangeId: number) => o.consistency!.check(rangeId) }),
    metrics: async () => prometheusText(host, o.store.stats, await host.coreStats(), (await host.shards()).filter((s) => s.role === 'leader').length, o.consistency?.stats),
  };
}

/** The counters of the node's Host, cores and transport in Prometheus text format, every series labelled with the node. */
function prometheusText(host: Host, store: HostKvStoreStats, cores: readonly CoreStats[], leaderCount: number, consistency: ConsistencyStats | undefined): string {
  const node = `node="${host.nodeId}"`;
  const lines: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge', help: string, samples: [labels: string, value: number][]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}{${labels}} ${value}`);
  };
  const perCore = (field: keyof CoreStats): [string, number][] => cores.map((c, i) => [`${node},core="${i}"`, c[field]]);
  metric('flotilla_core_rounds_total', 'counter', 'Rounds run (at most one LMDB group commit each, more if a checksum entry splits it).', perCore('rounds'));
  metric('flotilla_core_commits_synced_total', 'counter', 'Group commits made durable (new entries, a term or a vote); entries per sync = entries_persisted / this.', perCore('commitsSynced'));
  metric('flotilla_core_commits_unsynced_total', 'counter', 'Group commits of commit indexes and applied entries only, without the meta sync (replayed from the log after a power failure).', perCore('commitsUnsynced'));
  metric('flotilla_core_entries_persisted_total', 'counter', 'Raft log entries written durably.', perCore('entriesPersisted'));
  metric('flotilla_core_entries_applied_total', 'counter', 'Committed entries applied to the state machine.', perCore('entriesApplied'));
  metric('flotilla_core_proposals_total', 'counter', 'Writes proposed on this node.', perCore('proposals'));
  metric('flotilla_core_proposal_entries_total', 'counter', 'Raft entries those writes were proposed in (writes of one range in one turn share one).', perCore('proposalEntries'));
  metric('flotilla_core_reads_total', 'counter', 'Reads served or started on this node.', perCore('reads'));
  metric('flotilla_core_group_ticks_total', 'counter', 'Ticks delivered to groups (quiesced groups get none).', perCore('groupTicks'));
  metric('flotilla_core_messages_sent_total', 'counter', 'Raft messages sent.', perCore('messagesSent'));
  metric('flotilla_core_messages_rejected_total', 'counter', 'Raft messages from the network dropped as invalid.', perCore('messagesRejected'));
  metric('flotilla_core_snapshots_sent_total', 'counter', 'Snapshot streams started.', perCore('snapshotsSent'));
  metric('flotilla_core_snapshots_installed_total', 'counter', 'Snapshots installed.', perCore('snapshotsInstalled'));
  metric('flotilla_core_groups', 'gauge', 'Replicas on the core.', perCore('groupCount'));
  metric('flotilla_core_groups_active', 'gauge', 'Replicas not quiesced.', perCore('activeGroupCount'));
  metric('flotilla_ranges_led', 'gauge', 'Ranges whose leader is this node.', [[node, leaderCount]]);
  metric('flotilla_host_frames_dropped_total', 'counter', 'Frames whose batch did not decode.', [[node, host.stats.framesDropped]]);
  metric('flotilla_host_requests_timed_out_total', 'counter', 'Requests failed with REQUEST_TIMEOUT.', [[node, host.stats.requestsTimedOut]]);
  const t = host.transportStats();
  metric('flotilla_transport_batches_sent_total', 'counter', 'Frames sent to peers.', [[node, t.batchesSent]]);
  metric('flotilla_transport_bytes_sent_total', 'counter', 'Batch bytes sent to peers.', [[node, t.bytesSent]]);
  metric('flotilla_transport_batches_dropped_total', 'counter', 'Batches dropped (peer down, queue full).', [[node, t.batchesDropped]]);
  metric('flotilla_transport_frames_rejected_total', 'counter', 'Malformed frames (each closed its connection).', [[node, t.framesRejected]]);
  metric('flotilla_peers_up', 'gauge', 'Peers heard from within the liveness timeout.', [[node, host.livePeers().length]]);
  metric('flotilla_kv_requests_in_flight', 'gauge', 'Calls into the KV store not answered yet.', [[node, store.requestsInFlight]]);
  metric('flotilla_kv_host_calls_in_flight', 'gauge', 'Host calls the KV store awaits.', [[node, store.hostCallsInFlight]]);
  metric('flotilla_kv_host_calls_abandoned', 'gauge', 'Host calls given up at their deadline that the Host still holds.', [[node, store.hostCallsAbandoned]]);
  metric('flotilla_kv_refreshes_in_flight', 'gauge', 'Reads of the range descriptors from the meta range in flight (at most one).', [[node, store.refreshesInFlight]]);
  metric('flotilla_kv_meta_refreshes_total', 'counter', 'Reads of the range descriptors from the meta range started.', [[node, store.metaRefreshesStarted]]);
  if (consistency !== undefined) {
    metric('flotilla_consistency_checks_total', 'counter', 'Consistency checks this node ran to a verdict (periodic and on request).', [[node, consistency.checks]]);
    metric('flotilla_consistency_mismatches_total', 'counter', 'Consistency checks this node ran that found replicas of a range disagreeing.', [[node, consistency.mismatches]]);
    metric('flotilla_consistency_checks_failed_total', 'counter', 'Consistency checks this node could not run to a verdict.', [[node, consistency.checksFailed]]);
  }
  metric('flotilla_core_checksum_passes_total', 'counter', 'Consistency check passes started on this node\'s replicas.', perCore('checksumPasses'));
  metric('flotilla_core_checksum_chunks_total', 'counter', 'Chunks hashed by consistency check passes (one per core per tick at most).', perCore('checksumChunks'));
  const memory = process.memoryUsage();
  metric('process_resident_memory_bytes', 'gauge', 'Resident set size.', [[node, memory.rss]]);
  const cpu = process.cpuUsage();
  metric('process_cpu_seconds_total', 'counter', 'User and system CPU time of the node process.', [[node, (cpu.user + cpu.system) / 1e6]]);
  // What a soak run watches for growth (bench/src/soak-bench.ts). Heap, external memory, the event loop
  // and the active resources are the main thread's: worker threads (the cores) have their own heaps and
  // loops, which process.memoryUsage() does not see; RSS and the open descriptors cover the whole process.
  metric('nodejs_heap_used_bytes', 'gauge', 'V8 heap in use (main thread).', [[node, memory.heapUsed]]);
  metric('nodejs_heap_total_bytes', 'gauge', 'V8 heap reserved (main thread).', [[node, memory.heapTotal]]);
  metric('nodejs_external_bytes', 'gauge', 'Memory of C++ objects bound to main-thread JS objects, Buffers included.', [[node, memory.external]]);
  metric('nodejs_array_buffers_bytes', 'gauge', 'ArrayBuffer and Buffer memory (part of external).', [[node, memory.arrayBuffers]]);
  const resources = new Map<string, number>();
  for (const type of process.getActiveResourcesInfo()) resources.set(type, (resources.get(type) ?? 0) + 1);
  metric('nodejs_active_resources', 'gauge', 'Handles and requests keeping the main event loop alive, by type (Timeout: timers).', [...resources].sort(([a], [b]) => a.localeCompare(b)).map(([type, count]) => [`${node},type="${type}"`, count]));
  // Cumulative, so a scraper gets the loop's busy share over any interval from two scrapes without the
  // node keeping a histogram (monitorEventLoopDelay would need enabling and disabling with the node).
  const loop = performance.eventLoopUtilization();
  metric('nodejs_eventloop_active_seconds_total', 'counter', 'Time the main event loop spent running callbacks.', [[node, loop.active / 1e3]]);
  metric('nodejs_eventloop_idle_seconds_total', 'counter', 'Time the main event loop spent waiting for events.', [[node, loop.idle / 1e3]]);
  const openFdCount = openFileDescriptorCount();
  if (openFdCount !== undefined) metric('process_open_fds', 'gauge', 'Open file descriptors.', [[node, openFdCount]]);
  return `${lines.join('\n')}\n`;
}

/** Entries of /proc/self/fd (the listing's own descriptor included); undefined where there is no /proc (not Linux). */
function openFileDescriptorCount(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}
