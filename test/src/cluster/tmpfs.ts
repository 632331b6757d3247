/**
 * A small filesystem for one node's data directory, so the disk-full fault
 * fills a real disk: a tmpfs mounted under a name the run chose (so a
 * leftover mount can be found with `mount | grep flotilla-faults`) and
 * unmounted at the end. Mounting needs root (CI runs as root); without it the
 * fault is skipped with the reason.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Bytes written per call while filling: big enough to fill hundreds of MiB quickly, small enough to stop close to full. */
const FILL_CHUNK_BYTES = 1024 * 1024;

export class Tmpfs {
  private constructor(
    readonly name: string,
    readonly mountPoint: string,
  ) {}

  /** Mounts a tmpfs of `sizeBytes` at `mountPoint` (created), or throws with the reason it could not. */
  static mount(o: { name: string; mountPoint: string; sizeBytes: number }): Tmpfs {
    if (process.getuid?.() !== 0) throw new Error('mounting a tmpfs needs root (uid 0)');
    mkdirSync(o.mountPoint, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${o.sizeBytes}`, o.name, o.mountPoint], { stdio: ['ignore', 'ignore', 'pipe'] });
    return new Tmpfs(o.name, o.mountPoint);
  }

  private get fillerPath(): string {
    return join(this.mountPoint, 'filler');
  }

  /** Writes a file until the filesystem refuses (ENOSPC); answers the bytes written. */
  fill(): number {
    const fd = openSync(this.fillerPath, 'a');
    const chunk = Buffer.alloc(FILL_CHUNK_BYTES);
    let written = 0;
    try {
      // Whole chunks, then smaller ones: leave no room at all.
      for (let size = FILL_CHUNK_BYTES; size >= 512; size = Math.floor(size / 4)) {
        for (;;) {
          try {
            written += writeSync(fd, chunk, 0, size);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
            throw err;
          }
        }
      }
    } finally {
      closeSync(fd);
    }
    return written;
  }

  /** Space returns. */
  free(): void {
    rmSync(this.fillerPath, { force: true });
  }

  /** Unmounts (lazily, so a process still holding files cannot keep it). */
  unmount(): void {
    execFileSync('umount', ['-l', this.mountPoint], { stdio: ['ignore', 'ignore', 'pipe'] });
  }
}
