// The `flotilla` command line: every command, its arguments and options, and its help (commander). The
// commands' work is in their own modules; this file only says what they take and maps the outcome to an
// exit code (exit-codes.ts).
import { readFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from '../logging.js';
import { bench, BENCH_SCRIPTS } from './bench.js';
import * as client from './client-commands.js';
import { dev } from './dev.js';
import { CliError, EXIT, EXIT_CODES_HELP, UsageError, type ExitCode } from './exit-codes.js';
import { OUTPUT_FORMATS, type OutputFormat } from './format.js';
import { NodeClient } from './node-client.js';
import type { StartOptions } from './start.js';
import { advertiseHostPortText, hostPortText, nodeUrl, nonNegativeInt, peerList, port, positiveInt, RANGE_COUNT_MAX_SHOWN, rangeCount, URL_DEFAULT } from './options.js';
import { status } from './status.js';

/**
 * The node's INITIAL_RANGE_COUNT_DEFAULT (node.ts), for the help text: importing node.ts would load the
 * whole node for `--help`. cli-format.test.ts checks the two agree.
 */
export const RANGE_COUNT_DEFAULT_SHOWN = 8;

/** The version of the installed @flotilla/server (dist/cli/program.js → package.json). */
export function cliVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

const ROOT_HELP_AFTER = `
Keys and values are UTF-8 text on the command line (the HTTP API takes any bytes); keys and values that
are not printable UTF-8 are shown as ${'0x'}<hex>, and as <name>Hex fields with -o json.

Client commands talk to the node at --url (default ${URL_DEFAULT}, node 1 of \`flotilla dev\`; the
environment variable FLOTILLA_URL sets another default). Any node serves any key.

Examples:
  flotilla dev                                      a 3-node cluster on loopback (what \`npm start\` runs)
  flotilla put greeting hello
  flotilla get greeting --url http://127.0.0.1:8103
  flotilla scan --start g --limit 10 -o json
  flotilla status

${EXIT_CODES_HELP}`;

/** Options every client command takes. */
function withUrl(command: Command): Command {
  return command.addOption(new Option('--url <url>', "the node's HTTP address").default(URL_DEFAULT).env('FLOTILLA_URL').argParser(nodeUrl));
}

function withOutput(command: Command): Command {
  return command.addOption(new Option('-o, --output <format>', 'table for people, json for programs').choices(OUTPUT_FORMATS).default('table'));
}

/** A key argument: any non-empty text. */
function keyArgument(value: string): string {
  if (value.length === 0) throw new InvalidArgumentError('Expected a key of at least one character.');
  return value;
}

interface Outcome {
  exitCode: number;
}

/** The program; `outcome.exitCode` is set by commands that end with a code of their own (dev, bench). */
export function buildProgram(outcome: Outcome): Command {
  const program = new Command('flotilla')
    .description('Flotilla: a multi-raft, range-partitioned key-value store. Run a node (start) or a local cluster (dev), or talk to a running node over HTTP.')
    .version(cliVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help (every command takes --help too)')
    .helpCommand('help [command]', 'show help for a command')
    // Options after a command belong to it, so `bench` can pass every one on to the benchmark.
    .enablePositionalOptions()
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(text.replace(/^error: /, 'flotilla: ')) })
    .showHelpAfterError('(flotilla --help lists the commands)')
    .addHelpText('after', ROOT_HELP_AFTER);

  const command = (name: string, summary: string): Command =>
    program
      .command(name)
      .summary(summary)
      .description(summary)
      .showHelpAfterError(`(flotilla ${name} --help shows its usage)`);
  const nodeOf = (options: { url: string }) => new NodeClient(options.url);

  command('dev', 'run a local cluster of node processes on loopback until Ctrl-C')
    .description(
      'Runs NODES `flotilla start` processes on loopback (node N: transport on PORT+N, HTTP on HTTP_PORT+N, data in DIR/node-N) ' +
        'until Ctrl-C or SIGTERM, which stop every node it started. When a node exits, the others keep serving and dev prints the ' +
        'exact command that restarts it (--restart: it restarts it itself).',
    )
    .option('--dir <dir>', 'data root (the data stays after Ctrl-C; the next dev reopens it)', './flotilla-dev')
    .option('--nodes <count>', 'nodes in the cluster', positiveInt, 3)
    .option('--port <port>', 'node N listens for its peers on PORT+N', port, 7100)
    .option('--http-port <port>', "node N's HTTP API listens on HTTP_PORT+N", port, 8100)
    .option('--ranges <count>', `ranges the key space starts split into (default ${RANGE_COUNT_DEFAULT_SHOWN}, at most ${RANGE_COUNT_MAX_SHOWN})`, rangeCount)
    .addOption(new Option('--log-level <level>', "the nodes' least severe log level (their logs go to stderr)").choices(LOG_LEVELS).default('warn'))
    .addOption(new Option('--log-format <format>', "the nodes' log lines: pretty for a person, json for tools").choices(LOG_FORMATS).default('pretty'))
    .option('--restart', 'start a node that exits again after a second (default: print the command that does)', false)
    .action(async (o: { dir: string; nodes: number; port: number; httpPort: number; ranges?: number; logLevel: LogLevel; logFormat: LogFormat; restart: boolean }) => {
      outcome.exitCode = await dev(o);
    });

  command('start', 'run one node in the foreground until SIGINT or SIGTERM')
    .description(
      'Runs one node until SIGINT or SIGTERM. Once it serves it prints one JSON line on stdout ({"ready":true,"http":URL,...}); ' +
        'its logs go to stderr. A static cluster: every member gets the same --peers (the others) and --ranges. A later node: ' +
        '--join through any member. A restart needs neither (the data directory remembers). Other nodes and clients are told ' +
        'the --advertise and --advertise-http addresses (default: --listen and --http), so a node listening on 0.0.0.0 must name ' +
        'the address it is reached at (docs/operations.md).',
    )
    .requiredOption('--id <id>', "(required) this node's id: a positive integer, unique in the cluster", positiveInt)
    .requiredOption('--dir <dir>', '(required) its data directory (created if missing; one node per directory)')
    .requiredOption('--listen <host:port>', '(required) where it listens for its peers (the transport); 0.0.0.0 (every interface) needs --advertise', hostPortText)
    .requiredOption('--http <host:port>', '(required) where its HTTP API listens; 0.0.0.0 (every interface) needs --advertise-http', hostPortText)
    .option('--advertise <host:port>', 'the transport address its peers dial, recorded in the meta range (default: --listen; never a wildcard)', advertiseHostPortText)
    .option('--advertise-http <host:port>', 'the HTTP address clients and other nodes are told, recorded in the meta range and printed in the ready line (default: --http; never a wildcard)', advertiseHostPortText)
    .option('--peers <list>', 'ID=HOST:PORT,... the transport addresses of the other members of a static cluster', peerList)
    .option('--cluster-token <token>', 'names a static cluster, so that two with the same members do not mix (with --peers)')
    .option('--join <url>', "joins a running cluster through any member's HTTP address, e.g. http://127.0.0.1:8101", nodeUrl)
    .option('--ranges <count>', `ranges the key space starts split into, on the first start (default ${RANGE_COUNT_DEFAULT_SHOWN}, at most ${RANGE_COUNT_MAX_SHOWN})`, rangeCount)
    .option('--cores <count>', 'worker threads, each with its own ranges and LMDB environment', positiveInt)
    .addOption(new Option('--log-level <level>', 'the least severe log level written (to stderr)').choices(LOG_LEVELS).default('info'))
    .addOption(new Option('--log-format <format>', 'json lines for tools, pretty for a person').choices(LOG_FORMATS).default('json'))
    .option('--tick-ms <ms>', 'the tick and heartbeat interval (default 100)', positiveInt)
    .option('--duty-ms <ms>', 'how often the node reports to the placement driver (default 1000)', positiveInt)
    .option('--down-after-ms <ms>', 'when the placement driver calls a silent node down (default 30000)', positiveInt)
    .option('--consistency-check-ms <ms>', 'least time between background consistency checks of a range this node leads; 0: off (default 600000)', nonNegativeInt)
    .option('--no-node-leases', "confirm every linearizable read with a heartbeat round instead of a node lease (for machines whose clocks can't be trusted to run near the same rate)")
    // Loaded when run: the node's modules (LMDB, fastify, workers) would slow every other command's start.
    .action(async (o: StartOptions) => (await import('./start.js')).start(o));

  withUrl(command('put', 'write a key'))
    .argument('<key>', 'the key, as text', keyArgument)
    .argument('<value>', 'the value, as text')
    .option('--if-version <version>', 'write only if the key is at this version now (else exit code 4)', positiveInt)
    .action((key: string, value: string, o: { url: string; ifVersion?: number }) => client.put(nodeOf(o), key, value, o));

  withUrl(command('get', "read a key's value (linearizable unless --stale)"))
    .argument('<key>', 'the key, as text', keyArgument)
    .option('--stale', "read this node's replica without asking the leader (answers without a quorum, may be behind)", false)
    .addOption(new Option('-o, --output <format>', 'value: the value alone on stdout, its version on stderr; table or json: key, version and value').choices(['value', ...OUTPUT_FORMATS]).default('value'))
    .action((key: string, o: { url: string; stale: boolean; output: OutputFormat | 'value' }) => client.get(nodeOf(o), key, o));

  withUrl(command('del', 'delete a key (an absent key is fine)'))
    .argument('<key>', 'the key, as text', keyArgument)
    .option('--if-version <version>', 'delete only if the key is at this version now (else exit code 4)', positiveInt)
    .action((key: string, o: { url: string; ifVersion?: number }) => client.del(nodeOf(o), key, o));

  withUrl(withOutput(command('scan', 'list keys in order, one page at a time')))
    .option('--start <key>', 'first key (inclusive)')
    .option('--end <key>', 'end key (exclusive)')
    .option('--limit <count>', 'keys per page at most (default 100)', positiveInt)
    .option('--cursor <cursor>', 'continue after the page that printed this cursor')
    .option('--stale', "read this node's replicas without asking the leaders", false)
    .action((o: { url: string; start?: string; end?: string; limit?: number; cursor?: string; stale: boolean; output: OutputFormat }) => client.scan(nodeOf(o), o));

  withUrl(withOutput(command('status', 'the cluster at a glance: nodes, replicas, leaders, operators in flight, readiness')))
    .description(
      "The placement driver's view of every node (state, replicas, leaders, load, disk) and the operators in flight, then " +
        "whether the node asked is ready. Needs no quorum: without one it shows the node's own view. -o json prints the driver's view as the API answers it.",
    )
    .addOption(new Option('--json', 'the same as -o json').hideHelp())
    .action((o: { url: string; output: OutputFormat; json?: boolean }) => status(nodeOf(o), { output: o.json === true ? 'json' : o.output }));

  withUrl(withOutput(command('ranges', 'the ranges the node holds a replica of: bounds, leader, replicas')))
    .action((o: { url: string; output: OutputFormat }) => client.ranges(nodeOf(o), o));

  withUrl(withOutput(command('split', 'split a range at a key, which becomes the right half\'s first key')))
    .argument('<range-id>', 'the range (see `flotilla ranges`)', positiveInt)
    .argument('<key>', 'the split key, as text', keyArgument)
    .action((rangeId: number, key: string, o: { url: string; output: OutputFormat }) => client.split(nodeOf(o), rangeId, key, o));

  withUrl(command('merge', 'merge a range into its left neighbour (both with the same voters)'))
    .argument('<range-id>', 'the range (the right one of the two)', positiveInt)
    .action((rangeId: number, o: { url: string }) => client.merge(nodeOf(o), rangeId));

  withUrl(command('move', "move a range's replica from one node to another"))
    .argument('<range-id>', 'the range', positiveInt)
    .argument('<from-node>', 'a node that holds a replica of it', positiveInt)
    .argument('<to-node>', 'a node that does not', positiveInt)
    .action((rangeId: number, from: number, to: number, o: { url: string }) => client.move(nodeOf(o), rangeId, from, to));

  withUrl(command('transfer-leader', "move a range's leadership to another of its replicas"))
    .argument('<range-id>', 'the range', positiveInt)
    .argument('<to-node>', 'a node that holds a replica of it', positiveInt)
    .action((rangeId: number, to: number, o: { url: string }) => client.transferLeader(nodeOf(o), rangeId, to));

  withUrl(command('decommission', "move every replica off a node (recommission undoes it)"))
    .argument('<node-id>', 'the node', positiveInt)
    .action((nodeId: number, o: { url: string }) => client.nodeState(nodeOf(o), nodeId, 'decommission'));

  withUrl(command('recommission', 'let a decommissioning node keep and take replicas again'))
    .argument('<node-id>', 'the node', positiveInt)
    .action((nodeId: number, o: { url: string }) => client.nodeState(nodeOf(o), nodeId, 'recommission'));

  withUrl(command('pause', 'the placement driver plans nothing until resume'))
    .action((o: { url: string }) => client.placementSettings(nodeOf(o), { paused: true }));

  withUrl(command('resume', 'the placement driver plans again'))
    .action((o: { url: string }) => client.placementSettings(nodeOf(o), { paused: false }));

  withUrl(command('replication-factor', 'set how many replicas each range gets (1 to 7; fewer while fewer nodes can hold one)'))
    .argument('<count>', 'replicas per range', positiveInt)
    .action((count: number, o: { url: string }) => client.placementSettings(nodeOf(o), { replicationFactor: count }));

  command('bench', 'run a benchmark of @flotilla/bench (flotilla bench --help lists its flags)')
    .description(
      `Runs ycsb-bench (the workloads against one target), or ${[...BENCH_SCRIPTS.keys()].map((k) => `\`bench ${k}\``).join(', ')}, with every ` +
        'argument after it; `flotilla bench --help` and `flotilla bench compare --help` print their flags, bench/README.md explains them. ' +
        'Needs the repository (npm ci && npm run build).',
    )
    .usage('[compare|soak] [benchmark flags...]')
    .helpOption(false)
    .passThroughOptions()
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (args: string[]) => {
      outcome.exitCode = await bench(args);
    });

  return program;
}

/** Runs the command line `argv` (without node and the script); resolves with the exit code. */
export async function run(argv: readonly string[]): Promise<number> {
  const outcome: Outcome = { exitCode: EXIT.ok };
  const program = buildProgram(outcome);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return outcome.exitCode;
  } catch (err) {
    return failed(err, argv);
  }
}

/** Prints why the command failed (one line, no stack trace unless it is our bug) and returns its exit code. */
function failed(err: unknown, argv: readonly string[]): number {
  if (err instanceof CommanderError) {
    // commander printed it already (help, version, or the usage error with its hint). Help shown because
    // no command was given is a usage error too.
    return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (err instanceof UsageError) {
    const name = err.command ?? argv[0];
    console.error(`flotilla: ${err.message}\n(flotilla ${name ?? ''}${name === undefined ? '' : ' '}--help shows its usage)`);
    return err.exitCode;
  }
  if (err instanceof CliError) {
    console.error(`flotilla: ${err.message}`);
    return err.exitCode;
  }
  const e = err as { code?: unknown; message?: unknown; stack?: unknown };
  if (typeof e.code === 'string' && typeof e.message === 'string') {
    // An expected failure with a stable code (DATA_DIR_LOCKED, EADDRINUSE, ...): its message says it all.
    console.error(`flotilla: ${e.code}: ${e.message}`);
    return startRefusalExit(e.code);
  }
  // Our bug: the stack is what a report of it needs.
  console.error(`flotilla: internal error: ${typeof e.stack === 'string' ? e.stack : String(err)}`);
  return EXIT.internal;
}

/**
 * How `start` ends when it refuses to run. A data directory that does not fit the flags (another node's,
 * another --cores, another cluster, damaged, a newer format) is a condition a restart cannot change:
 * precondition failed, which a service manager should not retry (docs/operations.md). One held by
 * another process, or a port in use, may clear: unavailable. Anything else with a code is still ours.
 */
export function startRefusalExit(code: string): ExitCode {
  if (code === 'DATA_DIR_LOCKED' || code === 'EADDRINUSE' || code === 'EADDRNOTAVAIL') return EXIT.unavailable;
  if (code.startsWith('DATA_DIR_')) return EXIT.preconditionFailed;
  return EXIT.internal;
}
