// The power-failure emulator itself (test-support/power-failure/): after SIGKILL and a rebuild from the
// durable image, a directory holds exactly what POSIX promises survives a power cut — data that was
// synced, in entries that were synced — and, in metadata mode, every entry change without the data.
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { PowerFailDisk, buildPowerFailTools, type PowerFailMode, type PowerFailTools } from '../test-support/power-failure/power-failure.js';

const root = mkdtempSync(join(tmpdir(), 'flotilla-powerfail-shim-'));
const built = buildPowerFailTools(join(root, 'bin'));
if ('unavailable' in built) console.warn(`power-failure emulator tests skipped: ${built.unavailable}`);
const tools = 'unavailable' in built ? undefined : built;
afterAll(() => rmSync(root, { recursive: true, force: true }));

let diskCount = 0;
const disks: string[] = [];
afterEach(() => {
  for (const d of disks.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A watched directory holding `files` (durable: they were there before any process under the shim ran). */
function diskWith(mode: PowerFailMode, files: Record<string, string> = {}): PowerFailDisk {
  const base = join(root, `disk-${diskCount++}`);
  disks.push(base);
  const disk = new PowerFailDisk({ tools: tools!, dir: join(base, 'dir'), imageDir: join(base, 'image'), mode });
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(disk.dir, name, '..'), { recursive: true });
    writeFileSync(join(disk.dir, name), text);
  }
  return disk;
}

/** Runs fsops under the shim in the watched directory; `crashAt` makes it die at that durability event. */
function fsops(disk: PowerFailDisk, ops: string[], options: { crashAt?: number } = {}): { status: number | null; signal: NodeJS.Signals | null } {
  const result = spawnSync(tools!.fsopsPath, ops, { cwd: disk.dir, env: disk.env({ crashAtEvent: options.crashAt }), encoding: 'utf8' });
  if (result.status !== 0 && result.signal === null) throw new Error(`fsops ${ops.join(' ')} failed: ${result.stderr}`);
  return { status: result.status, signal: result.signal };
}

/** Runs the operations, then the power failure: fsops kills itself and the directory is rebuilt from the image. */
function powerFailAfter(disk: PowerFailDisk, ops: string[]): void {
  expect(fsops(disk, [...ops, 'crash']).signal).toBe('SIGKILL');
  disk.restore();
}

const read = (disk: PowerFailDisk, name: string): string | undefined => (existsSync(join(disk.dir, name)) ? readFileSync(join(disk.dir, name), 'utf8') : undefined);

describe.skipIf(tools === undefined)('power-failure emulator, strict mode: only synced data in synced entries survives', () => {
  it('drops a write that was never synced', () => {
    const disk = diskWith('strict', { a: 'old' });
    powerFailAfter(disk, ['write', 'a', 'new']);
    expect(read(disk, 'a')).toBe('old');
  });

  it('keeps a write once the file was fsynced (an existing entry needs no directory sync)', () => {
    const disk = diskWith('strict', { a: 'old' });
    powerFailAfter(disk, ['write', 'a', 'new', 'fsync', 'a']);
    expect(read(disk, 'a')).toBe('new');
  });

  it('drops a new file that was fsynced while its directory was not', () => {
    const disk = diskWith('strict');
    powerFailAfter(disk, ['write', 'b', 'data', 'fsync', 'b']);
    expect(read(disk, 'b')).toBeUndefined();
  });

  it('keeps a new file once both the file and its directory were fsynced', () => {
    const disk = diskWith('strict');
    powerFailAfter(disk, ['write', 'b', 'data', 'fsync', 'b', 'fsync', '.']);
    expect(read(disk, 'b')).toBe('data');
  });

  it('gives an empty file when the directory was synced but the file was not', () => {
    const disk = diskWith('strict');
    powerFailAfter(disk, ['write', 'b', 'data', 'fsync', '.']);
    expect(read(disk, 'b')).toBe('');
  });

  it('keeps the old name after a rename whose directory was not synced, the new one after a directory fsync', () => {
    const unsynced = diskWith('strict', { 'x.tmp': 'v1' });
    powerFailAfter(unsynced, ['rename', 'x.tmp', 'x']);
    expect([read(unsynced, 'x.tmp'), read(unsynced, 'x')]).toEqual(['v1', undefined]);

    const synced = diskWith('strict', { 'x.tmp': 'v1' });
    powerFailAfter(synced, ['rename', 'x.tmp', 'x', 'fsync', '.']);
    expect([read(synced, 'x.tmp'), read(synced, 'x')]).toEqual([undefined, 'v1']);
  });

  it('replaces a file durably only through temp file, fsync, rename and directory fsync', () => {
    const disk = diskWith('strict', { config: 'v1' });
    powerFailAfter(disk, ['write', 'config.tmp', 'v2', 'fsync', 'config.tmp', 'rename', 'config.tmp', 'config', 'fsync', '.', 'write', 'config.tmp', 'v3', 'rename', 'config.tmp', 'config']);
    expect([read(disk, 'config'), read(disk, 'config.tmp')]).toEqual(['v2', undefined]);
  });

  it('keeps an unlinked file until its directory is synced', () => {
    const unsynced = diskWith('strict', { a: 'kept' });
    powerFailAfter(unsynced, ['unlink', 'a']);
    expect(read(unsynced, 'a')).toBe('kept');
    const synced = diskWith('strict', { a: 'kept' });
    powerFailAfter(synced, ['unlink', 'a', 'fsync', '.']);
    expect(read(synced, 'a')).toBeUndefined();
  });

  it('keeps a new directory only when its parent was synced, and its files only when it was', () => {
    const disk = diskWith('strict');
    powerFailAfter(disk, ['mkdir', 'd', 'write', 'd/f', 'x', 'fsync', 'd/f', 'fsync', '.', 'mkdir', 'e', 'write', 'e/f', 'y', 'fsync', 'e/f', 'fsync', 'e']);
    expect(statSync(join(disk.dir, 'd')).isDirectory()).toBe(true);
    expect(read(disk, 'd/f')).toBeUndefined(); // d was never synced: its entry for f is not durable
    expect(existsSync(join(disk.dir, 'e'))).toBe(false); // e's entry in the parent was never synced
  });

  it('copies only the synced bytes of a file written in several places (pwrite, writev, append, fdatasync)', () => {
    const disk = diskWith('strict', { a: 'aaaaaaaa' });
    powerFailAfter(disk, ['pwrite', 'a', '2', 'bb', 'fdatasync', 'a', 'pwrite', 'a', '6', 'cc', 'append', 'a', 'dd']);
    expect(read(disk, 'a')).toBe('aabbaaaa');

    const appended = diskWith('strict', { a: 'aaaa' });
    powerFailAfter(appended, ['append', 'a', 'bb', 'fsync', 'a', 'writev', 'c', 'x', 'y', 'fsync', 'c', 'fsync', '.']);
    expect([read(appended, 'a'), read(appended, 'c')]).toEqual(['aaaabb', 'xy']);
  });

  it('takes a size change at the next fsync only', () => {
    const disk = diskWith('strict', { a: 'abcdef', b: 'abcdef' });
    powerFailAfter(disk, ['truncate', 'a', '2', 'truncate', 'b', '2', 'fsync', 'b']);
    expect([read(disk, 'a'), read(disk, 'b')]).toEqual(['abcdef', 'ab']);
  });

  it('makes a write through an O_DSYNC descriptor durable at once, and nothing else of the file', () => {
    const disk = diskWith('strict', { a: 'aaaaaaaa' });
    powerFailAfter(disk, ['pwrite', 'a', '0', 'xx', 'dsync', 'a', '4', 'yy']);
    expect(read(disk, 'a')).toBe('aaaayyaa');
  });

  it('makes bytes written through a shared mapping durable at msync or the file\'s fsync, not at munmap', () => {
    const disk = diskWith('strict', { a: 'aaaaaaaa', b: 'aaaaaaaa', c: 'aaaaaaaa' });
    powerFailAfter(disk, ['mmap', 'a', '1', 'xy', 'msync', 'b', '1', 'xy', 'mmap', 'c', '1', 'xy', 'fsync', 'c']);
    expect([read(disk, 'a'), read(disk, 'b'), read(disk, 'c')]).toEqual(['aaaaaaaa', 'axyaaaaa', 'axyaaaaa']);
  });

  it('restores hard links and symlinks whose entries were synced', () => {
    const disk = diskWith('strict', { a: 'shared' });
    powerFailAfter(disk, ['link', 'a', 'b', 'symlink', 'a', 'c', 'fsync', '.']);
    expect(statSync(join(disk.dir, 'a')).ino).toBe(statSync(join(disk.dir, 'b')).ino);
    expect(lstatSync(join(disk.dir, 'c')).isSymbolicLink() && readlinkSync(join(disk.dir, 'c'))).toBe('a');
  });

  it('counts durability events and crashes at the one asked for, before it takes effect', () => {
    const ops = ['write', 'a', 'x', 'fsync', 'a', 'fsync', '.', 'write', 'b', 'y', 'fsync', 'b', 'fsync', '.'];
    const full = diskWith('strict');
    expect(fsops(full, ops).status).toBe(0);
    expect(full.events().map((e) => `${e.index} ${e.kind} ${e.path.slice(realpathSync(full.dir).length)}`)).toEqual(['1 fsync /a', '2 fsync-dir ', '3 fsync /b', '4 fsync-dir ']);
    for (const [crashAt, expected] of [[2, [undefined, undefined]], [3, ['x', undefined]], [4, ['x', undefined]], [5, ['x', 'y']]] as const) {
      const disk = diskWith('strict');
      expect(fsops(disk, ops, { crashAt }).signal).toBe(crashAt <= 4 ? 'SIGKILL' : null);
      disk.restore();
      expect([crashAt, read(disk, 'a'), read(disk, 'b')]).toEqual([crashAt, ...expected]);
    }
  });

  it('keeps what an earlier process left unsynced when a later one fsyncs the file (the page cache outlives processes)', () => {
    const disk = diskWith('strict', { a: 'old' });
    expect(fsops(disk, ['write', 'a', 'new']).status).toBe(0);
    powerFailAfter(disk, ['fsync', 'a']);
    expect(read(disk, 'a')).toBe('new');
  });

  it('starts a new image after a power failure: what was restored is durable, the boot id changes', () => {
    const disk = diskWith('strict', { a: 'v1' });
    const bootId = () => spawnSync(process.execPath, ['-p', 'require("fs").readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim()'], { env: disk.env(), encoding: 'utf8' }).stdout.trim();
    const first = bootId();
    powerFailAfter(disk, ['write', 'b', 'v2', 'fsync', 'b', 'fsync', '.']);
    expect(bootId()).not.toBe(first);
    powerFailAfter(disk, ['write', 'a', 'lost', 'write', 'b', 'lost']);
    expect([read(disk, 'a'), read(disk, 'b')]).toEqual(['v1', 'v2']);
  });
});

describe.skipIf(tools === undefined)('power-failure emulator, metadata mode: every entry change survives, data only once synced', () => {
  it('leaves a renamed file that was never fsynced empty (the zero-length file after a crash)', () => {
    const disk = diskWith('metadata');
    const ops = ['write', 'config.tmp', 'v1', 'rename', 'config.tmp', 'config'];
    expect(fsops(disk, ops).status).toBe(0);
    expect(disk.events().map((e) => `${e.kind} ${e.path.slice(realpathSync(disk.dir).length)}`)).toEqual(['create /config.tmp', 'rename /config']);
    disk.restore();
    expect([read(disk, 'config'), read(disk, 'config.tmp')]).toEqual(['', undefined]);
  });

  it('keeps a file written through the durable path whole', () => {
    const disk = diskWith('metadata');
    powerFailAfter(disk, ['write', 'config.tmp', 'v1', 'fsync', 'config.tmp', 'rename', 'config.tmp', 'config', 'fsync', '.']);
    expect(read(disk, 'config')).toBe('v1');
  });

  it('makes creates, unlinks and mkdirs durable without a directory fsync', () => {
    const disk = diskWith('metadata', { old: 'x' });
    powerFailAfter(disk, ['mkdir', 'd', 'write', 'd/f', 'data', 'unlink', 'old']);
    expect([statSync(join(disk.dir, 'd')).isDirectory(), read(disk, 'd/f'), read(disk, 'old')]).toEqual([true, '', undefined]);
  });
});

describe.skipIf(tools === undefined)('power-failure emulator under Node: fs calls go through the shim', () => {
  const nodeScript = `
    const fs = require('node:fs');
    const path = require('node:path');
    const dir = process.argv[1];
    // The durable path (shards' writeJsonDurably): temp file, fsync, rename, fsync of the directory.
    const fd = fs.openSync(path.join(dir, 'durable.tmp'), 'w');
    fs.writeSync(fd, 'durable');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(path.join(dir, 'durable.tmp'), path.join(dir, 'durable'));
    const dirFd = fs.openSync(dir, 'r');
    fs.fsyncSync(dirFd);
    fs.closeSync(dirFd);
    // writeFileSync and renameSync, nothing synced.
    fs.writeFileSync(path.join(dir, 'quick.tmp'), 'quick');
    fs.renameSync(path.join(dir, 'quick.tmp'), path.join(dir, 'quick'));
    process.kill(process.pid, 'SIGKILL');`;

  for (const [mode, quick] of [['strict', undefined], ['metadata', '']] as const) {
    it(`${mode}: writeFileSync + renameSync ${quick === undefined ? 'leaves no file' : 'leaves an empty file'}; the durable path keeps its bytes`, () => {
      const disk = diskWith(mode);
      const result = spawnSync(process.execPath, ['-e', nodeScript, disk.dir], { env: disk.env(), encoding: 'utf8' });
      expect([result.signal, result.stderr]).toEqual(['SIGKILL', '']);
      disk.restore();
      expect([read(disk, 'durable'), read(disk, 'quick'), read(disk, 'quick.tmp')]).toEqual(['durable', quick, undefined]);
    });
  }
});
