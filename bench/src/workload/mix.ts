/**
 * The operation mixes of `flotilla bench` (YCSB's core workloads, plus a
 * write-only, a scan-heavy one, and the soak run's mix of every operation). Proportions add up to 1; `pick` maps a
 * uniform draw in [0, 1) to an operation.
 */
export type OpKind = 'read' | 'update' | 'insert' | 'readModifyWrite' | 'scan' | 'delete';

export interface Workload {
  readonly name: string;
  readonly description: string;
  readonly mix: Readonly<Partial<Record<OpKind, number>>>;
}

export const WORKLOADS: Readonly<Record<string, Workload>> = {
  write: { name: 'write', description: 'write-only: every operation overwrites a key', mix: { update: 1 } },
  a: { name: 'a', description: 'YCSB A, update heavy: 50 % reads, 50 % updates', mix: { read: 0.5, update: 0.5 } },
  b: { name: 'b', description: 'YCSB B, read mostly: 95 % reads, 5 % updates', mix: { read: 0.95, update: 0.05 } },
  c: { name: 'c', description: 'YCSB C, read only', mix: { read: 1 } },
  f: { name: 'f', description: 'YCSB F, read-modify-write: 50 % reads, 50 % read then conditional write on the version read', mix: { read: 0.5, readModifyWrite: 0.5 } },
  scan: { name: 'scan', description: 'scan heavy (YCSB E without inserts): 95 % short scans, 5 % updates', mix: { scan: 0.95, update: 0.05 } },
  // Every kind of request a node serves, so a soak run exercises every path that could hold on to memory;
  // a deleted key is written again by a later update or conditional write (If-None-Match: *), so the key
  // set stays the loaded one.
  soak: { name: 'soak', description: 'soak: 50 % reads, 30 % updates, 15 % read then conditional write, 5 % deletes', mix: { read: 0.5, update: 0.3, readModifyWrite: 0.15, delete: 0.05 } },
};

const ORDER: readonly OpKind[] = ['read', 'update', 'insert', 'readModifyWrite', 'scan', 'delete'];

/** Checks that the mix's proportions are in [0, 1] and add up to 1 (within rounding). */
export function checkWorkload(w: Workload): void {
  let sum = 0;
  for (const [op, p] of Object.entries(w.mix)) {
    if (!ORDER.includes(op as OpKind) || typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new RangeError(`workload ${w.name}: ${op} proportion ${String(p)}`);
    sum += p;
  }
  if (Math.abs(sum - 1) > 1e-9) throw new RangeError(`workload ${w.name}: proportions add up to ${sum}, not 1`);
}

/** The operation a uniform draw `u` in [0, 1) selects. */
export function pick(w: Workload, u: number): OpKind {
  let acc = 0;
  let last: OpKind | undefined;
  for (const op of ORDER) {
    const p = w.mix[op] ?? 0;
    if (p === 0) continue;
    acc += p;
    last = op;
    if (u < acc) return op;
  }
  return last!; // u within rounding of 1
}
