/**
 * A node's cluster id: fixed when the cluster is bootstrapped, recorded in
 * `<dir>/CLUSTER` (durably) the first time the node learns it, and carried
 * in every transport hello; a node refuses hellos of any other cluster
 * (transport/README.md). A restart uses the recorded id and never
 * recomputes it, so a member started later with different flags stays in
 * the cluster its data belongs to.
 *
 * - Static bootstrap: every member starts with the same members and no
 *   coordination, so each derives the same id by itself (etcd's way): a hash
 *   of the sorted member list, ids and addresses, and a cluster token.
 * - Join: the member joined through answers its id; the joiner records it.
 * - A data directory from before cluster ids (upgrade): LEGACY_CLUSTER_ID.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DataDirError, writeJsonDurably } from '@flotilla/shards';
import { CLUSTER_ID_BYTES, isClusterId, type ClusterId } from '@flotilla/transport';

export const CLUSTER_FILE = 'CLUSTER';
/**
 * The cluster token when none is given. Two clusters bootstrapped with the
 * same members at the same addresses and the same token get the same id
 * (etcd's `--initial-cluster-token` has the same property): give each
 * cluster its own token when addresses may repeat (tests, containers).
 */
export const CLUSTER_TOKEN_DEFAULT = 'flotilla';
const CLUSTER_FORMAT_NAME = 'flotilla-cluster';
const CLUSTER_FORMAT_VERSION = 1;

/**
 * The id every data directory made before cluster ids records on its first
 * start with them. Its members cannot derive a common id (a joined node
 * never knew the founders' flags, and it cannot ask: the meta range may
 * live on it), so they all take this one and the stopped cluster restarts
 * as it was; it is still protected against strangers by node id, but not
 * against another upgraded cluster. A derived id never equals it (hash
 * input with its own prefix).
 */
export const LEGACY_CLUSTER_ID: ClusterId = hashToClusterId('flotilla cluster id: legacy (a cluster bootstrapped before cluster ids)');

/** How the node came by its id: derived at bootstrap, answered by a member it joined through, or the upgrade's legacy id. */
export type ClusterIdOrigin = 'bootstrap' | 'join' | 'legacy';

export interface ClusterIdentity {
  readonly clusterId: ClusterId;
  readonly origin: ClusterIdOrigin;
  /**
   * A static member created its bootstrap ranges (node.ts bootstrapRanges): a later start holding no
   * replica lost them to the cluster (moved off, merged away) and must not create them again. Absent in
   * files written before it (read as false), and by a start that has not created them yet.
   */
  readonly rangesCreated?: boolean;
}

interface ClusterFile extends ClusterIdentity {
  readonly format: typeof CLUSTER_FORMAT_NAME;
  readonly version: number;
}

/**
 * The id of a statically bootstrapped cluster: every member computes it from
 * the same member list and token: each member's id and the transport port the
 * others dial (its `--advertise`, else its `--listen`). Only the id and PORT
 * enter it, not the host: a member listening on a wildcard (`--listen
 * 0.0.0.0:7101`) and its peers naming it by an interface address
 * (`1=10.0.0.1:7101`) must agree, and clusters sharing a machine still differ
 * by their ports. Two clusters on different machines with the same ids and
 * ports are told apart only by `--cluster-token`: give each its own.
 */
export function deriveClusterId(o: { members: readonly { readonly nodeId: number; readonly address: string }[]; token: string }): ClusterId {
  const members = [...o.members].sort((a, b) => a.nodeId - b.nodeId).map((m) => `${m.nodeId}:${portOf(m.address)}`);
  return hashToClusterId(`flotilla cluster id v2\ntoken=${o.token}\nmembers=${members.join(',')}`);
}

/** The port of "host:port" or "[v6]:port" (the address was validated where it came from). */
function portOf(address: string): string {
  return address.slice(address.lastIndexOf(':') + 1);
}

function hashToClusterId(input: string): ClusterId {
  return createHash('sha256').update(input, 'utf8').digest('hex').slice(0, CLUSTER_ID_BYTES * 2);
}

/** The recorded identity, or undefined if the node never recorded one. A damaged file is DATA_DIR_DAMAGED, naming it and what to do. */
export function readClusterIdentity(dir: string): ClusterIdentity | undefined {
  const path = join(dir, CLUSTER_FILE);
  if (!existsSync(path)) return undefined;
  const damaged = (detail: string) =>
    new DataDirError(
      'DATA_DIR_DAMAGED',
      path,
      `${detail}; it records the id of the cluster this node belongs to. Every member of a cluster records the same id: copy ${CLUSTER_FILE} from another member (or restore it from a backup) (nothing was changed)`,
    );
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw damaged(`is not valid JSON (${(err as Error).message})`);
  }
  const f = parsed as Partial<ClusterFile> | null;
  if (f === null || typeof f !== 'object' || f.format !== CLUSTER_FORMAT_NAME) throw damaged(`has format ${JSON.stringify(f?.format)}; expected "${CLUSTER_FORMAT_NAME}"`);
  if (f.version !== CLUSTER_FORMAT_VERSION) {
    throw new DataDirError('DATA_DIR_VERSION', path, `cluster file version ${JSON.stringify(f.version)} is not supported; expected version ${CLUSTER_FORMAT_VERSION}`);
  }
  if (!isClusterId(f.clusterId)) throw damaged(`has cluster id ${JSON.stringify(f.clusterId)}; expected ${CLUSTER_ID_BYTES} bytes of lowercase hex`);
  if (f.origin !== 'bootstrap' && f.origin !== 'join' && f.origin !== 'legacy') throw damaged(`has origin ${JSON.stringify(f.origin)}; expected "bootstrap", "join" or "legacy"`);
  if (f.rangesCreated !== undefined && typeof f.rangesCreated !== 'boolean') throw damaged(`has rangesCreated ${JSON.stringify(f.rangesCreated)}; expected true or false`);
  return { clusterId: f.clusterId, origin: f.origin, ...(f.rangesCreated === true ? { rangesCreated: true } : {}) };
}

/** Records the identity durably (shards' durable-file.ts): once the id is known, and once more when a static member's bootstrap ranges are created. */
export function writeClusterIdentity(dir: string, identity: ClusterIdentity): void {
  const file: ClusterFile = { format: CLUSTER_FORMAT_NAME, version: CLUSTER_FORMAT_VERSION, clusterId: identity.clusterId, origin: identity.origin, ...(identity.rangesCreated === true ? { rangesCreated: true } : {}) };
  writeJsonDurably({ dir, name: CLUSTER_FILE, value: file });
}
