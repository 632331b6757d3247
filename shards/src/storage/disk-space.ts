import { statfsSync } from 'node:fs';

/**
 * What is left on the file system that holds a store, and whether a failed
 * write was that file system filling up.
 *
 * LMDB reports a full disk two ways: ENOSPC when a page write fails outright,
 * and EIO when a write came back short ("filesystem full?" in mdb.c). EIO is
 * also what a failing device says, and retrying after a real I/O error is
 * unsafe (the kernel may have dropped the dirty pages), so EIO counts as a
 * full disk only while the file system really is nearly full.
 */

/** Below this many free bytes an EIO from a write is taken for a full disk: LMDB writes pages of a few KiB at a time. */
const SHORT_WRITE_FREE_BYTES_MAX = 1024 * 1024;

/** Bytes an unprivileged process may still write under `dir`; undefined if the file system cannot be asked. */
export function freeBytes(dir: string): number | undefined {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

const ENOSPC = 28;
const EIO = 5;

/** Whether `err`, thrown by a write to the store under `dir`, means the file system is full (and retrying later is safe). */
export function isOutOfSpace(err: unknown, dir: string): boolean {
  const code = (err as { code?: unknown; errno?: unknown } | null)?.code;
  if (code === 'ENOSPC' || code === ENOSPC || code === -ENOSPC) return true;
  if (code !== 'EIO' && code !== EIO && code !== -EIO) return false;
  const free = freeBytes(dir);
  return free !== undefined && free < SHORT_WRITE_FREE_BYTES_MAX;
}
