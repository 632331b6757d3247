import { describe, expect, it } from 'vitest';
import { Liveness } from '../src/host/liveness.js';

describe('node liveness (ticks only, no clock)', () => {
  it('pings a peer that got nothing for the interval, and not one that just got a frame', () => {
    const l = new Liveness({ intervalTicks: 2, timeoutTicks: 10 });
    l.track(2, 0);
    l.track(3, 0);
    expect(l.onTick(1).ping).toEqual([2, 3]); // never sent to
    l.sent(2, 1);
    l.sent(3, 1);
    expect(l.onTick(2).ping).toEqual([]);
    l.sent(3, 2);
    expect(l.onTick(3).ping).toEqual([2]);
  });

  it('declares a peer down after the timeout of silence, once, and up again when heard', () => {
    const l = new Liveness({ intervalTicks: 2, timeoutTicks: 10 });
    l.track(2, 0);
    for (let t = 1; t <= 10; t++) expect(l.onTick(t).down, `tick ${t}`).toEqual([]);
    expect(l.onTick(11).down).toEqual([2]);
    expect(l.onTick(12).down).toEqual([]);
    expect(l.livePeers()).toEqual([]);
    l.heard(2, 12);
    expect(l.onTick(13)).toMatchObject({ up: [2], down: [] });
    expect(l.livePeers()).toEqual([2]);
    expect(l.silentTicks(2, 20)).toBe(8);
  });

  it('gives a newly tracked peer a full timeout and ignores frames from untracked nodes', () => {
    const l = new Liveness({ intervalTicks: 2, timeoutTicks: 5 });
    l.track(2, 100);
    expect(l.onTick(105).down).toEqual([]);
    expect(l.onTick(106).down).toEqual([2]);
    l.heard(9, 106);
    expect(l.livePeers()).toEqual([]);
    l.untrack(2);
    expect(l.onTick(200)).toEqual({ ping: [], down: [], up: [] });
  });

  it('answers livePeers anew after every track, untrack, down and up (the answer is kept in between)', () => {
    const l = new Liveness({ intervalTicks: 2, timeoutTicks: 5 });
    expect(l.livePeers()).toEqual([]);
    l.track(3, 0);
    l.track(2, 0);
    expect(l.livePeers()).toEqual([2, 3]);
    expect(l.livePeers()).toBe(l.livePeers());
    l.heard(3, 5);
    expect(l.onTick(6).down).toEqual([2]);
    expect(l.livePeers()).toEqual([3]);
    l.heard(2, 7);
    expect(l.onTick(7).up).toEqual([2]);
    expect(l.livePeers()).toEqual([2, 3]);
    l.untrack(3);
    expect(l.livePeers()).toEqual([2]);
  });

  it('refuses a timeout not above the ping interval (a peer could never miss a ping)', () => {
    expect(() => new Liveness({ intervalTicks: 5, timeoutTicks: 5 })).toThrow(/must exceed/);
  });
});
