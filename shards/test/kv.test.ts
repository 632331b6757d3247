// The KV state machine over LMDB: what applying committed entries does to the
// data, the versions and the applied index, and the command codec's checks.
import { NONE, SeededRng, groupId, type Entry, type GroupId } from '@flotilla/core';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  ATOMIC_BATCH_OPS_MAX,
  CONTENT_TYPE_BYTES_MAX,
  KEY_BYTES_MAX,
  VALUE_BYTES_MAX,
  decodeBatchCommand,
  decodeCommand,
  encodeBatchCommand,
  encodeCommand,
  isBatchCommand,
  validateCommand,
  type KvCommand,
  type KvResult,
} from '../src/kv/command.js';
import { commandOutsideRange } from '../src/kv/range.js';
import { KvStateMachine } from '../src/kv/state-machine.js';
import { CorruptRecordError } from '../src/storage/errors.js';
import type { NodeStore } from '../src/storage/node-store.js';
import {
  SHARD,
  asyncErrorCode,
  bytes,
  commitAndApply,
  confState,
  deleteEntry,
  errorCode,
  openStore,
  putEntry,
  reopen,
  tempDir,
  useTempStores,
} from './support/fixtures.js';

useTempStores();

const TERM = 1;

async function newStore(): Promise<NodeStore> {
  const store = await openStore(tempDir());
  await store.createShard(SHARD, { confState: confState({ voters: [1, 2, 3] }) });
  return store;
}

/** Commits and applies one batch of commands as consecutive entries after the shard's last index. */
async function run(store: NodeStore, build: ((index: number) => Entry)[], shardId: GroupId = SHARD): Promise<KvResult[]> {
  const first = store.storage(shardId).lastIndex() + 1;
  const batch = build.map((b, i) => b(first + i));
  const results = await commitAndApply(store, shardId, batch);
  return batch.map((e) => results.get(e.index)!);
}

const put = (key: string, value: string, ifVersion?: number) => (index: number) => putEntry(index, TERM, bytes(key), bytes(value), ifVersion);
const del = (key: string, ifVersion?: number) => (index: number) => deleteEntry(index, TERM, bytes(key), ifVersion);
const text = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString());

describe('apply', () => {
  it('a staged apply whose transaction failed writes the same again: a split still creates its right half with the data', async () => {
    const store = await newStore();
    await run(store, [put('a', 'left'), put('x', 'right')]);
    const kv = new KvStateMachine(store);
    const index = store.storage(SHARD).lastIndex() + 1;
    const split: Entry = { index, term: TERM, type: 'normal', data: encodeCommand({ op: 'split', key: bytes('m'), newShardId: 1024, epoch: 1 }) };
    const previous = store.storage(SHARD).initialState().hardState;
    await store.persist([{ shardId: SHARD, entries: [split], hardState: { ...previous, commit: index } }]);
    const staged = kv.stage([{ shardId: SHARD, entries: [split], range: { start: new Uint8Array(0), end: null, epoch: 1 } }]);
    // The first attempt's transaction fails after the apply wrote into it (as a full disk makes a commit fail).
    expect(() =>
      store.env.transactionSync(() => {
        staged.write();
        throw new Error('ENOSPC');
      }),
    ).toThrow('ENOSPC');
    expect(store.hasShard(groupId(1024))).toBe(false);
    let outcome: ReturnType<typeof staged.write> | undefined;
    store.env.transactionSync(() => (outcome = staged.write()));
    staged.committed();
    expect(outcome!.results.get(SHARD)!.get(index)).toMatchObject({ ok: true });
    expect(outcome!.created.map((c) => c.shardId)).toEqual([1024]);
    expect(store.hasShard(groupId(1024))).toBe(true);
    expect(text(kv.get(bytes('x'))?.value)).toBe('right');
    expect(text(kv.get(bytes('a'))?.value)).toBe('left');
  });

  it('put then get returns the value and the version', async () => {
    const store = await newStore();
    const kv = new KvStateMachine(store);
    const [result] = await run(store, [put('a', 'one')]);
    expect(result).toEqual({ ok: true, version: 1, created: true });
    expect(text(kv.get(bytes('a'))?.value)).toBe('one');
    expect(kv.get(bytes('a'))?.version).toBe(1);
    expect(kv.get(bytes('b'))).toBeUndefined();
  });

  it('delete removes the key and reports version 0; deleting a missing key succeeds', async () => {
    const store = await newStore();
    const kv = new KvStateMachine(store);
    expect(await run(store, [put('a', 'one'), del('a'), del('never')])).toEqual([
      { ok: true, version: 1, created: true },
      { ok: true, version: 0 },
      { ok: true, version: 0 },
    ]);
    expect(kv.get(bytes('a'))).toBeUndefined();
  });

  // Each row runs after put('k', 'v1') at index 1 (version 1).
  const conditional: { name: string; command: (index: number) => Entry; result: KvResult; value: string | undefined }[] = [
    { name: 'put ifVersion 0 on an existing key', command: put('k', 'v2', 0), result: { ok: false, code: 'VERSION_MISMATCH', currentVersion: 1 }, value: 'v1' },
    { name: 'put ifVersion 0 on a missing key', command: put('fresh', 'x', 0), result: { ok: true, version: 2, created: true }, value: 'v1' },
    { name: 'put ifVersion matching', command: put('k', 'v2', 1), result: { ok: true, version: 2, created: false }, value: 'v2' },
    { name: 'put ifVersion stale', command: put('k', 'v2', 7), result: { ok: false, code: 'VERSION_MISMATCH', currentVersion: 1 }, value: 'v1' },
    { name: 'put ifVersion n on a missing key', command: put('fresh', 'x', 1), result: { ok: false, code: 'VERSION_MISMATCH', currentVersion: 0 }, value: 'v1' },
    { name: 'delete ifVersion matching', command: del('k', 1), result: { ok: true, version: 0 }, value: undefined },
    { name: 'delete ifVersion stale', command: del('k', 2), result: { ok: false, code: 'VERSION_MISMATCH', currentVersion: 1 }, value: 'v1' },
    { name: 'delete ifVersion 0 on an existing key', command: del('k', 0), result: { ok: false, code: 'VERSION_MISMATCH', currentVersion: 1 }, value: 'v1' },
    { name: 'delete ifVersion 0 on a missing key', command: del('fresh', 0), result: { ok: true, version: 0 }, value: 'v1' },
  ];
  for (const c of conditional) {
    it(`conditional ${c.name} → ${c.result.ok ? 'ok' : c.result.code}`, async () => {
      const store = await newStore();
      await run(store, [put('k', 'v1')]);
      expect(await run(store, [c.command])).toEqual([c.result]);
      expect(text(new KvStateMachine(store).get(bytes('k'))?.value)).toBe(c.value);
      expect(store.storage(SHARD).applied).toBe(2); // a refused command is still applied
    });
  }

  it('a key’s version is max(previous + 1, entry index): monotonic within a batch, across deletes and across shards', async () => {
    const store = await newStore();
    const kv = new KvStateMachine(store);
    await run(store, [put('pad', '1'), put('pad', '2'), put('pad', '3')]); // indexes 1..3
    // Within one batch each put sees the previous one's write.
    expect(await run(store, [put('k', 'a'), put('k', 'b'), put('k', 'c', 5)])).toEqual([
      { ok: true, version: 4, created: true },
      { ok: true, version: 5, created: false },
      { ok: true, version: 6, created: false },
    ]);
    // A delete and a re-put never reuse a version.
    expect(await run(store, [del('k'), put('k', 'd')])).toEqual([
      { ok: true, version: 0 },
      { ok: true, version: 8, created: true },
    ]);
    // Another shard's younger log (index 1) writing the same key keeps the version growing.
    const other = groupId(2);
    await store.createShard(other, { confState: confState({ voters: [1] }) });
    expect(await run(store, [put('k', 'e')], other)).toEqual([{ ok: true, version: 9, created: false }]);
    expect(kv.get(bytes('k'))).toMatchObject({ version: 9 });
  });

  it('the leader’s empty entry only advances the applied index; a conf change reports the epoch it moved to', async () => {
    const store = await newStore();
    const empty = (index: number): Entry => ({ index, term: TERM, type: 'normal', data: new Uint8Array(0) });
    const conf = (index: number): Entry => ({ index, term: TERM, type: 'confChange', data: bytes('{"changes":[]}') });
    const results = await run(store, [empty, conf, put('a', 'x')]);
    expect(results).toEqual([undefined, { ok: true, version: 0, membership: { epoch: 2, voters: [1, 2, 3], votersOutgoing: [], learners: [] } }, { ok: true, version: 3, created: true }]);
    expect(store.storage(SHARD).applied).toBe(3);
  });

  it('the applied index, the conf state and the data advance together and survive a reopen', async () => {
    let store = await newStore();
    const conf = confState({ voters: [1, 2, 3, 4] });
    const first = store.storage(SHARD).lastIndex() + 1;
    await commitAndApply(store, SHARD, [putEntry(first, TERM, bytes('a'), bytes('1')), putEntry(first + 1, TERM, bytes('b'), bytes('2'))], { confState: conf });
    const expectState = (s: NodeStore) => {
      expect(s.storage(SHARD).applied).toBe(2);
      expect(s.storage(SHARD).initialState().confState).toEqual(conf);
      expect(text(new KvStateMachine(s).get(bytes('b'))?.value)).toBe('2');
    };
    expectState(store);
    store = await reopen(store);
    expectState(store);
  });

  it('one apply carries several shards; their applied indexes move independently', async () => {
    const store = await newStore();
    const other = groupId(2);
    await store.createShard(other, { confState: confState({ voters: [1] }) });
    const a = [putEntry(1, TERM, bytes('a1'), bytes('x')), putEntry(2, TERM, bytes('a2'), bytes('y'))];
    const b = [putEntry(1, TERM, bytes('b1'), bytes('z'))];
    await store.persist([
      { shardId: SHARD, entries: a, hardState: { term: TERM, vote: NONE, commit: 2 } },
      { shardId: other, entries: b, hardState: { term: TERM, vote: NONE, commit: 1 } },
    ]);
    const results = await new KvStateMachine(store).apply([
      { shardId: SHARD, entries: a },
      { shardId: other, entries: b },
    ]);
    expect([...results.get(SHARD)!.keys(), ...results.get(other)!.keys()]).toEqual([1, 2, 1]);
    expect([store.storage(SHARD).applied, store.storage(other).applied]).toEqual([2, 1]);
  });

  const misordered: { name: string; from: (applied: number) => number }[] = [
    { name: 'a gap after the applied index', from: (applied) => applied + 2 },
    { name: 'the applied entry again', from: (applied) => applied },
  ];
  for (const m of misordered) {
    it(`apply must start at applied+1: ${m.name} is an assertion failure and changes nothing`, async () => {
      const store = await newStore();
      await run(store, [put('a', '1'), put('b', '2')]);
      const applied = store.storage(SHARD).applied;
      const from = m.from(applied);
      const batch = [putEntry(from, TERM, bytes('a'), bytes('changed'))];
      await store.persist([{ shardId: SHARD, entries: [putEntry(3, TERM, bytes('c'), bytes('3')), putEntry(4, TERM, bytes('d'), bytes('4'))] }]);
      expect(await asyncErrorCode(() => new KvStateMachine(store).apply([{ shardId: SHARD, entries: batch }]))).toBe('ASSERTION_FAILED');
      expect(store.storage(SHARD).applied).toBe(applied);
      expect(text(new KvStateMachine(store).get(bytes('a'))?.value)).toBe('1');
    });
  }

  it('a batch with a hole in it is an assertion failure', async () => {
    const store = await newStore();
    const batch = [putEntry(1, TERM, bytes('a'), bytes('1')), putEntry(3, TERM, bytes('b'), bytes('2'))];
    expect(await asyncErrorCode(() => new KvStateMachine(store).apply([{ shardId: SHARD, entries: batch }]))).toBe('ASSERTION_FAILED');
    expect(store.storage(SHARD).applied).toBe(0);
  });

  // A committed command the storage cannot hold must not wedge the range: every replica
  // refuses it the same way and moves on (the proposer should have refused it first).
  const invalid: { name: string; key: Uint8Array; value: Uint8Array }[] = [
    { name: 'an empty key', key: new Uint8Array(0), value: bytes('x') },
    { name: `a key over ${KEY_BYTES_MAX} bytes`, key: new Uint8Array(KEY_BYTES_MAX + 1).fill(7), value: bytes('x') },
    { name: `a value over ${VALUE_BYTES_MAX} bytes`, key: bytes('k'), value: new Uint8Array(VALUE_BYTES_MAX + 1) },
  ];
  for (const c of invalid) {
    it(`a committed put with ${c.name} is refused as COMMAND_INVALID and the shard keeps applying`, async () => {
      const store = await newStore();
      const packr = new Packr({ useRecords: false, moreTypes: false });
      const raw = (index: number): Entry => ({ index, term: TERM, type: 'normal', data: packr.pack([1, c.key, c.value, -1]) });
      const results = await run(store, [raw, put('after', 'ok')]);
      expect(results[0]).toMatchObject({ ok: false, code: 'COMMAND_INVALID' });
      expect(results[1]).toEqual({ ok: true, version: 2, created: true });
      expect(store.storage(SHARD).applied).toBe(2);
      expect(errorCode(() => encodeCommand({ op: 'put', key: c.key, value: c.value }))).toBe('COMMAND_INVALID');
    });
  }

  it('the largest key and value are accepted', async () => {
    const store = await newStore();
    const key = new Uint8Array(KEY_BYTES_MAX).fill(0xff);
    const value = new Uint8Array(VALUE_BYTES_MAX).fill(1);
    const first = store.storage(SHARD).lastIndex() + 1;
    const results = await commitAndApply(store, SHARD, [putEntry(first, TERM, key, value)]);
    expect(results.get(first)).toEqual({ ok: true, version: 1, created: true });
    expect(new KvStateMachine(store).get(key)?.value.byteLength).toBe(VALUE_BYTES_MAX);
  });
});

describe('atomic batches, range deletes and content types', () => {
  const command = (c: KvCommand) => (index: number): Entry => ({ index, term: TERM, type: 'normal', data: encodeCommand(c) });
  const atomic = (ops: Extract<KvCommand, { op: 'atomicBatch' }>['ops']) => command({ op: 'atomicBatch', key: ops[0]!.key, ops });
  const deleteRange = (start: string, end: string | null) => command({ op: 'deleteRange', key: bytes(start), end: end === null ? null : bytes(end) });
  const keysOf = (kv: KvStateMachine) => [...kv.scan({ start: new Uint8Array([0]), limit: 1000 })].map((r) => `${r.key.toString()}=${r.value.toString()}`);

  it('an atomic batch applies every op at its one index, each condition seeing the ops before it', async () => {
    const store = await newStore();
    const kv = new KvStateMachine(store);
    await run(store, [put('a', 'old'), put('gone', 'x')]); // indexes 1, 2
    const [result] = await run(store, [
      atomic([
        { op: 'put', key: bytes('a'), value: bytes('new'), ifVersion: 1 },
        { op: 'put', key: bytes('b'), value: bytes('1'), ifVersion: 0 },
        // b's version is 3 now: the batch's own put, not the state before it.
        { op: 'put', key: bytes('b'), value: bytes('2'), ifVersion: 3 },
        { op: 'delete', key: bytes('gone'), ifVersion: 2 },
      ]),
    ]);
    expect(result).toEqual({ ok: true, version: 0, versions: [3, 3, 4, 0] });
    expect(keysOf(kv)).toEqual(['a=new', 'b=2']);
    expect(kv.get(bytes('b'))?.version).toBe(4);
  });

  it('an atomic batch with one failing ifVersion changes nothing, names the op, and the shard keeps applying', async () => {
    const store = await newStore();
    const kv = new KvStateMachine(store);
    await run(store, [put('a', 'old'), put('b', 'old')]);
    const before = keysOf(kv);
    const results = await run(store, [
      atomic([
        { op: 'put', key: bytes('a'), value: bytes('new') },
        { op: 'delete', key: bytes('b') },
        { op: 'put', key: bytes('c'), value: bytes('new'), ifVersion: 99 },
      ]),
      put('after', 'ok'),
    ]);
    expect(results[0]).toEqual({ ok: false, code: 'VERSION_MISMATCH', currentVersion: 0, opIndex: 2 });
    expect(results[1]).toMatchObject({ ok: true });
    expect(keysOf(kv)).toEqual([...before, 'after=ok'].sort());
    expect(kv.get(bytes('a'))?.version).toBe(1);
  });

  it('an atomic batch or range delete reaching past the range (a split applied first) is refused whole', async () => {
    const store = await newStore();
    await run(store, [put('a', '1'), put('x', '1')]);
    const kv = new KvStateMachine(store);
    const index = store.storage(SHARD).lastIndex() + 1;
    const entries: Entry[] = [
      atomic([
        { op: 'put', key: bytes('a'), value: bytes('2') },
        { op: 'put', key: bytes('x'), value: bytes('2') },
      ])(index),
      deleteRange('a', 'z')(index + 1),
    ];
    const previous = store.storage(SHARD).initialState().hardState;
    await store.persist([{ shardId: SHARD, entries, hardState: { ...previous, commit: index + 1 } }]);
    let results: Map<number, unknown> | undefined;
    const staged = kv.stage([{ shardId: SHARD, entries, range: { start: new Uint8Array([0]), end: bytes('m'), epoch: 2 } }]);
    await store.env.transaction(() => {
      results = staged.write().results.get(SHARD);
    });
    staged.committed();
    expect(results?.get(index)).toMatchObject({ ok: false, code: 'KEY_OUT_OF_RANGE' });
    expect(results?.get(index + 1)).toMatchObject({ ok: false, code: 'KEY_OUT_OF_RANGE' });
    expect(keysOf(kv)).toEqual(['a=1', 'x=1']);
  });

  it('a range delete removes every key of [start, end) and counts them; end null reaches the end of the key space', async () => {
    const store = await newStore();
    const kv = new KvStateMachine(store);
    await run(store, ['a', 'b', 'b0', 'bz', 'c', 'd', 'e'].map((k) => put(k, 'v')));
    expect(await run(store, [deleteRange('b', 'c')])).toEqual([{ ok: true, version: 0, deletedCount: 3 }]);
    expect(keysOf(kv)).toEqual(['a=v', 'c=v', 'd=v', 'e=v']);
    expect(await run(store, [deleteRange('b', 'c')])).toEqual([{ ok: true, version: 0, deletedCount: 0 }]);
    expect(await run(store, [deleteRange('d', null)])).toEqual([{ ok: true, version: 0, deletedCount: 2 }]);
    expect(keysOf(kv)).toEqual(['a=v', 'c=v']);
  });

  it('keeps a put\'s content type with its value; a put without one clears it; records without one still read', async () => {
    const store = await newStore();
    const kv = new KvStateMachine(store);
    await run(store, [command({ op: 'put', key: bytes('typed'), value: bytes('{}'), contentType: 'application/json; charset=utf-8' }), put('plain', 'x')]);
    expect(kv.get(bytes('typed'))).toMatchObject({ contentType: 'application/json; charset=utf-8' });
    expect(kv.get(bytes('plain'))).not.toHaveProperty('contentType');
    // A record stored before content types existed: [version, bytes].
    expect(store.data.get(Buffer.from('plain'))).toHaveLength(2);
    await run(store, [put('typed', 'now plain')]);
    expect(kv.get(bytes('typed'))).not.toHaveProperty('contentType');
  });

  it('commandOutsideRange names the key or span a command reaches outside the range', () => {
    const range = { start: bytes('b'), end: bytes('m') };
    const put1 = (k: string) => ({ op: 'put' as const, key: bytes(k), value: bytes('v') });
    const cases: { command: KvCommand; outside: string | undefined }[] = [
      { command: put1('c'), outside: undefined },
      { command: put1('m'), outside: 'm' },
      { command: { op: 'atomicBatch', key: bytes('c'), ops: [put1('c'), put1('l')] }, outside: undefined },
      { command: { op: 'atomicBatch', key: bytes('c'), ops: [put1('c'), put1('z')] }, outside: 'z' },
      { command: { op: 'deleteRange', key: bytes('b'), end: bytes('m') }, outside: undefined },
      { command: { op: 'deleteRange', key: bytes('c'), end: null }, outside: 'c…' },
      { command: { op: 'deleteRange', key: bytes('a'), end: bytes('c') }, outside: 'a…' },
    ];
    for (const c of cases) {
      const outside = commandOutsideRange(range, c.command);
      expect(outside === undefined ? undefined : `${Buffer.from(outside.key).toString()}${outside.end === undefined ? '' : '…'}`, JSON.stringify(c.command.op)).toBe(c.outside);
    }
  });

  const invalidCommands: { name: string; command: KvCommand; reason: RegExp }[] = [
    { name: 'an atomic batch with no ops', command: { op: 'atomicBatch', key: bytes('a'), ops: [] }, reason: /no ops/ },
    {
      name: `an atomic batch of more than ${ATOMIC_BATCH_OPS_MAX} ops`,
      command: { op: 'atomicBatch', key: bytes('a'), ops: Array.from({ length: ATOMIC_BATCH_OPS_MAX + 1 }, () => ({ op: 'delete' as const, key: bytes('a') })) },
      reason: /exceeds/,
    },
    {
      name: 'an atomic batch holding a split',
      command: { op: 'atomicBatch', key: bytes('a'), ops: [{ op: 'split', key: bytes('a'), newShardId: 9, epoch: 1 } as never] },
      reason: /not a put or delete/,
    },
    { name: 'an atomic batch whose key is not its first op\'s', command: { op: 'atomicBatch', key: bytes('b'), ops: [{ op: 'delete', key: bytes('a') }] }, reason: /first op/ },
    { name: 'an atomic batch with an empty key', command: { op: 'atomicBatch', key: bytes('a'), ops: [{ op: 'delete', key: bytes('a') }, { op: 'delete', key: new Uint8Array(0) }] }, reason: /op 1 .*empty/ },
    { name: 'a range delete whose start is not before its end', command: { op: 'deleteRange', key: bytes('b'), end: bytes('b') }, reason: /not before/ },
    { name: 'a content type with a control character', command: { op: 'put', key: bytes('a'), value: bytes(''), contentType: 'text/plain\n' }, reason: /visible ASCII/ },
    { name: `a content type over ${CONTENT_TYPE_BYTES_MAX} characters`, command: { op: 'put', key: bytes('a'), value: bytes(''), contentType: `a/${'b'.repeat(CONTENT_TYPE_BYTES_MAX)}` }, reason: /exceeds/ },
  ];
  for (const c of invalidCommands) {
    it(`refuses ${c.name} when proposed (COMMAND_INVALID)`, () => {
      expect(validateCommand(c.command)).toMatch(c.reason);
      expect(errorCode(() => encodeCommand(c.command))).toBe('COMMAND_INVALID');
    });
  }
});

describe('scan', () => {
  // Binary keys whose byte order differs from string order and includes prefixes, 0x00 and 0xff.
  const keys = [[0x00], [0x00, 0x00], [0x00, 0x01], [0x01], [0x01, 0x00], [0x41], [0x61], [0x7f, 0xff], [0x80], [0xc3, 0xa9], [0xff], [0xff, 0x00], [0xff, 0xff, 0xff]].map(
    (k) => new Uint8Array(k),
  );

  async function filled(): Promise<{ store: NodeStore; kv: KvStateMachine }> {
    const store = await newStore();
    // Insert in a scrambled (seeded) order so the ordering comes from LMDB, not from the inserts.
    const rng = new SeededRng(7);
    const order = [...keys];
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.intBelow(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const first = store.storage(SHARD).lastIndex() + 1;
    await commitAndApply(store, SHARD, order.map((k, i) => putEntry(first + i, TERM, k, k)));
    return { store, kv: new KvStateMachine(store) };
  }

  /** The naive oracle: sort by bytes, filter [start, end), cut at limit. */
  function expected(start: Uint8Array, end: Uint8Array | undefined, limit: number): string[] {
    return [...keys]
      .sort((a, b) => Buffer.compare(a, b))
      .filter((k) => Buffer.compare(k, start) >= 0 && (end === undefined || Buffer.compare(k, end) < 0))
      .slice(0, limit)
      .map((k) => Buffer.from(k).toString('hex'));
  }

  const cases: { start: number[]; end?: number[]; limit: number }[] = [
    { start: [0x00], limit: 100 },
    { start: [0x00], limit: 3 },
    { start: [0x00, 0x00], end: [0x01], limit: 100 },
    { start: [0x01], end: [0x01, 0x00], limit: 100 }, // end is exclusive
    { start: [0x01, 0x00, 0x00], end: [0x80], limit: 100 }, // start between keys
    { start: [0x7f], end: [0xff], limit: 100 },
    { start: [0xff], limit: 100 },
    { start: [0xff, 0x00, 0x00], limit: 2 },
    { start: [0x80], end: [0x80], limit: 100 }, // empty range
    { start: [0x42], end: [0x41], limit: 100 }, // end before start
  ];
  for (const c of cases) {
    const hex = (k: number[] | undefined) => (k === undefined ? '∞' : Buffer.from(k).toString('hex'));
    it(`scan [${hex(c.start)}, ${hex(c.end)}) limit ${c.limit} returns keys in byte order`, async () => {
      const { kv } = await filled();
      const end = c.end === undefined ? undefined : new Uint8Array(c.end);
      const got = [...kv.scan({ start: new Uint8Array(c.start), end, limit: c.limit })];
      expect(got.map((r) => r.key.toString('hex'))).toEqual(expected(new Uint8Array(c.start), end, c.limit));
      for (const r of got) {
        expect(r.value.toString('hex')).toBe(r.key.toString('hex'));
        expect(r.version).toBeGreaterThan(0);
      }
    });
    it(`reverse scan [${hex(c.start)}, ${hex(c.end)}) limit ${c.limit} returns the last keys, from the last down`, async () => {
      const { kv } = await filled();
      const start = new Uint8Array(c.start);
      const end = c.end === undefined ? undefined : new Uint8Array(c.end);
      const got = [...kv.scan({ start, end, limit: c.limit, reverse: true })];
      expect(got.map((r) => r.key.toString('hex'))).toEqual(expected(start, end, Number.MAX_SAFE_INTEGER).reverse().slice(0, c.limit));
    });
  }
});

describe('command codec', () => {
  const roundTrips: KvCommand[] = [
    { op: 'put', key: bytes('k'), value: bytes('v') },
    { op: 'put', key: bytes('k'), value: bytes('v'), ifVersion: 4, contentType: 'text/plain; charset=utf-8' },
    { op: 'put', key: new Uint8Array([0, 255]), value: new Uint8Array(0), ifVersion: 0 },
    { op: 'put', key: bytes('k'), value: bytes('v'), ifVersion: 2 ** 40 },
    { op: 'delete', key: bytes('k') },
    { op: 'delete', key: bytes('k'), ifVersion: 3 },
    { op: 'split', key: bytes('m'), newShardId: 1024, epoch: 7 },
  ];
  for (const c of roundTrips) {
    const condition = 'ifVersion' in c && c.ifVersion !== undefined ? ` ifVersion ${c.ifVersion}` : '';
    it(`encode/decode round-trips ${c.op}${condition}`, () => {
      const decoded = decodeCommand(1, encodeCommand(c));
      expect({ ...decoded, key: [...decoded.key], ...('value' in decoded ? { value: [...decoded.value] } : {}) }).toEqual({
        ...c,
        key: [...c.key],
        ...('value' in c ? { value: [...c.value] } : {}),
      });
    });
  }

  const packr = new Packr({ useRecords: false, moreTypes: false });
  const valid = encodeCommand({ op: 'put', key: bytes('key'), value: bytes('value') });
  const malformed: { name: string; data: Uint8Array }[] = [
    { name: 'empty bytes', data: new Uint8Array(0) },
    { name: 'a reserved msgpack byte (0xc1)', data: new Uint8Array([0xc1]) },
    { name: 'a truncated command', data: valid.subarray(0, valid.byteLength - 3) },
    { name: 'trailing bytes', data: new Uint8Array([...valid, 0x00]) },
    { name: 'not an array', data: packr.pack({ op: 'put' }) },
    { name: 'a 3-tuple', data: packr.pack([1, bytes('k'), bytes('v')]) },
    { name: 'an unknown opcode', data: packr.pack([9, bytes('k'), null, -1]) },
    { name: 'a string key', data: packr.pack([1, 'k', bytes('v'), -1]) },
    { name: 'a put without a value', data: packr.pack([1, bytes('k'), null, -1]) },
    { name: 'ifVersion -2', data: packr.pack([1, bytes('k'), bytes('v'), -2]) },
    { name: 'a fractional ifVersion', data: packr.pack([2, bytes('k'), null, 1.5]) },
    { name: 'a string ifVersion', data: packr.pack([2, bytes('k'), null, '1']) },
  ];
  for (const m of malformed) {
    it(`decodeCommand rejects ${m.name} with CorruptRecordError`, () => {
      let caught: unknown;
      try {
        decodeCommand(42, m.data);
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(CorruptRecordError);
      expect(caught).toMatchObject({ code: 'CORRUPT_RECORD', retryable: false });
      expect((caught as Error).message).toContain('entry 42');
    });
  }

  it('an atomic batch and a range delete round-trip, and are no batch entry', () => {
    const plain = (x: unknown): unknown =>
      x instanceof Uint8Array ? Buffer.from(x).toString('hex') : Array.isArray(x) ? x.map(plain) : x !== null && typeof x === 'object' ? Object.fromEntries(Object.entries(x).map(([k, v]) => [k, plain(v)])) : x;
    const commands: KvCommand[] = [
      { op: 'atomicBatch', key: bytes('a'), ops: [{ op: 'put', key: bytes('a'), value: bytes('1'), ifVersion: 0, contentType: 'text/plain' }, { op: 'delete', key: bytes('b'), ifVersion: 7 }] },
      { op: 'deleteRange', key: bytes('a'), end: bytes('b') },
      { op: 'deleteRange', key: bytes('a'), end: null },
    ];
    for (const c of commands) {
      const encoded = encodeCommand(c);
      expect(isBatchCommand(encoded)).toBe(false);
      expect(plain(decodeCommand(1, encoded))).toEqual(plain(c));
    }
  });

  it('a batch entry round-trips its commands, is told apart by two bytes, and is no single command', () => {
    const commands = roundTrips.filter((c) => c.op !== 'split').map((c) => encodeCommand(c));
    const batch = encodeBatchCommand(commands);
    expect(isBatchCommand(batch)).toBe(true);
    expect(commands.some((c) => isBatchCommand(c))).toBe(false);
    expect(decodeBatchCommand(3, batch).map((c) => [...c])).toEqual(commands.map((c) => [...c]));
    expect(() => decodeCommand(3, batch)).toThrow(CorruptRecordError);
  });

  const malformedBatches: { name: string; data: Uint8Array }[] = [
    { name: 'no commands', data: packr.pack([5, new Uint8Array(0), [], -1]) },
    { name: 'a command that is not bytes', data: packr.pack([5, new Uint8Array(0), ['put'], -1]) },
    { name: 'commands that are not a list', data: packr.pack([5, new Uint8Array(0), valid, -1]) },
    { name: 'a truncated batch', data: encodeBatchCommand([valid, valid]).subarray(0, 10) },
  ];
  for (const m of malformedBatches) {
    it(`decodeBatchCommand rejects ${m.name} with CorruptRecordError`, () => {
      expect(() => decodeBatchCommand(42, m.data)).toThrow(/entry 42/);
      expect(() => decodeBatchCommand(42, m.data)).toThrow(CorruptRecordError);
    });
  }

  it('decodeCommand rejects seeded random garbage (never returns a malformed command)', () => {
    const rng = new SeededRng(20240601);
    let rejected = 0;
    for (let n = 0; n < 500; n++) {
      const data = new Uint8Array(1 + rng.intBelow(40));
      for (let i = 0; i < data.length; i++) data[i] = rng.intBelow(256);
      try {
        const c = decodeCommand(n, data);
        // Whatever decodes must be a well-formed command.
        expect(c.key).toBeInstanceOf(Uint8Array);
        expect(['put', 'delete']).toContain(c.op);
      } catch (err) {
        expect(err).toBeInstanceOf(CorruptRecordError);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(450);
  });
});
