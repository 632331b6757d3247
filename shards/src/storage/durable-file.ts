/**
 * The one way a node writes a file outside LMDB (identity files FLOTILLA and
 * NODE, cluster.json, CLUSTER): a crash or power failure at any point leaves
 * either the old file or the new one, never a short or empty one. LMDB syncs
 * its own files; LOCK is the one exception (dir-lock.ts says why).
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** The file system calls a durable write makes, so a test can see each one (and each fsync) in order. */
export interface DurableFs {
  openSync(path: string, flags: string): number;
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number;
  fsyncSync(fd: number): void;
  closeSync(fd: number): void;
  renameSync(from: string, to: string): void;
  /** `recursive`: returns the first directory it created, or undefined when all existed. */
  mkdirSync(path: string, options: { recursive: true }): string | undefined;
}

export const NODE_FS: DurableFs = { openSync, writeSync, fsyncSync, closeSync, renameSync, mkdirSync };

/** The temp file a durable write of `name` goes through; readers of a directory may meet one a crash left. */
export function tempFileName(name: string): string {
  return `${name}.tmp`;
}

/**
 * Replaces `<dir>/<name>` with `data`: write a temp file, fsync it, rename it
 * over the name, fsync the directory (without that the rename itself may be
 * lost). The directory must exist. A stale temp file from an earlier crash is
 * overwritten. Throws the file system's error; the old file is then intact.
 */
export function writeFileDurably(o: { dir: string; name: string; data: string | Uint8Array; fs?: DurableFs }): void {
  const fs = o.fs ?? NODE_FS;
  const bytes = typeof o.data === 'string' ? Buffer.from(o.data, 'utf8') : o.data;
  const tmp = join(o.dir, tempFileName(o.name));
  const fd = fs.openSync(tmp, 'w');
  try {
    for (let at = 0; at < bytes.byteLength; ) at += fs.writeSync(fd, bytes, at, bytes.byteLength - at, at);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, join(o.dir, o.name));
  fsyncDir(o.dir, fs);
}

/** writeFileDurably of `value` as one line of JSON. */
export function writeJsonDurably(o: { dir: string; name: string; value: unknown; fs?: DurableFs }): void {
  writeFileDurably({ dir: o.dir, name: o.name, data: `${JSON.stringify(o.value)}\n`, ...(o.fs === undefined ? {} : { fs: o.fs }) });
}

/** Makes a directory's entries (a created, renamed or removed file) durable. */
export function fsyncDir(dir: string, fs: DurableFs = NODE_FS): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Creates a directory and its missing parents, and makes each new entry durable in its parent. */
export function makeDirDurably(dir: string, fs: DurableFs = NODE_FS): void {
  const target = resolve(dir);
  const topCreated = resolve(fs.mkdirSync(target, { recursive: true }) ?? target);
  for (let d = target; ; d = dirname(d)) {
    fsyncDir(dirname(d), fs);
    if (d === topCreated || dirname(d) === d) break;
  }
}
