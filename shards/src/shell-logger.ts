import type { Logger } from '@flotilla/core';

/**
 * Logging as the shell needs it: the core's interface plus error and child
 * bindings (pino satisfies it). A leaf, so that every part of the shell —
 * host, replica, snapshot — can take one without importing another.
 */
export interface ShellLogger extends Logger {
  error(fields: Record<string, unknown>, message: string): void;
  child(bindings: Record<string, unknown>): ShellLogger;
  /** What every line of this logger carries already (pino's, its root's `base` included); childLogger reads it. */
  bindings?(): Record<string, unknown>;
  /** pino's; absent: every level is taken to be enabled. */
  isLevelEnabled?(level: string): boolean;
}

/**
 * A child that binds only the keys its parent does not carry yet: pino
 * writes a key bound twice twice (`"nodeId":1,…,"nodeId":1`), which JSON
 * readers resolve differently. So a component may name its node whether or
 * not the logger it was given already does (the CLI's root binds nodeId;
 * a test's or an embedder's may not). Do not use it to re-label: a key the
 * parent binds keeps the parent's value (`component` belongs on the leaf,
 * so children of one component start from a logger without one).
 */
export function childLogger(parent: ShellLogger, bindings: Record<string, unknown>): ShellLogger {
  const bound = parent.bindings?.();
  if (bound === undefined) return parent.child(bindings);
  const fresh: Record<string, unknown> = {};
  for (const key of Object.keys(bindings)) if (!(key in bound)) fresh[key] = bindings[key];
  return parent.child(fresh);
}

/**
 * The logger a replica's Raft state machine gets. Raft names its node in
 * every line's fields (`nodeId`, core/src/raft.ts), which the shell's
 * logger binds already: dropped here, not written twice. And its state
 * changes — became candidate, became leader, switched configuration — are
 * per range: with hundreds of ranges per node they would be most of the
 * info lines (a one-node start wrote 63 of its 84, for 9 ranges), so they
 * go out at debug; a node's own state changes stay at info. Warnings stay
 * warnings.
 *
 * `bindings` (e.g. the range) are bound by a child made at the first line
 * written, not before: a pino child and this adapter's closures cost a
 * replica ~500 B, and most replicas never write a line at the levels a node
 * runs at (ARCHITECTURE.md, "Memory per replica").
 */
export function raftLogger(log: ShellLogger, bindings?: Record<string, unknown>): Logger {
  return new RaftLogger(log, bindings);
}

class RaftLogger implements Logger {
  // Checked once: Raft builds a debug line's fields whether or not it is written; the copy is only for written ones.
  private readonly debugEnabled: boolean;
  private bound: ShellLogger | undefined;

  constructor(
    private readonly parent: ShellLogger,
    private readonly bindings: Record<string, unknown> | undefined,
  ) {
    this.debugEnabled = parent.isLevelEnabled?.('debug') ?? true;
  }

  debug(fields: Record<string, unknown>, message: string): void {
    if (this.debugEnabled) this.log().debug(withoutNodeId(fields), message);
  }

  info(fields: Record<string, unknown>, message: string): void {
    if (this.debugEnabled) this.log().debug(withoutNodeId(fields), message);
  }

  warn(fields: Record<string, unknown>, message: string): void {
    this.log().warn(withoutNodeId(fields), message);
  }

  private log(): ShellLogger {
    return (this.bound ??= this.bindings === undefined ? this.parent : this.parent.child(this.bindings));
  }
}

function withoutNodeId(fields: Record<string, unknown>): Record<string, unknown> {
  if (!('nodeId' in fields)) return fields;
  const { nodeId: _nodeId, ...rest } = fields;
  return rest;
}
