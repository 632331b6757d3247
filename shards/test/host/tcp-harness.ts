// Test-only parts of the TCP cluster tests: a log of acknowledged writes to
// check reads against, and a background writer through the cluster's
// hint-following client. The node processes, the cluster and the helpers live
// in test-support/node-cluster.ts (shared with the host benchmark) and are
// re-exported here.
import type { LoadResult } from '../../test-support/node-child.js';
import { hexOf, textOf, type ReadValue, type TcpCluster, type WriteRecorder } from '../../test-support/node-cluster.js';

export * from '../../test-support/node-cluster.js';

// ---------------------------------------------------------------- acknowledged writes

/**
 * Every acknowledged write, reduced to the latest (highest version) per key,
 * plus every write whose outcome is unknown (it may have been applied). A read
 * is correct when it returns the latest acknowledged value at its version, or
 * a later version holding one of the key's unknown-outcome values.
 */
export class WriteLog implements WriteRecorder {
  private readonly latest = new Map<string, { shardId: number; key: string } & ReadValue>();
  private readonly unknown = new Map<string, Set<string>>();
  ackedCount = 0;
  unknownCount = 0;

  acked(shardId: number, key: string, value: string, version: number): void {
    this.ackedCount++;
    const id = `${shardId}:${key}`;
    const current = this.latest.get(id);
    if (current === undefined || version > current.version) this.latest.set(id, { shardId, key, value, version });
  }

  unknownOutcome(shardId: number, key: string, value: string): void {
    this.unknownCount++;
    const id = `${shardId}:${key}`;
    let values = this.unknown.get(id);
    if (values === undefined) this.unknown.set(id, (values = new Set()));
    values.add(value);
  }

  addLoad(result: LoadResult): void {
    if (typeof result.acked === 'number') throw new Error('a load checked against the log must return its acked writes (ackedAs: "list")');
    for (const [shardId, key, value, version] of result.acked) this.acked(shardId, key, value, version);
    for (const [shardId, key, value] of result.unknownOutcome ?? []) this.unknownOutcome(shardId, key, value);
  }

  keys(): { shardId: number; key: string }[] {
    return [...this.latest.values()].map(({ shardId, key }) => ({ shardId, key }));
  }

  get keyCount(): number {
    return this.latest.size;
  }

  /** Undefined when `read` is a correct answer for the key; otherwise what is wrong. */
  check(shardId: number, key: string, read: ReadValue | null): string | undefined {
    const id = `${shardId}:${key}`;
    const expected = this.latest.get(id);
    if (expected === undefined) return `shard ${shardId} key ${textOf(key)} was never acknowledged`;
    const name = `shard ${shardId} key ${textOf(key)}`;
    if (read === null) return `${name}: not found, expected "${textOf(expected.value).slice(0, 40)}" at version ${expected.version}`;
    if (read.version < expected.version) return `${name}: version ${read.version} is older than the acknowledged ${expected.version}`;
    if (read.version === expected.version && read.value !== expected.value) return `${name}: version ${read.version} holds another value than was acknowledged`;
    if (read.version > expected.version && !(this.unknown.get(id)?.has(read.value) ?? false)) {
      return `${name}: version ${read.version} above the acknowledged ${expected.version} holds a value never written with an unknown outcome`;
    }
    return undefined;
  }
}

// ---------------------------------------------------------------- a background writer

export interface WriterReport {
  readonly acked: number;
  readonly failed: number;
  readonly failures: readonly string[];
}

/**
 * `laneCount` client loops writing round-robin over `shardIds` through the
 * cluster (hint-following), until stopped or `writeCountMax` writes were
 * attempted. Keys `s<shard>/<tag>/<n % keyCountPerShard>`, unique values.
 */
export function startWriter(
  cluster: TcpCluster,
  options: { shardIds: readonly number[]; laneCount: number; keyCountPerShard: number; tag: string; log: WriteLog; writeCountMax: number },
): { stop(): Promise<WriterReport>; readonly acked: number } {
  let stopped = false;
  let attempted = 0;
  let acked = 0;
  const failures: string[] = [];
  const lane = async (): Promise<void> => {
    while (!stopped && attempted < options.writeCountMax) {
      const seq = attempted++;
      const shardId = options.shardIds[seq % options.shardIds.length]!;
      const n = Math.floor(seq / options.shardIds.length) % options.keyCountPerShard;
      const key = hexOf(`s${String(shardId).padStart(6, '0')}/${options.tag}/${n}`);
      const value = hexOf(`${options.tag}:${seq}`);
      try {
        await cluster.write(shardId, key, value, options.log);
        acked++;
      } catch (err) {
        failures.push(String(err));
      }
    }
  };
  const lanes = Promise.all(Array.from({ length: options.laneCount }, lane));
  return {
    get acked() {
      return acked;
    },
    async stop() {
      stopped = true;
      await lanes;
      return { acked, failed: failures.length, failures };
    },
  };
}
