// `flotilla status`: the placement driver's view of the cluster when it can be reached, else the node's
// own; and whether the node asked is ready. Every call has a client-side timeout, so it answers within a
// few seconds whatever the cluster's state.
import { CliError, EXIT } from './exit-codes.js';
import { bytesText, durationText, table, type OutputFormat } from './format.js';
import { NodeClient, answerError } from './node-client.js';

/**
 * Budget of each call `status` makes to the node for what it knows locally (/cluster, /ready): the node
 * answers those at once whatever the cluster's state, so this only covers a loaded machine or a hung process.
 */
const STATUS_NODE_TIMEOUT_MS = 3_000;
/** Budget of the call to the placement driver (it runs where the meta range is led, which may be nowhere): past it, the node's own view. */
const STATUS_PLACEMENT_TIMEOUT_MS = 2_000;

type Fetched = { ok: true; body: unknown } | { ok: false; problem: string; body?: unknown; error: CliError };

/** One GET that never throws: `ok` with its JSON body on a 2xx, else why not (and the body if it was JSON: /ready's 503 carries its reasons). */
async function statusGet(client: NodeClient, path: string, timeoutMs: number): Promise<Fetched> {
  let answer;
  try {
    answer = await client.request('GET', path, { timeoutMs });
  } catch (err) {
    if (!(err instanceof CliError)) throw err;
    return { ok: false, problem: err.message, error: err };
  }
  let body: unknown;
  try {
    body = JSON.parse(answer.body.toString('utf8')) as unknown;
  } catch {
    body = undefined;
  }
  if (answer.status >= 200 && answer.status < 300 && body !== undefined) return { ok: true, body };
  const error = body === undefined && answer.status < 300 ? new CliError(EXIT.internal, `GET ${path}: the answer is not JSON`) : answerError(answer, client.base, `GET ${path}`);
  return { ok: false, problem: error.message, ...(body === undefined ? {} : { body }), error };
}

export async function status(client: NodeClient, o: { output: OutputFormat }): Promise<void> {
  if (o.output === 'json') {
    const placement = await statusGet(client, '/placement', STATUS_PLACEMENT_TIMEOUT_MS);
    if (!placement.ok) throw placement.error;
    console.log(JSON.stringify(placement.body));
    return;
  }
  const [cluster, placement, ready] = await Promise.all([
    statusGet(client, '/cluster', STATUS_NODE_TIMEOUT_MS),
    statusGet(client, '/placement', STATUS_PLACEMENT_TIMEOUT_MS),
    statusGet(client, '/ready', STATUS_NODE_TIMEOUT_MS),
  ]);
  if (!cluster.ok) throw cluster.error;
  // /ready answers 503 with its reasons; anything else is reported as it came.
  const readyBody = ready.body as Partial<ReadyJson> | undefined;
  const readiness: ReadyJson | string = typeof readyBody?.ready === 'boolean' && Array.isArray(readyBody.reasons) ? (readyBody as ReadyJson) : ready.ok ? 'unreadable answer' : ready.problem;
  console.log(statusText(cluster.body as ClusterJson, placement.ok ? { view: placement.body as PlacementJson } : { problem: placement.problem }, readiness));
}

interface ClusterJson {
  nodeId: number;
  nodes: { nodeId: number; transport: string; state: string }[];
  ranges: { rangeId: number; leader: number; replicas: number[] }[];
}

interface ReadyJson {
  ready: boolean;
  reasons: string[];
}

export interface PlacementJson {
  settings: { paused: boolean; replicationFactor: number };
  rangeCount: number;
  nodes: { nodeId: number; state: string; replicaCount: number; leaderCount: number; writesPerSec: number; readsPerSec: number; usedBytes: number; availableBytes: number; silentMs: number | null }[];
  operators: { kind: string; rangeId: number; reason: string; ageMs: number; lastStep: string | null; from?: number; to?: number; node?: number }[];
}

/**
 * The cluster at a glance: the driver's view of every node and what it is doing — or this node's own
 * view when the driver cannot be reached — then whether the node asked is ready, and why not.
 */
export function statusText(cluster: ClusterJson, driver: { view: PlacementJson } | { problem: string }, readiness: ReadyJson | string): string {
  const lines: string[] = [];
  if ('problem' in driver) {
    lines.push(`the placement driver is not reachable (${driver.problem}); node ${cluster.nodeId}'s view:`);
    for (const n of cluster.nodes) lines.push(`  node ${n.nodeId}  ${n.state.padEnd(6)} ${n.transport}`);
    lines.push(`  ${cluster.ranges.length} ranges held here, ${cluster.ranges.filter((r) => r.leader === 0).length} of them without a known leader`);
  } else {
    lines.push(...placementLines(driver.view));
  }
  if (typeof readiness === 'string') lines.push(`node ${cluster.nodeId}: readiness unknown (${readiness})`);
  else if (readiness.ready) lines.push(`node ${cluster.nodeId}: ready`);
  else {
    lines.push(`node ${cluster.nodeId}: NOT READY`);
    for (const reason of readiness.reasons) lines.push(`  ${reason}`);
  }
  return lines.join('\n');
}

/**
 * Replicas each range gets: the setting, but no more than the nodes that may keep one (not leaving), and
 * at least one — what the scheduler aims for (placement/src/scheduler.ts, replicasTarget).
 */
export function replicationFactorEffective(placement: Pick<PlacementJson, 'settings' | 'nodes'>): number {
  const usableCount = placement.nodes.filter((n) => n.state !== 'decommissioning' && n.state !== 'decommissioned').length;
  return Math.max(1, Math.min(placement.settings.replicationFactor, usableCount));
}

/** The driver's view: settings, one line per node, the operators in flight. */
export function placementLines(placement: PlacementJson): string[] {
  const lines: string[] = [];
  const set = placement.settings.replicationFactor;
  const effective = replicationFactorEffective(placement);
  // A driver that has heard from no node yet (it just started) knows of no node to count.
  const factor = effective === set || placement.nodes.length === 0 ? `replication factor ${set}` : `replication factor ${effective} (set to ${set}; ${effective} node${effective === 1 ? '' : 's'} can hold replicas)`;
  lines.push(`${placement.rangeCount} ranges, ${factor}, scheduler ${placement.settings.paused ? 'PAUSED' : 'running'}`);
  const rows = placement.nodes.map((n) => [
    String(n.nodeId),
    n.state,
    String(n.replicaCount),
    String(n.leaderCount),
    String(Math.round(n.writesPerSec + n.readsPerSec)),
    bytesText(n.usedBytes),
    bytesText(n.availableBytes),
    n.silentMs === null ? 'never' : `${durationText(n.silentMs)} ago`,
  ]);
  lines.push(table(['node', 'state', 'replicas', 'leaders', 'ops/s', 'used', 'free', 'last heard'], rows));
  if (placement.operators.length === 0) lines.push('no operators in flight');
  else {
    lines.push(`${placement.operators.length} operator(s) in flight:`);
    for (const op of placement.operators) {
      const what = op.kind === 'moveReplica' || op.kind === 'transferLeader' ? `${op.from} → ${op.to}` : op.node !== undefined ? `node ${op.node}` : '';
      lines.push(`  range ${op.rangeId}: ${op.kind} ${what} (${op.reason}), ${durationText(op.ageMs)}, last step ${op.lastStep ?? 'none'}`);
    }
  }
  return lines;
}
