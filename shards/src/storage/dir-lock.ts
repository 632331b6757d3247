import { closeSync, constants, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { DataDirLockedError } from './errors.js';

/**
 * The lock file inside a data directory. It is created once and never
 * replaced or removed: the lock lives on its inode, so a rename over it or
 * an unlink would let a second process lock a different file under the same
 * name while the first still holds the old one.
 */
export const LOCK_FILE = 'LOCK';

/**
 * fs-native-extensions' lock on an open file description: on Linux
 * `fcntl(F_OFD_SETLK)` over the whole file (macOS: flock; Windows:
 * LockFileEx). An OFD lock belongs to the open file description, not to the
 * process, so a second open in the same process conflicts too; the kernel
 * drops it when the descriptor is closed, which includes any process death.
 * (ARCHITECTURE.md, storage, has why this package.)
 */
interface NativeLocks {
  /** False when another open file description holds a conflicting lock. */
  tryLock(fd: number, offset?: number, length?: number, options?: { shared?: boolean }): boolean;
}
const nativeLocks = createRequire(import.meta.url)('fs-native-extensions') as NativeLocks;

/**
 * One process per data directory: an exclusive lock on `<dir>/LOCK`, held
 * from `acquire` to `release` (or the process's death: no stale lock is ever
 * left to clean up). The holder records its pid in the file, in place, for
 * the error a refused opener shows. That pid is advisory: after a crash the
 * file still names the dead holder, which is harmless because nobody holds
 * the lock then, and the record is not fsynced (a lock does not outlive a
 * power failure, so neither need its holder's pid).
 */
export class DirLock {
  private constructor(
    readonly path: string,
    private fd: number | undefined,
  ) {}

  /**
   * Takes the lock on `<dir>/LOCK`, creating the file if missing (the
   * directory must exist). Throws DataDirLockedError, naming the holder's
   * pid, when any other open file description holds it — another process
   * or this one — and then has modified nothing: the file is opened without
   * truncating, and it already existed because its holder created it.
   */
  static acquire(dir: string): DirLock {
    const path = join(dir, LOCK_FILE);
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
    let locked = false;
    try {
      locked = nativeLocks.tryLock(fd);
    } finally {
      if (!locked) closeSync(fd);
    }
    if (!locked) throw new DataDirLockedError(dir, path, readHolderPid(path));
    ftruncateSync(fd, 0);
    writeSync(fd, `${process.pid}\n`, 0);
    return new DirLock(path, fd);
  }

  get held(): boolean {
    return this.fd !== undefined;
  }

  /** Releases the lock (closing the descriptor is what releases it). Idempotent. */
  release(): void {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    try {
      // No pid left behind for an opener that reads it between our close and the next holder's write.
      ftruncateSync(fd, 0);
    } finally {
      closeSync(fd);
    }
  }
}

/** The pid the holder recorded, or undefined when it has not written it yet (or the file is not ours). */
function readHolderPid(path: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  return /^\d+\s*$/.test(text) && Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}
