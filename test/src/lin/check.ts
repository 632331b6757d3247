/**
 * Linearizability of a key-value history: one versioned register per key,
 * each key checked on its own (linearizability is compositional: a history
 * is linearizable iff every object's sub-history is — Herlihy & Wing, §3.3).
 */
import { validateOperations } from './history.js';
import { describeRegisterOperation, describeRegisterState, registerModel, validateRegisterOperation, type RegisterInput, type RegisterOperation, type RegisterOutput, type RegisterState } from './register.js';
import { checkOperations, type SearchOptions, type SearchResult } from './search.js';

/** A register operation on a named key. */
export interface KeyedOperation extends RegisterOperation {
  readonly key: string;
}

export interface KeyVerdict {
  readonly key: string;
  readonly operationCount: number;
  readonly unknownCount: number;
  /** Unknown puts left out as unobservable (unobservedPuts). */
  readonly prunedCount: number;
  readonly result: SearchResult<RegisterState, RegisterInput, RegisterOutput>;
}

export interface HistoryVerdict {
  /** 'linearizable' only if every key is; 'violation' if any key is not; else 'unknown' (a search gave up). */
  readonly kind: 'linearizable' | 'violation' | 'unknown';
  readonly keys: readonly KeyVerdict[];
}

/**
 * Checks every key's sub-history. Reads whose outcome is unknown are dropped
 * first: they had no effect and observed nothing. Throws HistoryError if the
 * history is malformed.
 */
export function checkRegisterHistory(ops: readonly KeyedOperation[], options: SearchOptions = {}): HistoryVerdict {
  validateOperations(ops);
  for (const op of ops) validateRegisterOperation(op);
  const byKey = new Map<string, KeyedOperation[]>();
  for (const op of ops) {
    if (op.input.kind === 'get' && op.output === null) continue;
    let list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, (list = []));
    list.push(op);
  }
  const keys = [...byKey].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([key, list]): KeyVerdict => {
    const pruned = unobservedPuts(list);
    const kept = pruned.size === 0 ? list : list.filter((o) => !pruned.has(o));
    return {
      key,
      operationCount: list.length,
      unknownCount: list.filter((o) => o.output === null).length,
      prunedCount: pruned.size,
      result: restored(checkOperations(registerModel, withUnreadValuesMerged(kept), options), new Map(list.map((o) => [o.id, o]))),
    };
  });
  const kind = keys.some((k) => k.result.kind === 'violation') ? 'violation' : keys.some((k) => k.result.kind === 'unknown') ? 'unknown' : 'linearizable';
  return { kind, keys };
}

/**
 * Puts with an unknown outcome that no linearization needs, so they can be
 * left out (each one left in multiplies the configurations to search): the
 * value was never read, and after the put was invoked no write was refused
 * and no write was conditional on a version (If-Match). Proof: take a
 * linearization in which such a put P took effect, and let P not take
 * effect instead. Between P and the next write that took effect the state
 * changes from P's value to the one before; nothing placed there sees the
 * difference — no read (none returned P's value, and the key was not
 * absent), no refusal or If-Match (none exist), no If-None-Match success (the
 * key was not absent) — and the next write needs a version above the one
 * before P, which P's own version already exceeded.
 */
export function unobservedPuts<T extends RegisterOperation>(ops: readonly T[]): Set<T> {
  const read = new Set<string>();
  for (const o of ops) if (o.output?.kind === 'found') read.add(o.output.value);
  // Only refusals and If-Match writes that may come after P's invocation (ending at or after it) matter.
  let versionSensitiveEndMs = Number.NEGATIVE_INFINITY;
  for (const o of ops) {
    const refusal = o.output?.kind === 'refused';
    const ifMatch = o.input.kind !== 'get' && o.input.ifVersion !== undefined && o.input.ifVersion >= 1;
    if (refusal || ifMatch) versionSensitiveEndMs = Math.max(versionSensitiveEndMs, o.completeMs ?? Number.POSITIVE_INFINITY);
  }
  const out = new Set<T>();
  for (const o of ops) {
    if (o.input.kind !== 'put' || o.output !== null || read.has(o.input.value)) continue;
    if (versionSensitiveEndMs < o.invokeMs) out.add(o);
  }
  return out;
}

/**
 * The history with every unknown put whose value nobody read writing one
 * common value instead. No read can tell the difference (none returned any
 * of them), and the puts then have equal inputs, so the search treats them
 * as interchangeable (Model.inputKey) instead of trying each in turn.
 */
function withUnreadValuesMerged(ops: readonly RegisterOperation[]): RegisterOperation[] {
  const read = new Set<string>();
  for (const o of ops) if (o.output?.kind === 'found') read.add(o.output.value);
  let unread = '\u0000unread';
  while (read.has(unread)) unread += '\u0000';
  return ops.map((o) => (o.input.kind === 'put' && o.output === null && !read.has(o.input.value) ? { ...o, input: { ...o.input, value: unread } } : o));
}

/** A search result naming the recorded operations, not the copies the search ran on. */
function restored(result: SearchResult<RegisterState, RegisterInput, RegisterOutput>, byId: ReadonlyMap<number, RegisterOperation>): KeyVerdict['result'] {
  const original = (o: RegisterOperation) => byId.get(o.id)!;
  switch (result.kind) {
    case 'linearizable':
      return { ...result, order: result.order.map(original) };
    case 'violation':
      return { ...result, prefixTail: result.prefixTail.map(original), stuck: result.stuck.map(original) };
    case 'unknown':
      return result;
  }
}

/** A few lines per key that is not linearizable (or could not be decided): where the search got stuck and why. */
export function describeVerdict(verdict: HistoryVerdict): string {
  const lines: string[] = [];
  for (const k of verdict.keys) {
    const r = k.result;
    if (r.kind === 'linearizable') continue;
    if (r.kind === 'unknown') {
      lines.push(`key ${JSON.stringify(k.key)}: undecided (${r.reason})`);
      continue;
    }
    lines.push(`key ${JSON.stringify(k.key)}: NOT linearizable (${k.operationCount} operations, ${k.unknownCount} with unknown outcome)`);
    lines.push(`  longest linearizable prefix: ${r.prefixLength} operations, ending with:`);
    for (const op of r.prefixTail) lines.push(`    ${describeRegisterOperation(op)}`);
    lines.push(`  state then: ${describeRegisterState(r.state)}`);
    lines.push('  none of these can come next:');
    for (const op of r.stuck) lines.push(`    ${describeRegisterOperation(op)}`);
  }
  return lines.join('\n');
}
