import { META_RANGE_ID, type NodeRecord } from '@flotilla/placement';
import type { Host, ShellLogger } from '@flotilla/shards';
import { advertiseProblem } from './advertise.js';
import { KvError } from './kv/store.js';
import type { ClusterView } from './http/admin-routes.js';
import type { ConsistencyChecker } from './consistency.js';
import type { HostKvStore } from './kv/host-store.js';
import type { NodeMetrics } from './metrics/node-metrics.js';
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
  /** This node's advertised transport address: what /cluster and the join answer name it by. */
  transportAddress: string;
  /** This node's advertised HTTP address ("host:port"), null if it serves none (embedded). */
  httpAddress: string | null;
  log: ShellLogger;
  placement: PlacementService;
  /** Serves POST /ranges/:id/consistency-check (absent: no such route). */
  consistency?: ConsistencyChecker;
  /** The node's metrics: /metrics, and the HTTP histogram the server records into. */
  metrics: NodeMetrics;
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
      // Each node's HTTP address as it recorded it (advertised); null until it has, or for a static peer
      // before the meta range was read.
      const httpOf = new Map((recorded?.nodes ?? []).map((n) => [n.nodeId, n.httpAddress]));
      return {
        nodeId: host.nodeId,
        nodes: [
          { nodeId: host.nodeId, transport: o.transportAddress, http: o.httpAddress, state: 'self' },
          ...[...known].map(([id, address]) => ({ nodeId: id, transport: address, http: httpOf.get(id) ?? null, state: live.has(id) ? 'up' : 'down' })),
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
      // Recorded, a wildcard would send every node's traffic for the joiner to itself (advertise.ts).
      for (const [what, address] of [['address', node.address], ['httpAddress', node.httpAddress]] as const) {
        const problem = address === null ? undefined : advertiseProblem(address);
        if (problem !== undefined) throw new KvError('INVALID_ARGUMENT', `node ${node.nodeId}'s ${what} ${address} cannot be recorded: ${problem} (start it with --advertise / --advertise-http)`);
      }
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
    placement: (options) => o.placement.status(options),
    placementSettings: async (change, deadline) => ({ settings: await o.store.updatePlacementSettings(o.placement.defaults, change, { deadline }) }),
    nodeState: async (nodeId, state, deadline) => {
      const record = await o.store.setNodeState(nodeId, state, { deadline });
      o.log.info({ targetNodeId: nodeId, state }, 'node state set');
      return { nodeId: record.nodeId, state: record.state };
    },
    operator: (op) => o.placement.submit(op),
    ...(o.consistency === undefined ? {} : { consistencyCheck: (rangeId: number) => o.consistency!.check(rangeId) }),
    metrics: () => o.metrics.exposition(),
    httpMetrics: o.metrics.http,
  };
}
