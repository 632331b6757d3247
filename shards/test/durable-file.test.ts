// Every file a node writes outside LMDB goes through one durable path: temp
// file, write, fsync the file, rename over the name, fsync the directory. A
// failure anywhere leaves the old file whole. No other code in the node's
// packages writes or renames files behind its back.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { NODE_FS, makeDirDurably, tempFileName, writeFileDurably, writeJsonDurably, type DurableFs } from '../src/storage/durable-file.js';
import { tempDir, useTempStores } from './support/fixtures.js';

useTempStores();

/** NODE_FS with every call recorded as "call path-or-target"; fds are named by the path they were opened at. */
function recordingFs(options: { failOn?: string; writeBytesMax?: number } = {}): { fs: DurableFs; calls: string[] } {
  const calls: string[] = [];
  const pathOf = new Map<number, string>();
  const record = (call: string) => {
    calls.push(call);
    if (options.failOn !== undefined && call.startsWith(options.failOn)) throw new Error(`injected failure: ${call}`);
  };
  const fs: DurableFs = {
    openSync(path, flags) {
      const fd = NODE_FS.openSync(path, flags);
      pathOf.set(fd, path);
      record(`open ${path} ${flags}`);
      return fd;
    },
    writeSync(fd, buffer, offset, length, position) {
      record(`write ${pathOf.get(fd)}`);
      return NODE_FS.writeSync(fd, buffer, offset, Math.min(length, options.writeBytesMax ?? length), position);
    },
    fsyncSync(fd) {
      record(`fsync ${pathOf.get(fd)}`);
      NODE_FS.fsyncSync(fd);
    },
    closeSync(fd) {
      calls.push(`close ${pathOf.get(fd)}`);
      NODE_FS.closeSync(fd);
      pathOf.delete(fd);
    },
    renameSync(from, to) {
      record(`rename ${from} -> ${to}`);
      NODE_FS.renameSync(from, to);
    },
    mkdirSync(path, o) {
      record(`mkdir ${path}`);
      return NODE_FS.mkdirSync(path, o);
    },
  };
  return { fs, calls };
}

describe('durable file writes', () => {
  it('writes a temp file, fsyncs it, renames it over the name and fsyncs the directory, in that order', () => {
    const dir = tempDir();
    const { fs, calls } = recordingFs();
    writeFileDurably({ dir, name: 'cluster.json', data: '{"a":1}\n', fs });
    const tmp = join(dir, tempFileName('cluster.json'));
    expect(calls).toEqual([
      `open ${tmp} w`,
      `write ${tmp}`,
      `fsync ${tmp}`,
      `close ${tmp}`,
      `rename ${tmp} -> ${join(dir, 'cluster.json')}`,
      `open ${dir} r`,
      `fsync ${dir}`,
      `close ${dir}`,
    ]);
    expect(readFileSync(join(dir, 'cluster.json'), 'utf8')).toBe('{"a":1}\n');
    expect(readdirSync(dir)).toEqual(['cluster.json']);
  });

  it('finishes a short write before syncing', () => {
    const dir = tempDir();
    const { fs, calls } = recordingFs({ writeBytesMax: 3 });
    const value = { members: [1, 2, 3], token: 'x'.repeat(40) };
    writeJsonDurably({ dir, name: 'NODE', value, fs });
    expect(JSON.parse(readFileSync(join(dir, 'NODE'), 'utf8'))).toEqual(value);
    const writes = calls.filter((c) => c.startsWith('write')).length;
    expect(writes).toBe(Math.ceil(`${JSON.stringify(value)}\n`.length / 3));
    expect(calls.indexOf(`fsync ${join(dir, 'NODE.tmp')}`)).toBeGreaterThan(calls.lastIndexOf(`write ${join(dir, 'NODE.tmp')}`));
  });

  for (const failOn of ['write', 'fsync', 'rename']) {
    it(`leaves the old file whole when the ${failOn} fails`, () => {
      const dir = tempDir();
      writeFileSync(join(dir, 'cluster.json'), 'old\n');
      const { fs } = recordingFs({ failOn });
      expect(() => writeFileDurably({ dir, name: 'cluster.json', data: 'new\n', fs })).toThrow(/injected failure/);
      expect(readFileSync(join(dir, 'cluster.json'), 'utf8')).toBe('old\n');
      // A retry overwrites whatever temp file the failure left.
      writeFileDurably({ dir, name: 'cluster.json', data: 'new\n' });
      expect(readFileSync(join(dir, 'cluster.json'), 'utf8')).toBe('new\n');
      expect(readdirSync(dir)).toEqual(['cluster.json']);
    });
  }

  it('creates missing parents and fsyncs the parent of each directory it created', () => {
    const root = tempDir();
    const { fs, calls } = recordingFs();
    makeDirDurably(join(root, 'a', 'b'), fs);
    expect(statSync(join(root, 'a', 'b')).isDirectory()).toBe(true);
    expect(calls.filter((c) => c.startsWith('fsync'))).toEqual([`fsync ${join(root, 'a')}`, `fsync ${root}`]);
  });

  it('is the only writer: no other module of shards, server or placement writes or renames files', () => {
    const repo = fileURLToPath(new URL('../../', import.meta.url));
    const durable = join(repo, 'shards', 'src', 'storage', 'durable-file.ts');
    const writers = /\b(writeFileSync|writeFile|appendFileSync|appendFile|renameSync|rename|createWriteStream|copyFileSync|copyFile|truncateSync)\s*\(/;
    const offenders: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (path.endsWith('.ts') && path !== durable) {
          readFileSync(path, 'utf8')
            .split('\n')
            .forEach((line, i) => {
              if (writers.test(line) && !/^\s*(\/\/|\*)/.test(line)) offenders.push(`${relative(repo, path)}:${i + 1}: ${line.trim()}`);
            });
        }
      }
    };
    for (const pkg of ['shards', 'server', 'placement']) walk(join(repo, pkg, 'src'));
    expect(offenders).toEqual([]);
  });
});
