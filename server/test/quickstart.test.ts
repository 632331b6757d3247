// The README's quickstart, run as written: `flotilla dev` (what `npm start`
// runs after the build), then every command of the quickstart block, with
// only the ports swapped for free ones and N for the version the first PUT returned.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePortRun } from '@flotilla/shards/test-support/node-cluster';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(ROOT, 'server', 'dist', 'cli.js');

function quickstartCommands(): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Quickstart'));
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  if (block === null) throw new Error('README has no quickstart sh block');
  return block[1]!.split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter((l) => l.length > 0);
}

describe('README quickstart', () => {
  let dev: ChildProcess | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-quickstart-'));

  afterAll(async () => {
    if (dev !== undefined && dev.exitCode === null) {
      const exited = new Promise((r) => dev!.once('exit', r));
      dev.kill('SIGINT');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('starts a 3-node dev cluster and every quickstart command works as written', async () => {
    const transportBase = (await freePortRun(3)).base;
    let httpBase = (await freePortRun(3)).base;
    while (Math.abs(httpBase - transportBase) <= 3) httpBase = (await freePortRun(3)).base;
    dev = spawn(process.execPath, [CLI, 'dev', '--dir', dir, '--port', String(transportBase), '--http-port', String(httpBase)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    dev.stdout!.on('data', (c: Buffer) => (out += c.toString()));
    const deadline = Date.now() + 30_000;
    while (!out.includes('Ctrl-C stops the cluster') && Date.now() < deadline && dev.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    expect(out).toContain('Ctrl-C stops the cluster');
    expect(out).toContain(`http://127.0.0.1:${httpBase + 3}`);

    const commands = quickstartCommands();
    expect(commands.length).toBeGreaterThanOrEqual(5);
    let version: string | undefined;
    const outputs: string[] = [];
    for (const written of commands) {
      const command = written
        .replace(/127\.0\.0\.1:810(\d)/g, (_m, d: string) => `127.0.0.1:${httpBase + Number(d)}`)
        .replace('node server/dist/cli.js', `${JSON.stringify(process.execPath)} ${JSON.stringify(CLI)}`)
        .replace(/"N"/, `"${version}"`);
      const { stdout } = await run('sh', ['-c', command], { cwd: ROOT, timeout: 20_000 });
      outputs.push(stdout);
      if (version === undefined) version = /"version":(\d+)/.exec(stdout)?.[1];
    }
    expect(version, 'the first PUT answers with a version').toMatch(/^\d+$/);
    expect(outputs[1]).toMatch(/^HTTP\/1\.1 200/);
    expect(outputs[1]).toContain('hello');
    expect(outputs[2]).toMatch(/"version":\d+/); // the conditional PUT matched
    expect(outputs[3]).toContain('"items"');
    expect(outputs[5]).toMatch(/ok, version \d+/);
    expect(JSON.parse(outputs[6]!)).toMatchObject({ left: { rangeId: 5, start: '60', end: '6d', epoch: 2 }, right: { start: '6d', end: '80', epoch: 2 } });
    expect(outputs[7]).toMatch(/^\d+ ranges, replication factor 3, scheduler running\nnode  state/);
    expect(JSON.parse(outputs[8]!)).toMatchObject({ rangeId: 5, ok: true, keyEncoding: 'hex', start: '60', end: '6d' });

    const exited = new Promise<number | null>((r) => dev!.once('exit', (code) => r(code)));
    dev.kill('SIGINT');
    expect(await exited).toBe(0);
  }, 90_000);
});
