/**
 * Linearizability of one object's history: the Wing–Gong search with Lowe's
 * memoization, as Porcupine (anishathalye/porcupine, `checkSingle`) and
 * Knossos do it, written for operations whose outcome may be unknown.
 *
 * The history becomes a doubly linked list of call and return entries in time
 * order. The search walks it from the front: at a call it tries to linearize
 * that operation now (the model must accept its output in the current state),
 * removes its call and return from the list and starts again from the front;
 * reaching a return means the operation it closes could not be placed before
 * the operations that follow, so the last choice is undone and the next
 * candidate after it is tried. A configuration — the set of operations
 * linearized and the model state — that was reached before is not explored
 * again (Lowe's cache), which turns the factorial search into one bounded by
 * the distinct configurations.
 *
 * An operation with an unknown outcome has a call and no return: it never
 * forces backtracking, it may be linearized at any point after its call (the
 * model's "took effect" state), and the history is linearizable once every
 * operation *with* an outcome is placed — the rest took no effect. Because
 * of that, a configuration is also dominated by one with the same known
 * operations placed, a subset of the unknown ones placed and a state that
 * subsumes its state (Model.subsumes: the latter can do everything the
 * former can), and is pruned too. And
 * unknown operations with equal inputs (Model.inputKey) are placed in the
 * order they were invoked: any linearization that uses k of them can use the
 * k invoked first instead, at the same places, so trying the others first
 * only repeats work.
 */
import { validateOperations, type Model, type Operation } from './history.js';

/**
 * Loop iterations one search may take before it gives up with `unknown`. A
 * history of a few thousand operations per key with bounded concurrency takes
 * well under a million; the bound keeps a pathological history (dozens of
 * concurrent unknown writes) from running for hours.
 */
export const SEARCH_STEPS_MAX_DEFAULT = 50_000_000;
/** Operations listed around the point where a failed search got stuck. */
const REPORT_OPERATIONS_MAX = 16;

export interface SearchOptions {
  readonly stepsMax?: number;
}

export type SearchResult<S, I, O> =
  | {
      readonly kind: 'linearizable';
      /** A witness: the operations that took effect, in linearization order (unknown ones that took no effect are absent). */
      readonly order: readonly Operation<I, O>[];
      readonly steps: number;
    }
  | {
      readonly kind: 'violation';
      /** The last operations of the longest linearizable prefix found (at most REPORT_OPERATIONS_MAX). */
      readonly prefixTail: readonly Operation<I, O>[];
      readonly prefixLength: number;
      /** The model state after that prefix. */
      readonly state: S;
      /** Operations that could come next there, none of which the model accepts (ends with the one that had to complete). */
      readonly stuck: readonly Operation<I, O>[];
      readonly steps: number;
    }
  | { readonly kind: 'unknown'; readonly reason: string; readonly steps: number };

/** Dancing-links list over call and return entries, with a head and a tail sentinel. */
interface EntryList {
  readonly next: Int32Array;
  readonly prev: Int32Array;
  /** Operation index of each entry. */
  readonly op: Int32Array;
  /** For a call: its return entry, or -1 (unknown outcome). For a return: -2. */
  readonly match: Int32Array;
  readonly head: number;
  readonly tail: number;
}

const RETURN = -2;
const NO_RETURN = -1;

function entryListOf<I, O>(ops: readonly Operation<I, O>[]): EntryList {
  const events: { time: number; isReturn: number; op: number }[] = [];
  ops.forEach((o, i) => {
    events.push({ time: o.invokeMs, isReturn: 0, op: i });
    if (o.completeMs !== null) events.push({ time: o.completeMs, isReturn: 1, op: i });
  });
  // At equal times calls go first: the operations overlap (only complete < invoke orders two operations).
  events.sort((a, b) => a.time - b.time || a.isReturn - b.isReturn || a.op - b.op);
  const count = events.length;
  const head = count;
  const tail = count + 1;
  const next = new Int32Array(count + 2);
  const prev = new Int32Array(count + 2);
  const op = new Int32Array(count + 2).fill(-1);
  const match = new Int32Array(count + 2).fill(NO_RETURN);
  const callOf = new Int32Array(ops.length).fill(-1);
  events.forEach((e, i) => {
    op[i] = e.op;
    if (e.isReturn === 1) {
      match[i] = RETURN;
      match[callOf[e.op]!] = i;
    } else callOf[e.op] = i;
    prev[i] = i === 0 ? head : i - 1;
    next[i] = i === count - 1 ? tail : i + 1;
  });
  next[head] = count === 0 ? tail : 0;
  prev[tail] = count === 0 ? head : count - 1;
  prev[head] = -1;
  next[tail] = -1;
  return { next, prev, op, match, head, tail };
}

function lift(list: EntryList, call: number): void {
  const { next, prev, match } = list;
  next[prev[call]!] = next[call]!;
  prev[next[call]!] = prev[call]!;
  const ret = match[call]!;
  if (ret >= 0) {
    next[prev[ret]!] = next[ret]!;
    prev[next[ret]!] = prev[ret]!;
  }
}

/** Undoes lift(call); entries are restored in the reverse order of their removal. */
function unlift(list: EntryList, call: number): void {
  const { next, prev, match } = list;
  const ret = match[call]!;
  if (ret >= 0) {
    next[prev[ret]!] = ret;
    prev[next[ret]!] = ret;
  }
  next[prev[call]!] = call;
  prev[next[call]!] = call;
}

/** Deterministic 32-bit values for the cache's hash of the linearized set (xorshift32 from a fixed seed). */
function zobristValues(count: number, seed: number): Uint32Array {
  const out = new Uint32Array(count);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x;
  }
  return out;
}

/**
 * Configurations kept per (known operations placed, state group) as possible
 * dominators. Equal configurations are found through an exact index whatever
 * the count; dominance beyond equality is looked for among the first ones
 * stored only — those were reached first, with the fewest unknown operations
 * placed (known ones are tried first) — so a group of many configurations
 * that differ only in unknown operations costs a bounded scan per step.
 */
const DOMINATORS_PER_GROUP_MAX = 16;

/**
 * Lowe's cache with dominance: a configuration is pruned if it was reached
 * before, or if a stored one placed a subset of its operations that differs
 * only in unknown ones and has a state that subsumes its state.
 */
class ConfigurationCache<S> {
  private readonly exact = new Map<string, Uint32Array[]>();
  private readonly groups = new Map<string, { bits: Uint32Array; state: S }[]>();

  constructor(
    private readonly unknownMask: Uint32Array,
    private readonly subsumes: (a: S, b: S) => boolean,
  ) {}

  /**
   * False if the configuration is dominated by a stored one; otherwise stores it and answers true.
   * `exactKey` must be equal for equal (bits, state); `groupKey` for configurations that may dominate one another.
   */
  add(exactKey: string, groupKey: string, bits: Uint32Array, state: S): boolean {
    let bucket = this.exact.get(exactKey);
    if (bucket === undefined) this.exact.set(exactKey, (bucket = []));
    else if (bucket.some((stored) => equalBits(stored, bits))) return false;
    let group = this.groups.get(groupKey);
    if (group === undefined) this.groups.set(groupKey, (group = []));
    for (const stored of group) if (this.placedSubset(stored.bits, bits) && this.subsumes(stored.state, state)) return false;
    const copy = bits.slice();
    bucket.push(copy);
    if (group.length < DOMINATORS_PER_GROUP_MAX) group.push({ bits: copy, state });
    return true;
  }

  /** stored ⊆ current, and whatever current placed beyond stored has an unknown outcome. */
  private placedSubset(stored: Uint32Array, current: Uint32Array): boolean {
    for (let w = 0; w < stored.length; w++) {
      const s = stored[w]!;
      const c = current[w]!;
      if ((s & ~c) !== 0) return false;
      if ((c & ~s & ~this.unknownMask[w]!) !== 0) return false;
    }
    return true;
  }
}

function equalBits(a: Uint32Array, b: Uint32Array): boolean {
  for (let w = 0; w < a.length; w++) if (a[w] !== b[w]) return false;
  return true;
}

/** Checks one object's history (operations on one key) against `model`. */
export function checkOperations<S, I, O>(model: Model<S, I, O>, ops: readonly Operation<I, O>[], options: SearchOptions = {}): SearchResult<S, I, O> {
  validateOperations(ops);
  const stepsMax = options.stepsMax ?? SEARCH_STEPS_MAX_DEFAULT;
  const list = entryListOf(ops);
  const words = Math.ceil(ops.length / 32);
  const bits = new Uint32Array(words);
  const unknownMask = new Uint32Array(words);
  ops.forEach((o, i) => {
    if (o.completeMs === null) unknownMask[i >>> 5]! |= 1 << (i & 31);
  });
  const zobristHigh = zobristValues(ops.length, 0x9e3779b9);
  const zobristLow = zobristValues(ops.length, 0x7f4a7c15);
  const zobristAll = zobristValues(ops.length, 0x2545f491);
  const groupKey = model.stateGroupKey ?? model.stateKey;
  const subsumes = model.subsumes ?? ((a: S, b: S) => model.stateKey(a) === model.stateKey(b));
  const cache = new ConfigurationCache<S>(unknownMask, subsumes);
  // Interchangeable unknown operations: per class, its members in invocation order and how many are placed
  // (always the first ones). Known operations and models without inputKey: every operation its own class.
  const classOf = new Int32Array(ops.length).fill(-1);
  const rankInClass = new Int32Array(ops.length);
  const classPlaced: number[] = [];
  if (model.inputKey !== undefined) {
    const classes = new Map<string, number>();
    const byInvoke = ops.map((_, i) => i).filter((i) => ops[i]!.completeMs === null).sort((a, b) => ops[a]!.invokeMs - ops[b]!.invokeMs || a - b);
    const sizes: number[] = [];
    for (const i of byInvoke) {
      const key = model.inputKey(ops[i]!.input);
      let c = classes.get(key);
      if (c === undefined) {
        c = sizes.length;
        classes.set(key, c);
        sizes.push(0);
        classPlaced.push(0);
      }
      classOf[i] = c;
      rankInClass[i] = sizes[c]!++;
    }
  }
  /** Whether an unknown operation is the next of its class to place. */
  const nextOfClass = (i: number) => classOf[i]! < 0 || rankInClass[i] === classPlaced[classOf[i]!];
  const countPlaced = (i: number, delta: number) => {
    if (classOf[i]! >= 0) classPlaced[classOf[i]!]! += delta;
  };
  let knownLeft = ops.filter((o) => o.completeMs !== null).length;
  // Zobrist hashes of the placed set: over known operations only (the dominance group) and over all (the exact index).
  let hashHigh = 0;
  let hashLow = 0;
  let hashAll = 0;
  let state = model.init;
  // The linearized operations, in order: the call entry and the state before it.
  const placed: { call: number; stateBefore: S }[] = [];
  let steps = 0;
  let stuckDepth = -1;
  let stuckReport: { prefixTail: Operation<I, O>[]; state: S; stuck: Operation<I, O>[] } | undefined;

  const known = (opIndex: number) => ops[opIndex]!.completeMs !== null;
  const setBit = (i: number) => (bits[i >>> 5]! |= 1 << (i & 31));
  const clearBit = (i: number) => (bits[i >>> 5]! &= ~(1 << (i & 31)));
  const toggleHash = (i: number) => {
    hashAll ^= zobristAll[i]!;
    if (!known(i)) return;
    hashHigh ^= zobristHigh[i]!;
    hashLow ^= zobristLow[i]!;
  };

  /** The search cannot extend the current prefix: remember the deepest such place for the report. */
  const noteStuck = (at: number) => {
    if (placed.length <= stuckDepth) return;
    stuckDepth = placed.length;
    const stuck: Operation<I, O>[] = [];
    for (let e = list.next[list.head]!; e !== list.tail && stuck.length < REPORT_OPERATIONS_MAX; e = list.next[e]!) {
      if (list.match[e] !== RETURN) stuck.push(ops[list.op[e]!]!);
      if (e === at) break;
    }
    if (at !== list.tail && !stuck.includes(ops[list.op[at]!]!)) stuck.push(ops[list.op[at]!]!);
    stuckReport = { prefixTail: placed.slice(-REPORT_OPERATIONS_MAX).map((p) => ops[list.op[p.call]!]!), state, stuck };
  };

  // Candidates at a point are the calls before the first return in the list. Those with a known outcome are
  // tried first, then the unknown ones: a configuration reached without an unknown operation is then
  // explored before the same one with it, and the cache prunes the latter as dominated.
  let entry = list.next[list.head]!;
  let unknownPhase = false;
  while (knownLeft > 0) {
    if (++steps > stepsMax) return { kind: 'unknown', reason: `gave up after ${stepsMax} search steps (${ops.length} operations, ${placed.length} placed)`, steps };
    const isCall = entry !== list.tail && list.match[entry] !== RETURN;
    if (isCall) {
      const opIndex = list.op[entry]!;
      if (known(opIndex) === unknownPhase || !nextOfClass(opIndex)) {
        entry = list.next[entry]!;
        continue;
      }
      const op = ops[opIndex]!;
      const next = model.step(state, op.input, op.output ?? undefined);
      if (next !== undefined) {
        setBit(opIndex);
        toggleHash(opIndex);
        const knownHash = `${hashHigh}:${hashLow}:`;
        if (cache.add(`${knownHash}${hashAll}:${model.stateKey(next)}`, `${knownHash}${groupKey(next)}`, bits, next)) {
          placed.push({ call: entry, stateBefore: state });
          state = next;
          if (known(opIndex)) knownLeft--;
          countPlaced(opIndex, 1);
          lift(list, entry);
          entry = list.next[list.head]!;
          unknownPhase = false;
          continue;
        }
        clearBit(opIndex);
        toggleHash(opIndex);
      }
      entry = list.next[entry]!;
      continue;
    }
    // A return (or the end): no candidate before it can come next.
    if (!unknownPhase) {
      unknownPhase = true;
      entry = list.next[list.head]!;
      continue;
    }
    // Undo the last choice and try the candidates after it.
    noteStuck(entry);
    const last = placed.pop();
    if (last === undefined) {
      const report = stuckReport!;
      return { kind: 'violation', prefixTail: report.prefixTail, prefixLength: stuckDepth, state: report.state, stuck: report.stuck, steps };
    }
    const opIndex = list.op[last.call]!;
    state = last.stateBefore;
    clearBit(opIndex);
    toggleHash(opIndex);
    if (known(opIndex)) knownLeft++;
    countPlaced(opIndex, -1);
    unlift(list, last.call);
    entry = list.next[last.call]!;
    unknownPhase = !known(opIndex);
  }
  return { kind: 'linearizable', order: placed.map((p) => ops[list.op[p.call]!]!), steps };
}
