// Reads a V8 heap snapshot (.heapsnapshot JSON) and says where its bytes are:
// every object's own size is charged to the nearest object that dominates it
// (all paths from the roots to it pass through that one) and is an instance
// of a named class (Raft, Group, ProgressTracker, ...), under the field that
// leads to it: "Group.bounds", "Raft.config", "Progress (self)". Divided by a
// replica count, that is the bytes per replica of each part. Used by
// replica-memory.ts (ARCHITECTURE.md, "Memory per replica").
import { readFileSync } from 'node:fs';

interface SnapshotJson {
  readonly snapshot: { readonly meta: { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] } };
  readonly nodes: number[];
  readonly edges: number[];
  readonly strings: string[];
}

/** Plain containers and V8 internals never name an owner: their bytes go to the class instance above them. */
const GENERIC_NAMES = new Set(['Object', 'Array', 'Map', 'Set', '']);

export interface HeapBreakdown {
  readonly totalBytes: number;
  /** Owner ("Class.field" or "Class (self)"; "(root) kind" when no class instance dominates it) → bytes and objects. */
  readonly byOwner: ReadonlyMap<string, { bytes: number; count: number }>;
}

export function heapBreakdown(path: string): HeapBreakdown {
  const snap = JSON.parse(readFileSync(path, 'utf8')) as SnapshotJson;
  const meta = snap.snapshot.meta;
  const nodeFieldCount = meta.node_fields.length;
  const edgeFieldCount = meta.edge_fields.length;
  const [nodeTypes] = meta.node_types;
  const [edgeTypes] = meta.edge_types;
  const at = { type: meta.node_fields.indexOf('type'), name: meta.node_fields.indexOf('name'), size: meta.node_fields.indexOf('self_size'), edges: meta.node_fields.indexOf('edge_count') };
  const edgeAt = { type: meta.edge_fields.indexOf('type'), name: meta.edge_fields.indexOf('name_or_index'), to: meta.edge_fields.indexOf('to_node') };
  const { nodes, edges, strings } = snap;
  const count = nodes.length / nodeFieldCount;
  const firstEdge = new Uint32Array(count + 1);
  for (let i = 0, e = 0; i < count; i++) {
    firstEdge[i] = e;
    e += nodes[i * nodeFieldCount + at.edges]! * edgeFieldCount;
  }
  firstEdge[count] = edges.length;
  const typeOf = (n: number): string => nodeTypes[nodes[n * nodeFieldCount + at.type]!]!;
  const nameOf = (n: number): string => strings[nodes[n * nodeFieldCount + at.name]!]!;
  const sizeOf = (n: number): number => nodes[n * nodeFieldCount + at.size]!;
  const weak = edgeTypes.indexOf('weak');
  const shortcut = edgeTypes.indexOf('shortcut');
  const strong = (e: number): boolean => edges[e + edgeAt.type] !== weak && edges[e + edgeAt.type] !== shortcut;
  const target = (e: number): number => edges[e + edgeAt.to]! / nodeFieldCount;

  // Post-order from the synthetic root (node 0), iteratively.
  const post = new Int32Array(count).fill(-1);
  const order = new Int32Array(count);
  let reached = 0;
  {
    const stack = new Int32Array(count);
    const nextEdge = new Uint32Array(count);
    const seen = new Uint8Array(count);
    let top = 0;
    stack[0] = 0;
    nextEdge[0] = firstEdge[0]!;
    seen[0] = 1;
    while (top >= 0) {
      const n = stack[top]!;
      let e = nextEdge[top]!;
      for (; e < firstEdge[n + 1]!; e += edgeFieldCount) {
        if (!strong(e) || seen[target(e)] === 1) continue;
        break;
      }
      if (e < firstEdge[n + 1]!) {
        const to = target(e);
        seen[to] = 1;
        nextEdge[top] = e + edgeFieldCount;
        stack[++top] = to;
        nextEdge[top] = firstEdge[to]!;
      } else {
        post[n] = reached;
        order[reached++] = n;
        top--;
      }
    }
  }
  // Predecessors, then immediate dominators (Cooper, Harvey and Kennedy's iteration over post-order numbers).
  const predStart = new Uint32Array(count + 1);
  for (let n = 0; n < count; n++) if (post[n]! >= 0) for (let e = firstEdge[n]!; e < firstEdge[n + 1]!; e += edgeFieldCount) if (strong(e)) predStart[target(e) + 1] = predStart[target(e) + 1]! + 1;
  for (let i = 0; i < count; i++) predStart[i + 1]! += predStart[i]!;
  const preds = new Int32Array(predStart[count]!);
  const fill = predStart.slice();
  for (let n = 0; n < count; n++) if (post[n]! >= 0) for (let e = firstEdge[n]!; e < firstEdge[n + 1]!; e += edgeFieldCount) if (strong(e)) preds[fill[target(e)]!++] = n;
  const idom = new Int32Array(reached).fill(-1);
  const rootPost = post[0]!;
  idom[rootPost] = rootPost;
  for (let changed = true; changed; ) {
    changed = false;
    for (let k = reached - 1; k >= 0; k--) {
      if (k === rootPost) continue;
      const n = order[k]!;
      let dom = -1;
      for (let p = predStart[n]!; p < predStart[n + 1]!; p++) {
        let a = post[preds[p]!]!;
        if (a < 0 || idom[a]! < 0) continue;
        if (dom < 0) {
          dom = a;
          continue;
        }
        let b = dom;
        while (a !== b) {
          while (a < b) a = idom[a]!;
          while (b < a) b = idom[b]!;
        }
        dom = a;
      }
      if (dom >= 0 && idom[k] !== dom) {
        idom[k] = dom;
        changed = true;
      }
    }
  }
  const dominatorOf = (n: number): number => order[idom[post[n]!]!]!;
  const fieldTo = (from: number, to: number): string => {
    for (let e = firstEdge[from]!; e < firstEdge[from + 1]!; e += edgeFieldCount) {
      if (target(e) !== to) continue;
      const type = edgeTypes[edges[e + edgeAt.type]!];
      return type === 'element' || type === 'hidden' ? `[${type}]` : (strings[edges[e + edgeAt.name]!] ?? '?');
    }
    return `?${nameOf(to) || typeOf(to)}`;
  };
  const isOwner = (n: number): boolean => typeOf(n) === 'object' && !GENERIC_NAMES.has(nameOf(n)) && !nameOf(n).startsWith('system');
  const byOwner = new Map<string, { bytes: number; count: number }>();
  let totalBytes = 0;
  for (let k = 0; k < reached; k++) {
    const n = order[k]!;
    const size = sizeOf(n);
    totalBytes += size;
    let key: string;
    if (isOwner(n)) key = `${nameOf(n)} (self)`;
    else {
      let child = n;
      let owner = n === 0 ? 0 : dominatorOf(n);
      while (owner !== 0 && !isOwner(owner)) {
        child = owner;
        owner = dominatorOf(owner);
      }
      key = owner === 0 ? `(root) ${typeOf(child)}` : `${nameOf(owner)}.${fieldTo(owner, child)}`;
    }
    const v = byOwner.get(key) ?? { bytes: 0, count: 0 };
    v.bytes += size;
    v.count++;
    byOwner.set(key, v);
  }
  return { totalBytes, byOwner };
}
