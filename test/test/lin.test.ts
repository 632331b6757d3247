// The linearizability checker on hand-made histories (each anomaly must be caught, each legal interleaving
// accepted), then against a deliberately naive oracle on random tiny histories.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  checkOperations,
  checkRegisterHistory,
  describeVerdict,
  HistoryError,
  registerModel,
  type KeyedOperation,
  type RegisterInput,
  type RegisterOperation,
  type RegisterOutput,
  unobservedPuts,
} from '../src/lin/index.js';

/** [invoke, complete] with complete null for an unknown outcome. */
type Span = readonly [number, number | null];

const get = (span: Span, output: RegisterOutput | null): [RegisterInput, Span, RegisterOutput | null] => [{ kind: 'get' }, span, output];
const put = (value: string, span: Span, output: RegisterOutput | null, ifVersion?: number): [RegisterInput, Span, RegisterOutput | null] => [
  ifVersion === undefined ? { kind: 'put', value } : { kind: 'put', value, ifVersion },
  span,
  output,
];
const del = (span: Span, output: RegisterOutput | null, ifVersion?: number): [RegisterInput, Span, RegisterOutput | null] => [ifVersion === undefined ? { kind: 'delete' } : { kind: 'delete', ifVersion }, span, output];
const found = (value: string, version: number): RegisterOutput => ({ kind: 'found', value, version });
const written = (version: number): RegisterOutput => ({ kind: 'written', version });
const refused = (currentVersion: number): RegisterOutput => ({ kind: 'refused', currentVersion });
const ABSENT: RegisterOutput = { kind: 'absent' };
const DELETED: RegisterOutput = { kind: 'deleted' };

/** Operations on one key, each from its own client, ids in the order given. */
function history(...ops: [RegisterInput, Span, RegisterOutput | null][]): KeyedOperation[] {
  return ops.map(([input, [invokeMs, completeMs], output], id) => ({ id, clientId: id, key: 'k', invokeMs, completeMs, input, output: completeMs === null ? null : output }));
}

const verdictOf = (ops: KeyedOperation[]) => checkRegisterHistory(ops).kind;

describe('versioned register histories', () => {
  const cases: { name: string; ops: KeyedOperation[]; expected: 'linearizable' | 'violation' }[] = [
    { name: 'an empty history', ops: [], expected: 'linearizable' },
    { name: 'a read of a key never written is absent', ops: history(get([0, 1], ABSENT)), expected: 'linearizable' },
    { name: 'a read after an acknowledged put sees it', ops: history(put('a', [0, 1], written(5)), get([2, 3], found('a', 5))), expected: 'linearizable' },
    { name: 'stale read: a read after an acknowledged overwrite sees the old value', ops: history(put('a', [0, 1], written(5)), put('b', [2, 3], written(6)), get([4, 5], found('a', 5))), expected: 'violation' },
    { name: 'lost write: a read after an acknowledged put finds nothing', ops: history(put('a', [0, 1], written(5)), get([2, 3], ABSENT)), expected: 'violation' },
    { name: 'a read sees the right value with the wrong version', ops: history(put('a', [0, 1], written(5)), get([2, 3], found('a', 6))), expected: 'violation' },
    { name: 'a read sees a value nobody wrote', ops: history(get([0, 1], found('ghost', 1))), expected: 'violation' },
    { name: 'a read sees a value before its write was invoked', ops: history(get([0, 1], found('a', 5)), put('a', [2, 3], written(5))), expected: 'violation' },
    { name: 'a put writes a version above the one it replaced', ops: history(put('a', [0, 1], written(5)), put('b', [2, 3], written(5))), expected: 'violation' },
    { name: 'CAS on the current version succeeds', ops: history(put('a', [0, 1], written(5)), put('b', [2, 3], written(6), 5), get([4, 5], found('b', 6))), expected: 'linearizable' },
    { name: 'CAS succeeding on a wrong version', ops: history(put('a', [0, 1], written(5)), put('b', [2, 3], written(6), 4)), expected: 'violation' },
    { name: 'CAS refused on a wrong version, naming the current one', ops: history(put('a', [0, 1], written(5)), put('b', [2, 3], refused(5), 4), get([4, 5], found('a', 5))), expected: 'linearizable' },
    { name: 'CAS refused while its version was current', ops: history(put('a', [0, 1], written(5)), put('b', [2, 3], refused(6), 5)), expected: 'violation' },
    { name: 'a refusal naming a version the key never had', ops: history(put('a', [0, 1], written(5)), put('b', [2, 3], refused(7), 4)), expected: 'violation' },
    { name: 'a refused write has no effect', ops: history(put('a', [0, 1], written(5)), put('b', [2, 3], refused(5), 4), get([4, 5], found('b', 6))), expected: 'violation' },
    { name: 'create-only on an absent key succeeds', ops: history(put('a', [0, 1], written(3), 0)), expected: 'linearizable' },
    { name: 'two concurrent create-only writes both succeed', ops: history(put('a', [0, 2], written(3), 0), put('b', [1, 3], written(4), 0)), expected: 'violation' },
    { name: 'two concurrent create-only writes: one wins, the other is refused', ops: history(put('a', [0, 2], written(3), 0), put('b', [1, 3], refused(3), 0)), expected: 'linearizable' },
    { name: 'a delete makes the key absent', ops: history(put('a', [0, 1], written(5)), del([2, 3], DELETED), get([4, 5], ABSENT)), expected: 'linearizable' },
    { name: 'a read after an acknowledged delete still sees the value', ops: history(put('a', [0, 1], written(5)), del([2, 3], DELETED), get([4, 5], found('a', 5))), expected: 'violation' },
    { name: 'a conditional delete refused keeps the value', ops: history(put('a', [0, 1], written(5)), del([2, 3], refused(5), 9), get([4, 5], found('a', 5))), expected: 'linearizable' },
    { name: 'after a delete a put may write a lower version', ops: history(put('a', [0, 1], written(9)), del([2, 3], DELETED), put('b', [4, 5], written(2))), expected: 'linearizable' },
    {
      name: 'concurrent reads around a put, in one order',
      ops: history(put('a', [0, 10], written(5)), get([1, 9], ABSENT), get([2, 8], found('a', 5))),
      expected: 'linearizable',
    },
    {
      name: 'concurrent reads around a put, in the other order',
      ops: history(put('a', [0, 10], written(5)), get([1, 9], found('a', 5)), get([2, 8], ABSENT)),
      expected: 'linearizable',
    },
    {
      name: 'reads that do not overlap cannot go back in time',
      ops: history(put('a', [0, 10], written(5)), get([1, 2], found('a', 5)), get([3, 4], ABSENT)),
      expected: 'violation',
    },
    { name: 'operations touching at one instant overlap', ops: history(put('a', [0, 2], written(5)), get([2, 3], ABSENT)), expected: 'linearizable' },
    { name: 'an unknown put observed later', ops: history(put('a', [0, null], null), get([5, 6], found('a', 7))), expected: 'linearizable' },
    { name: 'an unknown put never observed', ops: history(put('a', [0, null], null), get([5, 6], ABSENT), get([7, 8], ABSENT)), expected: 'linearizable' },
    { name: 'an unknown put observed, then gone with no delete', ops: history(put('a', [0, null], null), get([5, 6], found('a', 7)), get([7, 8], ABSENT)), expected: 'violation' },
    { name: 'an unknown put takes effect at most once', ops: history(put('a', [0, 1], written(5)), put('b', [2, null], null), get([3, 4], found('b', 6)), put('c', [5, 6], written(7)), get([7, 8], found('b', 6))), expected: 'violation' },
    { name: 'an unknown put cannot take effect before it was invoked', ops: history(get([0, 1], found('a', 3)), put('a', [2, null], null)), expected: 'violation' },
    { name: 'an unknown put observed long after, past other writes', ops: history(put('a', [0, null], null), put('b', [1, 2], written(4)), get([3, 4], found('b', 4)), get([10, 11], found('a', 9))), expected: 'linearizable' },
    { name: 'an unknown put cannot have written a version below the one it replaced', ops: history(put('x', [0, 1], written(5)), put('a', [2, null], null), get([3, 4], found('a', 5))), expected: 'violation' },
    {
      name: 'a refusal reveals an unknown put (the version moved with no acknowledged write)',
      ops: history(put('x', [0, 1], written(5)), put('a', [2, null], null), put('y', [10, 11], refused(8), 5)),
      expected: 'linearizable',
    },
    { name: 'a refusal with no write to explain the moved version', ops: history(put('x', [0, 1], written(5)), put('y', [10, 11], refused(8), 5)), expected: 'violation' },
    {
      name: 'an unknown put whose version a refusal pinned, then a CAS on that version',
      ops: history(put('x', [0, 1], written(5)), put('a', [2, null], null), put('y', [10, 11], refused(8), 5), put('z', [12, 13], written(9), 8), get([14, 15], found('z', 9))),
      expected: 'linearizable',
    },
    { name: 'an unknown CAS on a stale version cannot explain a change', ops: history(put('x', [0, 1], written(5)), put('a', [2, null], null, 4), get([5, 6], found('a', 6))), expected: 'violation' },
    { name: 'an unknown delete observed', ops: history(put('x', [0, 1], written(5)), del([2, null], null), get([5, 6], ABSENT)), expected: 'linearizable' },
    {
      name: 'many unknown puts, one observed',
      ops: history(...Array.from({ length: 16 }, (_, i) => put(`u${i}`, [i, null], null)), get([100, 101], found('u7', 30)), get([102, 103], found('u7', 30))),
      expected: 'linearizable',
    },
    {
      name: 'many unknown puts, a read of none of them after one was seen',
      ops: history(...Array.from({ length: 16 }, (_, i) => put(`u${i}`, [i, null], null)), get([100, 101], found('u7', 30)), get([102, 103], ABSENT)),
      expected: 'violation',
    },
  ];
  for (const c of cases) {
    it(`${c.expected === 'linearizable' ? 'accepts' : 'refuses'} ${c.name}`, () => {
      const verdict = checkRegisterHistory(c.ops);
      expect(verdict.kind, describeVerdict(verdict)).toBe(c.expected);
    });
  }

  it('checks each key on its own: a stale read on one key is found among legal keys', () => {
    const legal = history(put('a', [0, 1], written(5)), get([2, 3], found('a', 5)));
    const stale = history(put('a', [0, 1], written(5)), put('b', [2, 3], written(6)), get([4, 5], found('a', 5)));
    const ops: KeyedOperation[] = [
      ...legal.map((o) => ({ ...o, key: 'x' })),
      ...stale.map((o) => ({ ...o, id: o.id + 10, key: 'y' })),
      ...legal.map((o) => ({ ...o, id: o.id + 20, key: 'z' })),
    ];
    const verdict = checkRegisterHistory(ops);
    expect(verdict.kind).toBe('violation');
    expect(verdict.keys.map((k) => [k.key, k.result.kind])).toEqual([['x', 'linearizable'], ['y', 'violation'], ['z', 'linearizable']]);
  });

  it('reports where the search got stuck: the prefix, the state and the operations that cannot follow', () => {
    const verdict = checkRegisterHistory(history(put('a', [0, 1], written(5)), put('b', [2, 3], written(6)), get([4, 5], found('a', 5))));
    const text = describeVerdict(verdict);
    expect(text).toContain('NOT linearizable');
    expect(text).toContain('"b" v6'); // the state after the longest prefix
    expect(text).toContain('#2 client 2 get → "a" v5');
  });

  it('decides histories with dozens of unread unknown puts among refusals within a small budget', () => {
    // 30 writers whose puts time out (never read), while a CAS loop advances the version and some CAS are refused.
    const ops: [RegisterInput, Span, RegisterOutput | null][] = [put('x', [0, 1], written(5))];
    let version = 5;
    for (let i = 0; i < 30; i++) {
      const t = 10 + i * 10;
      ops.push(put(`lost${i}`, [t, null], null));
      ops.push(put(`c${i}`, [t + 1, t + 3], written(version + 1), version));
      ops.push(put(`r${i}`, [t + 4, t + 5], refused(version + 1), version));
      ops.push(get([t + 6, t + 7], found(`c${i}`, version + 1)));
      version++;
    }
    const legal = history(...ops);
    const stale = history(...ops, get([1_000, 1_001], found('c3', 9)));
    expect(checkRegisterHistory(legal, { stepsMax: 200_000 }).kind).toBe('linearizable');
    expect(checkRegisterHistory(stale, { stepsMax: 200_000 }).kind).toBe('violation');
  });

  it('gives up with unknown, not a verdict, when the step budget runs out', () => {
    const ops = history(...Array.from({ length: 12 }, (_, i) => put(`u${i}`, [0, 100], written(10 + i))), get([200, 201], found('u0', 10)));
    const r = checkOperations(registerModel, ops, { stepsMax: 50 });
    expect(r.kind).toBe('unknown');
  });

  it('refuses malformed histories with a stable code', () => {
    const codeOf = (ops: KeyedOperation[]) => {
      try {
        checkRegisterHistory(ops);
        return undefined;
      } catch (err) {
        return err instanceof HistoryError ? err.code : String(err);
      }
    };
    const [a, b] = history(put('a', [0, 1], written(5)), get([2, 3], ABSENT));
    expect(codeOf([a!, { ...b!, id: a!.id }])).toBe('DUPLICATE_OPERATION_ID');
    expect(codeOf([{ ...a!, completeMs: -1 }])).toBe('BAD_OPERATION_TIME');
    expect(codeOf([{ ...a!, invokeMs: Number.NaN }])).toBe('BAD_OPERATION_TIME');
    expect(codeOf([{ ...a!, completeMs: null }])).toBe('OUTCOME_MISMATCH');
    expect(codeOf([{ ...a!, output: ABSENT }])).toBe('BAD_OPERATION_OUTPUT');
    expect(codeOf([{ ...a!, output: refused(3) }])).toBe('BAD_OPERATION_OUTPUT'); // an unconditional put cannot be refused
    expect(codeOf([{ ...a!, output: written(0) }])).toBe('BAD_OPERATION_OUTPUT');
  });
});

// ---------------------------------------------------------------- the naive oracle

/** A concrete register: absent or a value with its exact version. */
type Concrete = null | { readonly value: string; readonly version: number };

/**
 * Every sequential order consistent with real time, with every version an
 * unknown put may have written spelled out (1..versionMax) and every unknown
 * operation either placed or left out. Exponential; for histories of a few
 * operations only.
 */
function bruteForceLinearizable(ops: readonly RegisterOperation[]): boolean {
  const numbers = ops.flatMap((o) => [
    ...(o.input.kind !== 'get' && o.input.ifVersion !== undefined ? [o.input.ifVersion] : []),
    ...(o.output?.kind === 'found' || o.output?.kind === 'written' ? [o.output.version] : []),
    ...(o.output?.kind === 'refused' ? [o.output.currentVersion] : []),
  ]);
  // Any version above every number in the history behaves like any other; one per operation is plenty.
  const versionMax = Math.max(0, ...numbers) + ops.length + 1;
  const holds = (s: Concrete, ifVersion: number | undefined) => ifVersion === undefined || (s === null ? ifVersion === 0 : s.version === ifVersion);
  const successors = (s: Concrete, op: RegisterOperation): Concrete[] => {
    const { input, output } = op;
    if (input.kind === 'get') {
      if (output === null) return [s];
      if (output.kind === 'absent') return s === null ? [s] : [];
      if (output.kind === 'found') return s !== null && s.value === output.value && s.version === output.version ? [s] : [];
      return [];
    }
    if (output?.kind === 'refused') return !holds(s, input.ifVersion) && (s === null ? 0 : s.version) === output.currentVersion ? [s] : [];
    if (!holds(s, input.ifVersion)) return [];
    if (input.kind === 'delete') return output === null || output.kind === 'deleted' ? [null] : [];
    const least = s === null ? 1 : s.version + 1;
    if (output === null) return Array.from({ length: Math.max(0, versionMax - least + 1) }, (_, i) => ({ value: input.value, version: least + i }));
    return output.kind === 'written' && output.version >= least ? [{ value: input.value, version: output.version }] : [];
  };
  const precedes = (a: RegisterOperation, b: RegisterOperation) => a.completeMs !== null && a.completeMs < b.invokeMs;
  const search = (done: ReadonlySet<number>, s: Concrete): boolean => {
    if (ops.every((o) => done.has(o.id) || o.completeMs === null)) return true;
    for (const op of ops) {
      if (done.has(op.id)) continue;
      if (ops.some((p) => !done.has(p.id) && p !== op && precedes(p, op))) continue;
      const placed = new Set(done).add(op.id);
      for (const next of successors(s, op)) if (search(placed, next)) return true;
    }
    return false;
  };
  return search(new Set(), null);
}

const inputArb: fc.Arbitrary<(id: number) => RegisterInput> = fc.oneof(
  fc.constant(() => ({ kind: 'get' as const })),
  fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined }).map((ifVersion) => (id: number) => (ifVersion === undefined ? { kind: 'put' as const, value: `v${id}` } : { kind: 'put' as const, value: `v${id}`, ifVersion })),
  fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined }).map((ifVersion) => () => (ifVersion === undefined ? { kind: 'delete' as const } : { kind: 'delete' as const, ifVersion })),
);

/** Any output the input's kind allows, with small versions and values of the history's puts: mostly illegal, sometimes not. */
function outputArb(input: RegisterInput, opCount: number): fc.Arbitrary<RegisterOutput> {
  const version = fc.integer({ min: 1, max: 6 });
  switch (input.kind) {
    case 'get':
      return fc.oneof(fc.constant(ABSENT), fc.record({ kind: fc.constant('found' as const), value: fc.integer({ min: 0, max: opCount - 1 }).map((i) => `v${i}`), version }));
    case 'put':
      return input.ifVersion === undefined ? version.map(written) : fc.oneof(version.map(written), fc.integer({ min: 0, max: 6 }).map(refused));
    case 'delete':
      return input.ifVersion === undefined ? fc.constant(DELETED) : fc.oneof(fc.constant(DELETED), fc.integer({ min: 0, max: 6 }).map(refused));
  }
}

/** Random tiny histories: times on a small grid (many ties), a share of unknown outcomes, arbitrary outputs. */
const randomHistoryArb: fc.Arbitrary<RegisterOperation[]> = fc.integer({ min: 1, max: 6 }).chain((count) =>
  fc
    .tuple(
      ...Array.from({ length: count }, () =>
        fc.record({ make: inputArb, invokeMs: fc.integer({ min: 0, max: 10 }), durationMs: fc.integer({ min: 0, max: 6 }), unknown: fc.integer({ min: 0, max: 4 }).map((n) => n === 0) }),
      ),
    )
    .chain((specs) => {
      const inputs = specs.map((s, id) => s.make(id));
      return fc.tuple(...inputs.map((input) => outputArb(input, count))).map((outputs) =>
        specs.map((s, id): RegisterOperation => {
          const unknown = s.unknown && inputs[id]!.kind !== 'get';
          return { id, clientId: id, invokeMs: s.invokeMs, completeMs: unknown ? null : s.invokeMs + s.durationMs, input: inputs[id]!, output: unknown ? null : outputs[id]! };
        }),
      );
    }),
);

/**
 * Histories that are linearizable by construction: each operation gets a linearization point inside its
 * span, a sequential register runs them in point order (versions grow by 1–3), and an unknown write
 * either took effect at its point or never did. `mutate` then changes one output, often making it illegal.
 */
const constructedHistoryArb = (mutate: boolean): fc.Arbitrary<RegisterOperation[]> =>
  fc.integer({ min: 1, max: 7 }).chain((count) =>
    fc
      .record({
        specs: fc.tuple(
          ...Array.from({ length: count }, () =>
            fc.record({
              make: inputArb,
              pointMs: fc.integer({ min: 0, max: 20 }),
              beforeMs: fc.integer({ min: 0, max: 6 }),
              afterMs: fc.integer({ min: 0, max: 6 }),
              versionStep: fc.integer({ min: 1, max: 3 }),
              unknown: fc.integer({ min: 0, max: 3 }).map((n) => (n === 0 ? ('applied' as const) : n === 1 ? ('lost' as const) : ('known' as const))),
            }),
          ),
        ),
        mutation: fc.record({ target: fc.nat(), version: fc.integer({ min: 0, max: 8 }) }),
      })
      .map(({ specs, mutation }) => {
        const order = specs.map((s, id) => ({ ...s, id })).sort((a, b) => a.pointMs - b.pointMs || a.id - b.id);
        let s: Concrete = null;
        let lastVersion = 0;
        const ops: RegisterOperation[] = [];
        for (const spec of order) {
          const input = spec.make(spec.id);
          const unknown = spec.unknown !== 'known' && input.kind !== 'get';
          let output: RegisterOutput;
          if (input.kind === 'get') output = s === null ? ABSENT : found(s.value, s.version);
          else if (input.ifVersion !== undefined && !(s === null ? input.ifVersion === 0 : s.version === input.ifVersion)) output = refused(s === null ? 0 : s.version);
          else if (unknown && spec.unknown === 'lost') output = input.kind === 'put' ? written(0) : DELETED; // never applied; hidden below
          else if (input.kind === 'delete') {
            s = null;
            output = DELETED;
          } else {
            lastVersion = Math.max(lastVersion, s?.version ?? 0) + spec.versionStep;
            s = { value: input.value, version: lastVersion };
            output = written(lastVersion);
          }
          ops.push({
            id: spec.id,
            clientId: spec.id,
            invokeMs: spec.pointMs - spec.beforeMs,
            completeMs: unknown ? null : spec.pointMs + spec.afterMs,
            input,
            output: unknown ? null : output,
          });
        }
        ops.sort((a, b) => a.id - b.id);
        if (!mutate) return ops;
        const target = ops[mutation.target % ops.length]!;
        if (target.output === null) return ops;
        const changed: RegisterOutput =
          target.output.kind === 'found' ? found(target.output.value, mutation.version || 1)
          : target.output.kind === 'written' ? written(mutation.version || 1)
          : target.output.kind === 'refused' ? refused(mutation.version)
          : target.output.kind === 'absent' ? found(`v${mutation.target % ops.length}`, mutation.version || 1)
          : target.output;
        return ops.map((o) => (o === target ? { ...o, output: changed } : o));
      }),
  );

const fastVerdict = (ops: RegisterOperation[]) => checkOperations(registerModel, ops).kind === 'linearizable';

describe('checker against the brute-force oracle', () => {
  it('agrees on random tiny histories', () => {
    const seen = { linearizable: 0, not: 0 };
    fc.assert(
      fc.property(randomHistoryArb, (ops) => {
        const expected = bruteForceLinearizable(ops);
        seen[expected ? 'linearizable' : 'not']++;
        expect(fastVerdict(ops)).toBe(expected);
      }),
      { numRuns: 3_000 },
    );
    expect(seen.linearizable).toBeGreaterThan(300);
    expect(seen.not).toBeGreaterThan(300);
  });

  it('agrees with unobservable unknown puts left out (checkRegisterHistory)', () => {
    let pruned = 0;
    fc.assert(
      fc.property(fc.oneof(randomHistoryArb, constructedHistoryArb(true)), (ops) => {
        const keyed = ops.map((o) => ({ ...o, key: 'k' }));
        pruned += unobservedPuts(keyed).size;
        expect(checkRegisterHistory(keyed).kind === 'linearizable').toBe(bruteForceLinearizable(ops));
      }),
      { numRuns: 3_000 },
    );
    expect(pruned).toBeGreaterThan(30);
  });

  it('accepts every history built from a sequential execution', () => {
    fc.assert(
      fc.property(constructedHistoryArb(false), (ops) => {
        expect(bruteForceLinearizable(ops)).toBe(true);
        expect(fastVerdict(ops)).toBe(true);
      }),
      { numRuns: 2_000 },
    );
  });

  it('agrees on such histories with one output changed', () => {
    let illegal = 0;
    fc.assert(
      fc.property(constructedHistoryArb(true), (ops) => {
        const expected = bruteForceLinearizable(ops);
        if (!expected) illegal++;
        expect(fastVerdict(ops)).toBe(expected);
      }),
      { numRuns: 3_000 },
    );
    // The mutation must make a good share illegal, or this property tests nothing the one above does not.
    expect(illegal).toBeGreaterThan(300);
  });
});
