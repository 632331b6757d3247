import { encodeConfChange, nodeId, type ConfChange, type Entry } from '@flotilla/core';
import { describe, expect, it } from 'vitest';
import { addsBack } from '../src/replica/lifecycle.js';

const confEntry = (index: number, cc: ConfChange): Entry => ({ index, term: 1, type: 'confChange', data: encodeConfChange(cc) });
const normal = (index: number): Entry => ({ index, term: 1, type: 'normal', data: new Uint8Array([1]) });
const change = (type: 'addNode' | 'addLearner' | 'removeNode', node: number): ConfChange => ({ changes: [{ type, nodeId: nodeId(node) }], transition: 'auto' });

describe('a replica that applied its own removal', () => {
  it('is kept when its log past the removal adds its node back, as voter or learner, alone or in a joint change', () => {
    expect(addsBack([normal(5), confEntry(6, change('addLearner', 2))], nodeId(2))).toBe(true);
    expect(addsBack([confEntry(6, change('addNode', 2))], nodeId(2))).toBe(true);
    const move: ConfChange = { changes: [{ type: 'addNode', nodeId: nodeId(2) }, { type: 'removeNode', nodeId: nodeId(5) }], transition: 'explicit' };
    expect(addsBack([normal(5), confEntry(6, move)], nodeId(2))).toBe(true);
  });

  it('is destroyed when nothing past the removal adds its node back', () => {
    expect(addsBack([], nodeId(2))).toBe(false);
    expect(addsBack([normal(5), normal(6)], nodeId(2))).toBe(false);
    expect(addsBack([confEntry(6, change('addNode', 3)), confEntry(7, change('removeNode', 2))], nodeId(2))).toBe(false);
    expect(addsBack([confEntry(6, { changes: [], transition: 'explicit' })], nodeId(2))).toBe(false);
  });
});
