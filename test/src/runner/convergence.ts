/**
 * After healing: every range has a leader and every replica catches up with
 * it (applied index at least the leader's commit index as first seen), then the
 * nodes' own consistency check (POST /ranges/:id/consistency-check) compares
 * the replicas' data digests at one Raft index.
 */
import type { Cluster } from '../cluster/cluster.js';

const STATUS_REQUEST_TIMEOUT_MS = 3_000;
/** A consistency check hashes every replica at one index; the node's own budget is 60 s. */
const CONSISTENCY_REQUEST_TIMEOUT_MS = 70_000;
const POLL_INTERVAL_MS = 250;

interface LocalRange {
  rangeId: number;
  leader: number;
  replicas: number[];
  learners?: number[];
  local: { role: string; commit: number; applied: number };
}

export interface ConvergenceResult {
  /** Problems found; empty when every range converged and every check agreed. */
  readonly failures: string[];
  /** One line per range: leader, replicas and their applied indexes, consistency verdict. */
  readonly lines: string[];
}

async function getJson<T>(url: string, timeoutMs: number, init?: RequestInit): Promise<{ status: number; body: T } | undefined> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    return { status: res.status, body: JSON.parse(text) as T };
  } catch {
    return undefined;
  }
}

async function rangesOf(cluster: Cluster, node: number): Promise<LocalRange[] | undefined> {
  return (await getJson<{ ranges: LocalRange[] }>(`${cluster.urlOf(node)}/ranges`, STATUS_REQUEST_TIMEOUT_MS))?.body.ranges;
}

/** Waits (up to `timeoutMs`) until the placement driver has nothing in flight; answers whether it got there. */
export async function waitPlacementIdle(cluster: Cluster, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    for (const n of cluster.nodeIds) {
      const r = await getJson<{ operators: unknown[] }>(`${cluster.urlOf(n)}/placement`, STATUS_REQUEST_TIMEOUT_MS);
      if (r?.status === 200 && r.body.operators.length === 0) return true;
      if (r?.status === 200) break;
    }
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
  }
  return false;
}

export async function checkConvergence(cluster: Cluster, timeoutMs: number): Promise<ConvergenceResult> {
  const failures: string[] = [];
  const lines: string[] = [];
  const deadline = performance.now() + timeoutMs;
  /** Per range: the leader's commit index when first seen — what every replica must reach. */
  const targets = new Map<number, { leader: number; commit: number }>();
  let lastView = new Map<number, Map<number, LocalRange>>();
  let pending: string[] = [];
  for (;;) {
    const view = new Map<number, Map<number, LocalRange>>(); // range → node → its replica
    for (const n of cluster.nodeIds) {
      for (const r of (await rangesOf(cluster, n)) ?? []) {
        if (!view.has(r.rangeId)) view.set(r.rangeId, new Map());
        view.get(r.rangeId)!.set(n, r);
      }
    }
    lastView = view;
    pending = [];
    for (const [rangeId, replicas] of view) {
      const leaderEntry = [...replicas].find(([, r]) => r.local.role === 'leader');
      if (leaderEntry === undefined) {
        // A node's groups campaign once after it restarts (shards README), so even a range nobody used
        // since all its replicas restarted has a leader by now.
        pending.push(`range ${rangeId}: no leader among ${[...replicas.keys()].join(',')}`);
        continue;
      }
      const [leader, lr] = leaderEntry;
      if (!targets.has(rangeId) || targets.get(rangeId)!.leader !== leader) targets.set(rangeId, { leader, commit: lr.local.commit });
      const target = targets.get(rangeId)!.commit;
      for (const voter of lr.replicas) {
        const r = replicas.get(voter);
        if (r === undefined) pending.push(`range ${rangeId}: voter ${voter} does not list it`);
        else if (r.local.applied < target) pending.push(`range ${rangeId}: node ${voter} applied ${r.local.applied} < leader ${leader}'s commit ${target}`);
      }
    }
    if (pending.length === 0 || performance.now() > deadline) break;
    await new Promise((r) => setTimeout(r, POLL_INTERVAL_MS));
  }
  if (pending.length > 0) failures.push(...pending.map((p) => `not converged within ${timeoutMs} ms: ${p}`));

  for (const [rangeId, replicas] of [...lastView].sort((a, b) => a[0] - b[0])) {
    const leader = [...replicas].find(([, r]) => r.local.role === 'leader')?.[0];
    const applied = [...replicas].map(([n, r]) => `${n}:${r.local.applied}`).join(' ');
    const via = leader ?? [...replicas.keys()][0]!;
    const check = await getJson<{ ok: boolean; index: number; replicas: { nodeId: number; status: string; reason?: string; firstDifferingKey?: string | null }[] }>(
      `${cluster.urlOf(via)}/ranges/${rangeId}/consistency-check`,
      CONSISTENCY_REQUEST_TIMEOUT_MS,
      { method: 'POST' },
    );
    let verdict: string;
    if (check === undefined) verdict = 'consistency check: no answer';
    else if (check.status === 404 && JSON.stringify(check.body).includes('ROUTE_NOT_FOUND')) verdict = 'consistency check: not served by this build';
    else if (check.status !== 200) verdict = `consistency check: ${check.status} ${JSON.stringify(check.body).slice(0, 200)}`;
    else {
      const bad = check.body.replicas.filter((r) => r.status !== 'agrees');
      verdict = bad.length === 0 && check.body.ok ? `digests agree at index ${check.body.index}` : `DIGESTS DIFFER at index ${check.body.index}: ${JSON.stringify(bad)}`;
      if (bad.length > 0 || !check.body.ok) failures.push(`range ${rangeId}: ${verdict}`);
    }
    if (check === undefined || check.status !== 200) failures.push(`range ${rangeId}: ${verdict}`);
    lines.push(`range ${rangeId}: leader ${leader ?? 'none'}, applied ${applied}; ${verdict}`);
  }
  return { failures, lines };
}
