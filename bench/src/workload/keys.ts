import type { SeededRng } from '@flotilla/core';

/**
 * Which key an operation touches, as an index in [0, keyCount): the key
 * distributions of YCSB (Cooper et al., SoCC 2010), seeded so a run is
 * repeatable. Keys are spread over the key space by `keyOf`, so neighbours
 * in popularity do not share a range.
 */
export interface KeyChooser {
  next(): number;
}

export function uniformKeys(keyCount: number, rng: SeededRng): KeyChooser {
  checkKeyCount(keyCount);
  return { next: () => rng.intBelow(keyCount) };
}

/** YCSB's default skew: item i (0-based rank) is chosen with probability ∝ 1/(i+1)^θ. */
export const ZIPFIAN_THETA_DEFAULT = 0.99;

/**
 * Zipfian ranks by Gray et al.'s method ("Quickly generating billion-record
 * synthetic databases", SIGMOD 1994), as YCSB's ZipfianGenerator: O(n) once
 * for ζ(n, θ), O(1) per draw. Rank 0 is the most popular.
 */
export function zipfianRanks(keyCount: number, rng: SeededRng, theta = ZIPFIAN_THETA_DEFAULT): KeyChooser {
  checkKeyCount(keyCount);
  if (!(theta > 0 && theta < 1)) throw new RangeError(`zipfian θ ${theta} must be in (0, 1)`);
  const zetaN = zeta(keyCount, theta);
  const zeta2 = zeta(2, theta);
  const alpha = 1 / (1 - theta);
  const eta = (1 - Math.pow(2 / keyCount, 1 - theta)) / (1 - zeta2 / zetaN);
  const halfPowTheta = 1 + Math.pow(0.5, theta);
  return {
    next: () => {
      const u = rng.nextFloat();
      const uz = u * zetaN;
      if (uz < 1) return 0;
      if (uz < halfPowTheta) return Math.min(1, keyCount - 1);
      return Math.min(keyCount - 1, Math.floor(keyCount * Math.pow(eta * u - eta + 1, alpha)));
    },
  };
}

/**
 * Zipfian popularity with the popular keys scattered over the key space
 * (YCSB's ScrambledZipfianGenerator): rank → FNV-1a hash → index. A few
 * indexes collide, so the hottest key is a little hotter than its rank says;
 * YCSB accepts the same.
 */
export function scrambledZipfianKeys(keyCount: number, rng: SeededRng, theta = ZIPFIAN_THETA_DEFAULT): KeyChooser {
  const ranks = zipfianRanks(keyCount, rng, theta);
  return { next: () => fnv1a32(ranks.next()) % keyCount };
}

/** The key bytes of index i: a hash prefix spreads consecutive indexes over every range, the decimal suffix keeps keys distinct and readable. */
export function keyOf(index: number): Buffer {
  const prefix = fnv1a32(index);
  const key = Buffer.alloc(4 + 12);
  key.writeUInt32BE(prefix, 0);
  key.write(`k${String(index).padStart(11, '0')}`, 4, 'latin1');
  // The first byte picks the range; system keys (below 0x0001) are not ours: keep it at 0x01 or above.
  if (key[0] === 0) key[0] = 1;
  return key;
}

function zeta(n: number, theta: number): number {
  let sum = 0;
  for (let i = 1; i <= n; i++) sum += 1 / Math.pow(i, theta);
  return sum;
}

/** 32-bit FNV-1a over the 8 little-endian bytes of a safe integer. */
export function fnv1a32(n: number): number {
  let h = 0x811c9dc5;
  let x = n;
  for (let i = 0; i < 8; i++) {
    h ^= x & 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
    x = Math.floor(x / 256);
  }
  return h >>> 0;
}

function checkKeyCount(keyCount: number): void {
  if (!Number.isSafeInteger(keyCount) || keyCount < 1) throw new RangeError(`key count ${keyCount} must be a positive integer`);
}
