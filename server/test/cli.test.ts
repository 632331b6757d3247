// `flotilla` as a new user meets it: the built CLI run as a child process. Help on every command, the
// version, usage errors with exit code 2 and no stack trace, an unreachable node (5) named with its
// address, and a one-node cluster: a key not found (3), a stale --if-version (4), output as text or JSON.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePorts } from '@flotilla/shards/test-support/node-cluster';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, STACK_FRAME } from './support/cli-run.js';
import { killNodeProcess, startNodeProcess, type NodeProcess } from './support/node-process.js';

const PACKAGE_VERSION = (JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'package.json'), 'utf8')) as { version: string }).version;
const COMMANDS = ['dev', 'start', 'put', 'get', 'del', 'scan', 'status', 'ranges', 'split', 'move', 'transfer-leader', 'decommission', 'recommission', 'pause', 'resume', 'replication-factor'];

describe('flotilla: help, version, usage errors', () => {
  it('--help and -h list every command and the exit codes', async () => {
    for (const flag of ['--help', '-h']) {
      const run = await runCli([flag]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toContain('Usage: flotilla');
      for (const command of [...COMMANDS, 'bench']) expect(run.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
      expect(run.stdout).toMatch(/Exit codes:\n\s+0\s+ok\n\s+1\s+internal[\s\S]*\n\s+2\s+usage[\s\S]*\n\s+3\s+not found[\s\S]*\n\s+4\s+precondition failed[\s\S]*\n\s+5\s+unavailable/);
    }
  });

  it('--version prints the version of @flotilla/server', async () => {
    const run = await runCli(['--version']);
    expect(run).toEqual({ code: 0, stdout: `${PACKAGE_VERSION}\n`, stderr: '' });
  });

  it('every command has --help, with its arguments and options, exit code 0', async () => {
    for (const command of COMMANDS) {
      const run = await runCli([command, '--help']);
      expect(run.code, `${command}: ${run.stderr}`).toBe(0);
      expect(run.stdout).toContain(`Usage: flotilla ${command}`);
    }
    const start = await runCli(['start', '--help']);
    for (const option of ['--id <id>', '--dir <dir>', '--listen <host:port>', '--http <host:port>', '--peers <list>', '--join <url>', '--log-level <level>', '--log-format <format>']) expect(start.stdout).toContain(option);
    expect((await runCli(['help', 'put'])).stdout).toContain('Usage: flotilla put [options] <key> <value>');
  });

  it.each([
    ['no command', [], /Usage: flotilla/],
    ['an unknown command', ['nope'], /^flotilla: unknown command 'nope'/],
    ['an unknown option', ['put', 'k', 'v', '--nope'], /^flotilla: unknown option '--nope'/],
    ['too many arguments', ['put', 'a', 'b', 'c'], /^flotilla: too many arguments for 'put'. Expected 2 arguments but got 3\./],
    ['a missing argument', ['move', '2', '1'], /^flotilla: missing required argument 'to-node'/],
    ['a missing required option', ['start', '--id', '1'], /^flotilla: required option '--dir <dir>' not specified/],
    ['a bad --log-level', ['dev', '--log-level', 'loud'], /^flotilla: option '--log-level <level>' argument 'loud' is invalid\. Allowed choices are fatal, error, warn, info, debug, trace, silent\./],
    ['a bad --log-format', ['start', '--log-format', 'xml'], /^flotilla: option '--log-format <format>' argument 'xml' is invalid\. Allowed choices are json, pretty\./],
    ['a non-number', ['dev', '--nodes', 'three'], /^flotilla: option '--nodes <count>' argument 'three' is invalid\. Expected a positive integer\./],
    ['a bad --url', ['get', 'k', '--url', 'ftp://x'], /^flotilla: option '--url <url>' argument 'ftp:\/\/x' is invalid/],
    ['an empty key', ['put', '', 'v'], /^flotilla: command-argument value '' is invalid for argument 'key'/],
    ['a bad -o', ['status', '-o', 'yaml'], /^flotilla: option '-o, --output <format>' argument 'yaml' is invalid\. Allowed choices are table, json\./],
    ['options that exclude each other', ['start', '--id', '1', '--dir', 'd', '--listen', '127.0.0.1:1', '--http', '127.0.0.1:2', '--peers', '2=127.0.0.1:3', '--join', 'http://127.0.0.1:4'], /^flotilla: start takes --join URL or --peers, not both\n\(flotilla start --help shows its usage\)/],
    ['dev ports that overlap', ['dev', '--port', '7100', '--http-port', '7101'], /^flotilla: --port 7100 and --http-port 7101 overlap/],
  ])('%s is a usage error: exit code 2, one message, no stack trace', async (_name, args, message) => {
    const run = await runCli(args);
    expect(run.code, run.stderr).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(run.stderr).not.toMatch(STACK_FRAME);
    expect(run.stdout).toBe('');
  });

  it('a node that is not there: exit code 5, naming the address and the cause', async () => {
    // A port nothing listens on: free now, and nothing here binds it.
    const [port] = await freePorts(1);
    for (const args of [['get', 'k'], ['status'], ['put', 'k', 'v'], ['scan', '-o', 'json']]) {
      const run = await runCli([...args, '--url', `http://127.0.0.1:${port}`]);
      expect(run.code, run.stderr).toBe(5);
      expect(run.stderr).toBe(`flotilla: cannot reach http://127.0.0.1:${port}: connection refused (is a node running there? --url chooses the node)\n`);
    }
    // FLOTILLA_URL is the default --url.
    const fromEnv = await runCli(['get', 'k'], { env: { FLOTILLA_URL: `127.0.0.1:${port}` } });
    expect(fromEnv.code).toBe(5);
    expect(fromEnv.stderr).toContain(`cannot reach http://127.0.0.1:${port}`);
  });
});

describe('flotilla against a one-node cluster', () => {
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-cli-'));
  let node: NodeProcess | undefined;
  let url = '';
  const cli = (...args: string[]) => runCli([...args, '--url', url]);

  beforeAll(async () => {
    const [transport, http] = await freePorts(2);
    node = await startNodeProcess(1, ['--dir', dir, '--listen', `127.0.0.1:${transport}`, '--http', `127.0.0.1:${http}`, '--ranges', '2', '--cores', '1', '--log-level', 'error']);
    url = node.url;
  });

  afterAll(async () => {
    if (node !== undefined) await killNodeProcess(node);
    rmSync(dir, { recursive: true, force: true });
  });

  it('put, get, scan and del; a key not found is exit code 3, a stale --if-version 4', async () => {
    const put = await cli('put', 'greeting', 'hello');
    expect(put.code, put.stderr).toBe(0);
    const version = Number(/^ok, version (\d+)\n$/.exec(put.stdout)?.[1]);
    expect(version).toBeGreaterThan(0);

    expect(await cli('get', 'greeting')).toEqual({ code: 0, stdout: 'hello\n', stderr: `version ${version}\n` });
    expect(JSON.parse((await cli('get', 'greeting', '-o', 'json')).stdout)).toEqual({ key: 'greeting', value: 'hello', version });
    expect((await cli('get', 'greeting', '-o', 'table')).stdout).toMatch(new RegExp(`^key\\s+version\\s+value\\ngreeting\\s+${version}\\s+hello\\n$`));

    const missing = await cli('get', 'nope');
    expect(missing.code).toBe(3);
    expect(missing.stderr).toBe(`flotilla: get "nope": key not found (NOT_FOUND from ${url})\n`);

    const stale = await cli('put', 'greeting', 'again', '--if-version', String(version + 1));
    expect(stale.code).toBe(4);
    expect(stale.stderr).toContain('PRECONDITION_FAILED');

    await cli('put', 'line', 'a\tb');
    const scan = JSON.parse((await cli('scan', '-o', 'json')).stdout) as { items: { key: string; value: string }[]; cursor: string | null };
    expect(scan.items.map((i) => [i.key, i.value])).toEqual([['greeting', 'hello'], ['line', 'a\tb']]);
    expect(scan.cursor).toBeNull();
    expect((await cli('scan', '--start', 'h')).stdout).toMatch(/^key\s+version\s+value\nline\s+\d+\s+a\tb\n$/);

    expect((await cli('del', 'greeting')).stdout).toBe('ok\n');
    expect((await cli('get', 'greeting')).code).toBe(3);
  });

  it('status says a one-node cluster keeps one replica, in human units', async () => {
    const status = await cli('status');
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^\d+ ranges, replication factor 1 \(set to 3; 1 node can hold replicas\), scheduler running\n/);
    expect(status.stdout).toMatch(/^1\s+up\s+\d+\s+\d+\s+\d+\s+\d+(\.\d)? (B|KiB|MiB|GiB)\s+\d+\.\d (KiB|MiB|GiB|TiB)\s+/m);
    expect(JSON.parse((await cli('status', '-o', 'json')).stdout)).toMatchObject({ settings: { replicationFactor: 3 }, nodes: [{ nodeId: 1 }] });
  });

  it('ranges and split show keys as text, JSON names them', async () => {
    const ranges = JSON.parse((await cli('ranges', '-o', 'json')).stdout) as { ranges: { rangeId: number; start?: string; startHex?: string }[] };
    expect(ranges.ranges.find((r) => r.rangeId === 1)).toMatchObject({ start: '', endHex: '0001' });
    // --ranges 2: the meta range, then the user keys [0x0001, 0x80) and [0x80, ∞).
    expect(ranges.ranges.find((r) => r.rangeId === 2)).toMatchObject({ startHex: '0001', endHex: '80' });

    const split = await cli('split', '2', 'm');
    expect(split.code, split.stderr).toBe(0);
    expect(split.stdout).toMatch(/^ok, split range 2 at "m":\n  left\s+range 2\s+\[0x0001, "m"\)\s+epoch \d+\n  right\s+range \d+\s+\["m", 0x80\)\s+epoch \d+\n$/);
    const table = (await cli('ranges')).stdout;
    expect(table).toMatch(/^2\s+\[0x0001, "m"\)\s+1\s+1\s+\d+\s+leader$/m);
  });
});
