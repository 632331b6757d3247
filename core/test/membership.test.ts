// Membership changes: the Changer's simple and joint transitions (Raft §6,
// thesis §4.1 and §4.3), rebuilding a config from a ConfState, and the
// conf-change codec.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidConfChangeError } from '../src/errors.js';
import { Changer, restoreConfig, type ChangeResult } from '../src/membership/changer.js';
import { decodeConfChange, encodeConfChange, enterJoint } from '../src/membership/codec.js';
import { Progress } from '../src/progress/progress.js';
import { confStateOf, emptyTrackerConfig } from '../src/progress/tracker.js';
import { MajorityConfig } from '../src/quorum/quorum.js';
import { nodeId, type ConfChange, type ConfChangeSingle, type ConfChangeTransition, type ConfState, type LogIndex, type NodeId } from '../src/types.js';

const LAST_INDEX = 10;

const newProgress = (options: { next: LogIndex; isLearner: boolean }): Progress =>
  new Progress({ ...options, inflightCountMax: 16, inflightBytesMax: 1 << 20 });

const EMPTY: ChangeResult = { config: emptyTrackerConfig(), progress: new Map() };

/**
 * Parses a change list in etcd-raft's testdata notation: `v3` adds voter 3,
 * `l3` adds learner 3, `r3` removes 3.
 */
function changes(spec: string): ConfChangeSingle[] {
  const types = { v: 'addNode', l: 'addLearner', r: 'removeNode' } as const;
  return spec
    .split(' ')
    .filter((word) => word !== '')
    .map((word) => {
      const type = types[word[0] as keyof typeof types];
      if (type === undefined) throw new Error(`bad change ${word}`);
      return { type, nodeId: nodeId(Number(word.slice(1))) };
    });
}

const list = (ids: readonly NodeId[]): string => `(${ids.join(' ')})`;

/** The config in one line, e.g. `voters=(1 2 4)&&(1 2 3) learners=(5) learnersNext=(3) autoLeave`. */
function show(state: ChangeResult): string {
  const cs = confStateOf(state.config);
  let voters = `voters=${list(cs.voters)}`;
  if (cs.votersOutgoing.length > 0) voters += `&&${list(cs.votersOutgoing)}`;
  const parts = [voters];
  if (cs.learners.length > 0) parts.push(`learners=${list(cs.learners)}`);
  if (cs.learnersNext.length > 0) parts.push(`learnersNext=${list(cs.learnersNext)}`);
  if (cs.autoLeave) parts.push('autoLeave');
  return parts.join(' ');
}

/** Progress must exist for exactly the config's members, flagged learner exactly for learners. */
function expectProgressMatchesConfig(state: ChangeResult): void {
  const cs = confStateOf(state.config);
  const members = new Set([...cs.voters, ...cs.votersOutgoing, ...cs.learners, ...cs.learnersNext]);
  expect([...state.progress.keys()].sort((a, b) => a - b)).toEqual([...members].sort((a, b) => a - b));
  for (const [id, p] of state.progress) expect(p.isLearner, `progress ${id} isLearner`).toBe(cs.learners.includes(id));
}

type Operation = { simple: string } | { enterJoint: string; autoLeave?: boolean } | { leaveJoint: true };

function run(state: ChangeResult, op: Operation): ChangeResult {
  const changer = new Changer(state, LAST_INDEX, newProgress);
  if ('simple' in op) return changer.simple(changes(op.simple));
  if ('enterJoint' in op) return changer.enterJoint(op.autoLeave ?? false, changes(op.enterJoint));
  return changer.leaveJoint();
}

const opName = (op: Operation): string =>
  'simple' in op ? `simple ${op.simple}` : 'enterJoint' in op ? `enterJoint${op.autoLeave === true ? '(autoLeave)' : ''} ${op.enterJoint}` : 'leaveJoint';

/** A script of steps, each applied to the result of the previous one; an expected error leaves the config as it was. */
type Step = { op: Operation; expected: string } | { op: Operation; error: string };

function runScript(steps: readonly Step[]): void {
  let state = EMPTY;
  for (const step of steps) {
    const before = show(state);
    const label = `${opName(step.op)} on ${before}`;
    if ('error' in step) {
      let thrown: unknown;
      try {
        run(state, step.op);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, label).toBeInstanceOf(InvalidConfChangeError);
      expect((thrown as InvalidConfChangeError).code, label).toBe('INVALID_CONF_CHANGE');
      expect((thrown as Error).message, label).toContain(step.error);
      expect(show(state), `${label} must leave the input untouched`).toBe(before);
    } else {
      state = run(state, step.op);
      expect(show(state), label).toBe(step.expected);
      expectProgressMatchesConfig(state);
    }
  }
}

describe('Changer.simple', () => {
  it('moves at most one voter at a time (§6, thesis §4.1)', () => {
    runScript([
      { op: { simple: 'v1' }, expected: 'voters=(1)' },
      // A learner may come along with a voter change.
      { op: { simple: 'v2 l3' }, expected: 'voters=(1 2) learners=(3)' },
      // Demoting a voter changes one voter.
      { op: { simple: 'l1' }, expected: 'voters=(2) learners=(1 3)' },
      // Promoting a learner changes one voter.
      { op: { simple: 'v3' }, expected: 'voters=(2 3) learners=(1)' },
      { op: { simple: 'v3' }, expected: 'voters=(2 3) learners=(1)' },
      { op: { simple: 'l1' }, expected: 'voters=(2 3) learners=(1)' },
      { op: { simple: 'r2' }, expected: 'voters=(3) learners=(1)' },
      { op: { simple: 'r1' }, expected: 'voters=(3)' },
      // Removing an unknown node and node 0 ("none") change nothing.
      { op: { simple: 'r9 v0' }, expected: 'voters=(3)' },
      { op: { simple: 'v4 v5' }, error: 'more than one voter changed' },
      { op: { simple: 'v4 r3' }, error: 'more than one voter changed' },
      { op: { simple: 'r3' }, error: 'removed all voters' },
      // Adding and removing the same node is no net change.
      { op: { simple: 'v4 r4' }, expected: 'voters=(3)' },
      { op: { simple: 'v4' }, expected: 'voters=(3 4)' },
      { op: { simple: 'r3 r4' }, error: 'removed all voters' },
      { op: { simple: 'r3 l3' }, expected: 'voters=(4) learners=(3)' },
    ]);
  });

  it('cannot start from an empty config with two voters', () => {
    runScript([{ op: { simple: 'v1 v2' }, error: 'more than one voter changed' }]);
  });

  it('is refused in a joint config', () => {
    runScript([
      { op: { simple: 'v1' }, expected: 'voters=(1)' },
      { op: { simple: 'v2' }, expected: 'voters=(1 2)' },
      { op: { enterJoint: 'v3' }, expected: 'voters=(1 2 3)&&(1 2)' },
      { op: { simple: 'l4' }, error: 'simple config change in a joint config' },
    ]);
  });
});

describe('Changer.enterJoint and leaveJoint (thesis §4.3)', () => {
  it('replaces voters through a joint config', () => {
    runScript([
      { op: { simple: 'v1' }, expected: 'voters=(1)' },
      { op: { simple: 'v2' }, expected: 'voters=(1 2)' },
      { op: { simple: 'v3' }, expected: 'voters=(1 2 3)' },
      { op: { enterJoint: 'v4 r3' }, expected: 'voters=(1 2 4)&&(1 2 3)' },
      { op: { enterJoint: 'v5' }, error: 'already joint' },
      { op: { leaveJoint: true }, expected: 'voters=(1 2 4)' },
      { op: { leaveJoint: true }, error: "can't leave a non-joint config" },
      // A voter demoted while joint still votes in the outgoing half: it is staged.
      { op: { enterJoint: 'l1 v5', autoLeave: true }, expected: 'voters=(2 4 5)&&(1 2 4) learnersNext=(1) autoLeave' },
      { op: { leaveJoint: true }, expected: 'voters=(2 4 5) learners=(1)' },
      // A learner promoted and a voter removed in one joint step.
      { op: { enterJoint: 'v1 r5' }, expected: 'voters=(1 2 4)&&(2 4 5)' },
      { op: { leaveJoint: true }, expected: 'voters=(1 2 4)' },
      { op: { enterJoint: 'r1 r2 r4' }, error: 'removed all voters' },
      // Swapping every voter at once is what joint consensus is for.
      { op: { enterJoint: 'r1 r2 r4 v6 v7 v8' }, expected: 'voters=(6 7 8)&&(1 2 4)' },
      { op: { leaveJoint: true }, expected: 'voters=(6 7 8)' },
    ]);
  });

  it('unstages a demotion when the node is made a voter again in the same change', () => {
    runScript([
      { op: { simple: 'v1' }, expected: 'voters=(1)' },
      { op: { simple: 'v2' }, expected: 'voters=(1 2)' },
      { op: { enterJoint: 'l2 v2' }, expected: 'voters=(1 2)&&(1 2)' },
      { op: { leaveJoint: true }, expected: 'voters=(1 2)' },
    ]);
  });

  it('a staged learner that is removed is gone after leaving', () => {
    runScript([
      { op: { simple: 'v1' }, expected: 'voters=(1)' },
      { op: { simple: 'v2' }, expected: 'voters=(1 2)' },
      { op: { enterJoint: 'l2 r2' }, expected: 'voters=(1)&&(1 2)' },
      { op: { leaveJoint: true }, expected: 'voters=(1)' },
    ]);
  });

  it('cannot make the empty config joint', () => {
    runScript([{ op: { enterJoint: 'v1' }, error: 'zero-voter config joint' }]);
  });

  it('cannot leave a config that is not joint', () => {
    runScript([
      { op: { simple: 'v1' }, expected: 'voters=(1)' },
      { op: { leaveJoint: true }, error: "can't leave a non-joint config" },
    ]);
  });

  it('keeps a demoted voter replication state and never mutates its input', () => {
    let state = EMPTY;
    for (const op of [{ simple: 'v1' }, { simple: 'v2' }, { simple: 'v3' }]) state = run(state, op);
    state.progress.get(nodeId(3))!.match = 7;
    const demoted = run(state, { simple: 'l3' });
    expect(demoted.progress.get(nodeId(3))!.match).toBe(7);
    expect(demoted.progress.get(nodeId(3))!.isLearner).toBe(true);
    // The input is a different object graph: the original still sees a voter.
    expect(state.progress.get(nodeId(3))!.isLearner).toBe(false);
    expect(show(state)).toBe('voters=(1 2 3)');

    const joint = run(state, { enterJoint: 'l3 v4', autoLeave: true });
    const left = run(joint, { leaveJoint: true });
    expect(left.progress.get(nodeId(3))!.match).toBe(7);
    expect(left.progress.get(nodeId(3))!.isLearner).toBe(true);
    expect(joint.progress.get(nodeId(3))!.isLearner).toBe(false);
    expect(show(joint)).toBe('voters=(1 2 4)&&(1 2 3) learnersNext=(3) autoLeave');
  });

  it('configs without learners or an outgoing half share the empty ones, and no change alters them', () => {
    // Shared to save memory per replica; safe only while every change builds new sets.
    const voters3 = [{ simple: 'v1' }, { simple: 'v2' }, { simple: 'v3' }].reduce(run, EMPTY);
    const other = [{ simple: 'v4' }].reduce(run, EMPTY);
    expect(voters3.config.voters.outgoing).toBe(MajorityConfig.EMPTY);
    expect(voters3.config.learners).toBe(other.config.learners);
    expect(voters3.config.learnersNext).toBe(other.config.learners);
    const changed = [{ simple: 'l5' }, { enterJoint: 'l3 v6' }].reduce(run, voters3);
    expect(show(changed)).toBe('voters=(1 2 6)&&(1 2 3) learners=(5) learnersNext=(3)');
    expect(show(run(changed, { leaveJoint: true }))).toBe('voters=(1 2 6) learners=(3 5)');
    expect(MajorityConfig.EMPTY.size).toBe(0);
    expect([other.config.learners.size, other.config.learnersNext.size]).toEqual([0, 0]);
    expect(show(voters3)).toBe('voters=(1 2 3)');
  });

  it('new members probe from the last index and count as recently active', () => {
    const state = run(EMPTY, { simple: 'v1' });
    const p = state.progress.get(nodeId(1))!;
    expect(p.next).toBe(LAST_INDEX);
    expect(p.match).toBe(0);
    expect(p.recentActive).toBe(true);
    expect(p.state).toBe('probe');
  });
});

describe('enterJoint (whether a conf change goes through a joint config)', () => {
  const cases: Array<{ transition: ConfChangeTransition; spec: string; joint: boolean; autoLeave: boolean }> = [
    { transition: 'auto', spec: 'v2', joint: false, autoLeave: false },
    { transition: 'auto', spec: 'v2 v3', joint: true, autoLeave: true },
    { transition: 'implicit', spec: 'v2', joint: true, autoLeave: true },
    { transition: 'explicit', spec: 'v2', joint: true, autoLeave: false },
    { transition: 'explicit', spec: 'v2 v3', joint: true, autoLeave: false },
  ];
  for (const { transition, spec, joint, autoLeave } of cases) it(`${transition} with [${spec}]: joint ${joint}, autoLeave ${autoLeave}`, () => {
    expect(enterJoint({ changes: changes(spec), transition })).toEqual({ joint, autoLeave });
  });
});

// ---------------------------------------------------------------------------
// restoreConfig

const normalized = (cs: ConfState): ConfState => {
  const sorted = (ids: readonly NodeId[]): NodeId[] => [...ids].sort((a, b) => a - b);
  return { voters: sorted(cs.voters), votersOutgoing: sorted(cs.votersOutgoing), learners: sorted(cs.learners), learnersNext: sorted(cs.learnersNext), autoLeave: cs.autoLeave };
};

const confState = (options: Partial<Record<'voters' | 'votersOutgoing' | 'learners' | 'learnersNext', number[]>> & { autoLeave?: boolean }): ConfState => ({
  voters: (options.voters ?? []).map(nodeId),
  votersOutgoing: (options.votersOutgoing ?? []).map(nodeId),
  learners: (options.learners ?? []).map(nodeId),
  learnersNext: (options.learnersNext ?? []).map(nodeId),
  autoLeave: options.autoLeave ?? false,
});

/**
 * A valid ConfState: each node has one role. `outgoing` votes only in the
 * outgoing half, `both` in both, `stagedLearner` is an outgoing voter that
 * becomes a learner on leaving.
 */
const ROLES_SIMPLE = ['voter', 'learner'] as const;
const ROLES_JOINT = ['voter', 'learner', 'outgoing', 'both', 'stagedLearner'] as const;
const confStateArb: fc.Arbitrary<ConfState> = fc
  .boolean()
  .chain((isJoint) =>
    fc
      .uniqueArray(fc.record({ id: fc.integer({ min: 1, max: 12 }), role: fc.constantFrom(...(isJoint ? ROLES_JOINT : ROLES_SIMPLE)) }), {
        selector: (r) => r.id,
        maxLength: 9,
      })
      .map((members) => {
        const having = (...roles: string[]): number[] => members.filter((m) => roles.includes(m.role)).map((m) => m.id);
        return { members, having, isJoint };
      }),
  )
  .chain(({ having, isJoint }) =>
    fc.boolean().map((autoLeave) =>
      confState({
        voters: having('voter', 'both'),
        votersOutgoing: having('outgoing', 'both', 'stagedLearner'),
        learners: having('learner'),
        learnersNext: having('stagedLearner'),
        autoLeave: isJoint && having('outgoing', 'both', 'stagedLearner').length > 0 && autoLeave,
      }),
    ),
  )
  .filter((cs) => cs.voters.length > 0);

describe('restoreConfig', () => {
  it('rebuilds the etcd-raft example joint config', () => {
    // Voters (1 2 4 6) are moving to (1 2 3); 4 stays on as a learner; 5 is a learner.
    const cs = confState({ voters: [1, 2, 3], votersOutgoing: [1, 2, 4, 6], learners: [5], learnersNext: [4], autoLeave: true });
    const restored = restoreConfig(cs, LAST_INDEX, newProgress);
    expect(show(restored)).toBe('voters=(1 2 3)&&(1 2 4 6) learners=(5) learnersNext=(4) autoLeave');
    expectProgressMatchesConfig(restored);
  });

  it('restores the empty config to the empty config', () => {
    const restored = restoreConfig(confState({}), LAST_INDEX, newProgress);
    expect(confStateOf(restored.config)).toEqual(confState({}));
    expect(restored.progress.size).toBe(0);
  });

  it('refuses learners without voters', () => {
    expect(() => restoreConfig(confState({ learners: [2] }), LAST_INDEX, newProgress)).toThrow(InvalidConfChangeError);
  });

  it('round-trips any valid ConfState', () => {
    fc.assert(
      fc.property(confStateArb, (cs) => {
        const restored = restoreConfig(cs, LAST_INDEX, newProgress);
        expect(confStateOf(restored.config)).toEqual(normalized(cs));
        expectProgressMatchesConfig(restored);
        expect(restored.config.voters.isJoint).toBe(cs.votersOutgoing.length > 0);
      }),
      { seed: 42, numRuns: 1000 },
    );
  });
});

// ---------------------------------------------------------------------------
// Conf-change codec

const bytesOf = (json: string): Uint8Array => new TextEncoder().encode(json);

const confChangeArb: fc.Arbitrary<ConfChange> = fc
  .record({
    changes: fc.array(
      fc
        .tuple(fc.constantFrom('addNode' as const, 'removeNode' as const, 'addLearner' as const), fc.nat())
        .map(([type, id]): ConfChangeSingle => ({ type, nodeId: nodeId(id) })),
      { maxLength: 6 },
    ),
    transition: fc.constantFrom<ConfChangeTransition>('auto', 'implicit', 'explicit'),
    context: fc.option(fc.uint8Array({ maxLength: 16 }), { nil: undefined }),
  })
  .map(({ changes: list, transition, context }) => (context === undefined ? { changes: list, transition } : { changes: list, transition, context }));

describe('conf-change codec', () => {
  it('round-trips any conf change', () => {
    fc.assert(
      fc.property(confChangeArb, (cc) => {
        expect(decodeConfChange(encodeConfChange(cc))).toStrictEqual(cc);
      }),
      { seed: 42, numRuns: 1000 },
    );
  });

  it('round-trips the empty change (leave joint)', () => {
    const leave: ConfChange = { changes: [], transition: 'auto' };
    expect(decodeConfChange(encodeConfChange(leave))).toStrictEqual(leave);
  });

  const malformed: Array<{ name: string; data: Uint8Array }> = [
    { name: 'no bytes', data: new Uint8Array(0) },
    { name: 'not JSON', data: bytesOf('addNode 1') },
    { name: 'invalid UTF-8', data: Uint8Array.from([0x7b, 0xff, 0xfe, 0x7d]) },
    { name: 'null', data: bytesOf('null') },
    { name: 'a number', data: bytesOf('42') },
    { name: 'a string', data: bytesOf('"auto"') },
    { name: 'an array', data: bytesOf('[]') },
    { name: 'no change list', data: bytesOf('{"t":"auto"}') },
    { name: 'change list not an array', data: bytesOf('{"c":{},"t":"auto"}') },
    { name: 'no transition', data: bytesOf('{"c":[]}') },
    { name: 'unknown transition', data: bytesOf('{"c":[],"t":"sometimes"}') },
    { name: 'transition not a string', data: bytesOf('{"c":[],"t":1}') },
    { name: 'change not a pair', data: bytesOf('{"c":[["addNode"]],"t":"auto"}') },
    { name: 'change with extra field', data: bytesOf('{"c":[["addNode",1,2]],"t":"auto"}') },
    { name: 'change is null', data: bytesOf('{"c":[null],"t":"auto"}') },
    { name: 'change is an object', data: bytesOf('{"c":[{"type":"addNode","id":1}],"t":"auto"}') },
    { name: 'unknown change type', data: bytesOf('{"c":[["promote",1]],"t":"auto"}') },
    { name: 'negative node id', data: bytesOf('{"c":[["addNode",-1]],"t":"auto"}') },
    { name: 'fractional node id', data: bytesOf('{"c":[["addNode",1.5]],"t":"auto"}') },
    { name: 'node id as a string', data: bytesOf('{"c":[["addNode","1"]],"t":"auto"}') },
    { name: 'node id beyond 2^53', data: bytesOf('{"c":[["addNode",9007199254740992]],"t":"auto"}') },
    { name: 'context not an array', data: bytesOf('{"c":[],"t":"auto","x":"abc"}') },
    { name: 'context null', data: bytesOf('{"c":[],"t":"auto","x":null}') },
    { name: 'context byte above 255', data: bytesOf('{"c":[],"t":"auto","x":[256]}') },
    { name: 'context byte negative', data: bytesOf('{"c":[],"t":"auto","x":[-1]}') },
    { name: 'context byte fractional', data: bytesOf('{"c":[],"t":"auto","x":[1.5]}') },
    { name: 'context byte a string', data: bytesOf('{"c":[],"t":"auto","x":["1"]}') },
  ];
  for (const { name, data } of malformed) it(`rejects ${name} with INVALID_CONF_CHANGE`, () => {
    let thrown: unknown;
    try {
      decodeConfChange(data);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(InvalidConfChangeError);
    expect((thrown as InvalidConfChangeError).code).toBe('INVALID_CONF_CHANGE');
  });

  it('either decodes arbitrary JSON into a conf change that re-encodes identically, or rejects it', () => {
    fc.assert(
      fc.property(fc.json(), (json) => {
        let decoded: ConfChange;
        try {
          decoded = decodeConfChange(bytesOf(json));
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidConfChangeError);
          return;
        }
        expect(decodeConfChange(encodeConfChange(decoded))).toStrictEqual(decoded);
      }),
      { seed: 42, numRuns: 1000 },
    );
  });

  it('rejects arbitrary bytes only with InvalidConfChangeError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (data) => {
        try {
          decodeConfChange(data);
        } catch (err) {
          expect(err).toBeInstanceOf(InvalidConfChangeError);
        }
      }),
      { seed: 42, numRuns: 1000 },
    );
  });
});
