// The commands that talk to a running node over its HTTP API: keys (put, get, del, scan), ranges
// (ranges, split, merge, move, transfer-leader) and the placement driver (decommission, recommission, pause,
// resume, replication-factor). Data goes to stdout (a table, or JSON with -o json); errors are CliErrors.
import { CliError, EXIT } from './exit-codes.js';
import { bytesJson, columns, cut, keyText, printableText, table, valueText, type OutputFormat } from './format.js';
import { NodeClient, parseJson } from './node-client.js';

/** Characters of a value a scan table shows; -o json has every value whole. */
const SCAN_VALUE_CHARS_MAX = 60;

const keyPath = (key: string) => `/kv/${encodeURIComponent(key)}`;
const quoted = (key: string) => JSON.stringify(key);
const versionOf = (etag: string | null): number | undefined => (etag === null ? undefined : Number(etag.replace(/^W\//, '').replace(/"/g, '')));
const ifMatch = (ifVersion: number | undefined): Record<string, string> => (ifVersion === undefined ? {} : { 'if-match': `"${ifVersion}"` });

export async function put(client: NodeClient, key: string, value: string, o: { ifVersion?: number }): Promise<void> {
  const answer = await client.request('PUT', keyPath(key), { body: value, headers: ifMatch(o.ifVersion) });
  client.check(answer, `put ${quoted(key)}`);
  console.log(`ok, version ${versionOf(answer.headers.get('etag')) ?? '?'}`);
}

/** `get`: by default the value alone on stdout (for scripts and pipes) and its version on stderr; -o table|json adds the key and version. */
export async function get(client: NodeClient, key: string, o: { stale: boolean; output: OutputFormat | 'value' }): Promise<void> {
  const answer = await client.request('GET', `${keyPath(key)}${o.stale ? '?consistency=stale' : ''}`);
  client.check(answer, `get ${quoted(key)}`);
  const version = versionOf(answer.headers.get('etag'));
  const keyBytes = Buffer.from(key, 'utf8');
  switch (o.output) {
    case 'value':
      process.stdout.write(answer.body);
      process.stdout.write('\n');
      if (version !== undefined) console.error(`version ${version}`);
      return;
    case 'json':
      console.log(JSON.stringify({ ...bytesJson('key', keyBytes), ...bytesJson('value', answer.body, { multiline: true }), version: version ?? null }));
      return;
    case 'table':
      console.log(table(['key', 'version', 'value'], [[keyText(keyBytes), String(version ?? '?'), valueText(answer.body)]]));
      return;
  }
}

export async function del(client: NodeClient, key: string, o: { ifVersion?: number }): Promise<void> {
  const answer = await client.request('DELETE', keyPath(key), { headers: ifMatch(o.ifVersion) });
  client.check(answer, `del ${quoted(key)}`);
  console.log('ok');
}

interface ScanJson {
  items: { key: string; value: string; version: number }[];
  cursor: string | null;
}

/** `scan`: one page of keys in order; the page's cursor, if any, continues it (--cursor). */
export async function scan(client: NodeClient, o: { start?: string; end?: string; limit?: number; cursor?: string; stale: boolean; output: OutputFormat }): Promise<void> {
  const query = new URLSearchParams({ encoding: 'base64' });
  if (o.start !== undefined) query.set('start', o.start);
  if (o.end !== undefined) query.set('end', o.end);
  if (o.limit !== undefined) query.set('limit', String(o.limit));
  if (o.cursor !== undefined) query.set('cursor', o.cursor);
  if (o.stale) query.set('consistency', 'stale');
  const page = (await client.json('GET', `/kv?${query.toString()}`, { what: 'scan' })) as ScanJson;
  const items = page.items.map((item) => ({ key: Buffer.from(item.key, 'base64'), value: Buffer.from(item.value, 'base64'), version: item.version }));
  if (o.output === 'json') {
    console.log(JSON.stringify({ items: items.map((i) => ({ ...bytesJson('key', i.key), ...bytesJson('value', i.value, { multiline: true }), version: i.version })), cursor: page.cursor }));
    return;
  }
  if (items.length === 0) console.log('no keys in that range');
  else console.log(table(['key', 'version', 'value'], items.map((i) => [keyText(i.key), String(i.version), cut(valueText(i.value).replace(/\n/g, '⏎'), SCAN_VALUE_CHARS_MAX)])));
  if (page.cursor !== null) console.error(`more keys follow: add --cursor ${page.cursor} to continue`);
}

interface RangeJson {
  rangeId: number;
  start: string | null;
  end: string | null;
  epoch: number;
  leader: number;
  replicas: number[];
  learners?: number[];
  local?: { role: string };
}

/** One half of a split as the API answers it (bounds in hex). */
interface HalfJson {
  rangeId: number;
  start: string | null;
  end: string | null;
  epoch: number;
}

/** A range's bounds from the API's hex. */
const boundOf = (hex: string | null): Buffer | null => (hex === null ? null : Buffer.from(hex, 'hex'));
/** [start, end) for a person: text bounds quoted (a bound is often one byte, a space or a backtick), an open end ∞. */
const boundsText = (start: Buffer | null, end: Buffer | null) => `[${boundText(start ?? Buffer.alloc(0))}, ${end === null ? '∞' : boundText(end)})`;
const boundText = (bound: Buffer) => {
  const text = printableText(bound, { multiline: false });
  return text === undefined ? keyText(bound) : JSON.stringify(text);
};
const rangeJson = (r: RangeJson) => ({ rangeId: r.rangeId, ...bytesJson('start', boundOf(r.start)), ...bytesJson('end', boundOf(r.end)), epoch: r.epoch, leader: r.leader, replicas: r.replicas });

/** `ranges`: the ranges this node holds a replica of, with their bounds, leader and replicas. */
export async function ranges(client: NodeClient, o: { output: OutputFormat }): Promise<void> {
  const body = (await client.json('GET', '/ranges', { what: 'ranges' })) as { nodeId: number; ranges: RangeJson[] };
  if (o.output === 'json') {
    console.log(JSON.stringify({ nodeId: body.nodeId, ranges: body.ranges.map((r) => ({ ...rangeJson(r), learners: r.learners ?? [], role: r.local?.role ?? null })) }));
    return;
  }
  const rows = body.ranges.map((r) => [String(r.rangeId), boundsText(boundOf(r.start), boundOf(r.end)), r.leader === 0 ? 'none' : String(r.leader), r.replicas.join(','), String(r.epoch), r.local?.role ?? '']);
  console.log(`node ${body.nodeId} holds ${body.ranges.length} range${body.ranges.length === 1 ? '' : 's'}:`);
  console.log(table(['range', 'keys', 'leader', 'replicas', 'epoch', 'role here'], rows));
}

export async function split(client: NodeClient, rangeId: number, key: string, o: { output: OutputFormat }): Promise<void> {
  const body = (await client.json('POST', `/ranges/${rangeId}/split`, { body: { key }, what: `split range ${rangeId} at ${quoted(key)}` })) as { left: HalfJson; right: HalfJson };
  const halfJson = (h: HalfJson) => ({ rangeId: h.rangeId, ...bytesJson('start', boundOf(h.start)), ...bytesJson('end', boundOf(h.end)), epoch: h.epoch });
  if (o.output === 'json') {
    console.log(JSON.stringify({ left: halfJson(body.left), right: halfJson(body.right) }));
    return;
  }
  const half = (name: string, h: HalfJson) => [`  ${name}`, `range ${h.rangeId}`, boundsText(boundOf(h.start), boundOf(h.end)), `epoch ${h.epoch}`];
  console.log(`ok, split range ${rangeId} at ${boundText(Buffer.from(key, 'utf8'))}:`);
  console.log(columns([half('left', body.left), half('right', body.right)]));
}

export async function move(client: NodeClient, rangeId: number, from: number, to: number): Promise<void> {
  await client.json('POST', `/ranges/${rangeId}/move`, { body: { from, to }, what: `move range ${rangeId} from node ${from} to node ${to}` });
  console.log(`ok, moving range ${rangeId}'s replica from node ${from} to node ${to} (\`flotilla status\` shows it in flight)`);
}

export async function transferLeader(client: NodeClient, rangeId: number, to: number): Promise<void> {
  const op = (await client.json('POST', `/ranges/${rangeId}/transfer-leader`, { body: { to }, what: `transfer range ${rangeId}'s lead to node ${to}` })) as { from?: number };
  console.log(`ok, moving range ${rangeId}'s lead${op.from === undefined ? '' : ` from node ${op.from}`} to node ${to}`);
}

export async function merge(client: NodeClient, rangeId: number): Promise<void> {
  const op = (await client.json('POST', `/ranges/${rangeId}/merge`, { what: `merge range ${rangeId} into its left neighbour` })) as { targetId?: number };
  console.log(`ok, merging range ${rangeId} into range ${op.targetId ?? '(its left neighbour)'} (\`flotilla status\` shows it in flight)`);
}

export async function nodeState(client: NodeClient, nodeId: number, action: 'decommission' | 'recommission'): Promise<void> {
  const body = (await client.json('POST', `/nodes/${nodeId}/${action}`, { what: `${action} node ${nodeId}` })) as { state?: string };
  console.log(`ok, node ${nodeId} is ${body.state ?? (action === 'decommission' ? 'decommissioning' : 'up')}${action === 'decommission' ? ' (its replicas move off; `flotilla recommission` undoes it)' : ''}`);
}

/** pause, resume, replication-factor: one change of the driver's settings; prints the settings now. */
export async function placementSettings(client: NodeClient, change: { paused?: boolean; replicationFactor?: number }): Promise<void> {
  const what = change.paused !== undefined ? (change.paused ? 'pause' : 'resume') : `replication-factor ${change.replicationFactor}`;
  const answer = await client.request('PUT', '/placement/settings', { body: JSON.stringify(change), headers: { 'content-type': 'application/json' } });
  client.check(answer, what);
  const body = parseJson(answer, client.base, what) as { settings?: { paused?: unknown; replicationFactor?: unknown } };
  const settings = body.settings;
  if (typeof settings?.paused !== 'boolean' || typeof settings.replicationFactor !== 'number') throw new CliError(EXIT.internal, `${what}: ${client.base} answered settings the CLI does not understand`);
  console.log(`ok, scheduler ${settings.paused ? 'paused' : 'running'}, replication factor ${settings.replicationFactor}`);
}
