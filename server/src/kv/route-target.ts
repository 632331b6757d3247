import { compareKeys, rangeContains, type RangeDescriptor, type RangeTable } from '@flotilla/placement';

/**
 * What a request is routed by: the range holding a key, or (a reverse scan's
 * next step) the range holding the keys just below `end` — null for the last
 * range, which runs to the end of the key space.
 */
export type RouteTarget = { readonly kind: 'key'; readonly key: Uint8Array } | { readonly kind: 'below'; readonly end: Uint8Array | null };

/**
 * A request whose route failed: its target, and the range it was sent to
 * that does not hold it (the range answered KEY_OUT_OF_RANGE), undefined when
 * the table named no range for it.
 */
export interface RouteMiss {
  readonly target: RouteTarget;
  readonly failed: RangeDescriptor | undefined;
}

/**
 * What a refresh of the range table reads beyond this node's own replicas:
 * nothing; the range of a routing miss (looked up by key, range-lookup.ts);
 * one range's descriptor by id (a range an op names but the table lacks, or
 * whose replicas all say they hold none); or every descriptor.
 */
export type MetaRead =
  | { readonly kind: 'none' }
  | { readonly kind: 'miss'; readonly miss: RouteMiss }
  | { readonly kind: 'range'; readonly rangeId: number }
  | { readonly kind: 'all' };

/** Does `range` hold `target`? */
export function holdsTarget(range: Pick<RangeDescriptor, 'start' | 'end'>, target: RouteTarget): boolean {
  if (target.kind === 'key') return rangeContains(range, target.key);
  if (target.end === null) return range.end === null;
  return compareKeys(range.start, target.end) < 0 && (range.end === null || compareKeys(range.end, target.end) >= 0);
}

/**
 * The range `ranges` holds for `target`, or undefined when it has none there
 * (a gap: stale). A key is a binary search; the keys below an end are linear
 * in the table, once per page of a reverse scan.
 */
export function locateTarget(ranges: RangeTable, target: RouteTarget): RangeDescriptor | undefined {
  if (target.kind === 'key') return ranges.lookup(target.key);
  const all = ranges.all();
  for (let i = all.length - 1; i >= 0; i--) {
    const r = all[i]!;
    if (target.end === null) return r.end === null ? r : undefined;
    if (compareKeys(r.start, target.end) >= 0) continue;
    return holdsTarget(r, target) ? r : undefined;
  }
  return undefined;
}

/** Is `miss` answered by `ranges`: does the table now name a range for its target other than the one that failed? */
export function missAnswered(ranges: RangeTable, miss: RouteMiss): boolean {
  const now = locateTarget(ranges, miss.target);
  return now !== undefined && !sameRoute(now, miss.failed);
}

/** The same range at the same epoch (undefined: no route) — a route that failed once fails again. */
export function sameRoute(a: RangeDescriptor | undefined, b: RangeDescriptor | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.rangeId === b.rangeId && a.epoch === b.epoch;
}

/** Orders targets by where they sit in the key space (a key at itself, the keys below an end just below it; null last). */
export function compareTargets(a: RouteTarget, b: RouteTarget): number {
  const at = (t: RouteTarget) => (t.kind === 'key' ? t.key : t.end);
  const x = at(a);
  const y = at(b);
  if (x === null || y === null) return x === y ? 0 : x === null ? 1 : -1;
  return compareKeys(x, y) || (a.kind === b.kind ? 0 : a.kind === 'below' ? -1 : 1);
}

/** The target in an error message: "key 4142", "the keys below 4142", "the keys below ∞". */
export function describeTarget(target: RouteTarget): string {
  if (target.kind === 'key') return `key ${Buffer.from(target.key).toString('hex')}`;
  return `the keys below ${target.end === null ? '∞' : Buffer.from(target.end).toString('hex')}`;
}
