// heap-breakdown (test-support, used by replica-memory.ts) on a hand-made heap snapshot: each object's
// bytes go to the nearest class instance that dominates it, under the field leading to it; what
// two owners share goes to the root; what only a weak edge reaches is not counted.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { heapBreakdown } from '../test-support/heap-breakdown.js';

const NODE_TYPES = ['hidden', 'object', 'synthetic'];
const EDGE_TYPES = ['element', 'property', 'weak'];

/** nodes: [type, name, size, edges: [edge type, name or index, target node]]. */
function snapshotJson(nodes: readonly [type: string, name: string, size: number, edges: readonly [string, string | number, number][]][]): string {
  const strings: string[] = [];
  const str = (s: string): number => (strings.includes(s) ? strings.indexOf(s) : strings.push(s) - 1);
  const NODE_FIELDS = 5;
  return JSON.stringify({
    snapshot: {
      meta: {
        node_fields: ['type', 'name', 'id', 'self_size', 'edge_count'],
        node_types: [NODE_TYPES],
        edge_fields: ['type', 'name_or_index', 'to_node'],
        edge_types: [EDGE_TYPES],
      },
    },
    nodes: nodes.flatMap(([type, name, size, edges], id) => [NODE_TYPES.indexOf(type), str(name), id, size, edges.length]),
    edges: nodes.flatMap(([, , , edges]) => edges.flatMap(([type, name, to]) => [EDGE_TYPES.indexOf(type), typeof name === 'number' ? name : str(name), to * NODE_FIELDS])),
    strings,
  });
}

describe('heapBreakdown', () => {
  it('charges each object to its nearest dominating class instance and field', () => {
    const dir = mkdtempSync(join(tmpdir(), 'flotilla-heap-breakdown-'));
    try {
      const path = join(dir, 'x.heapsnapshot');
      writeFileSync(
        path,
        snapshotJson([
          ['synthetic', '', 0, [['property', 'a', 1], ['property', 'b', 4]]],
          ['object', 'Group', 100, [['property', 'bounds', 2], ['property', 'shared', 3], ['weak', 'cache', 6]]],
          ['object', 'Object', 40, [['property', 'start', 5]]],
          ['object', 'Array', 30, []],
          ['object', 'Map', 20, [['element', 0, 3]]],
          ['object', 'Uint8Array', 96, []],
          ['object', 'Object', 1_000, []],
        ]),
      );
      const { totalBytes, byOwner } = heapBreakdown(path);
      expect(totalBytes).toBe(286);
      expect(Object.fromEntries(byOwner)).toEqual({
        '(root) synthetic': { bytes: 0, count: 1 },
        'Group (self)': { bytes: 100, count: 1 },
        'Group.bounds': { bytes: 40, count: 1 },
        'Uint8Array (self)': { bytes: 96, count: 1 },
        '(root) object': { bytes: 50, count: 2 },
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
