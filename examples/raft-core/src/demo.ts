// A live, narrated run of the Raft consensus core alone: what `flotilla dev`
// does underneath, slowed down and told step by step. Three replicas in this
// process, a real timer for ticks, an in-memory network and in-memory disks.
// It elects a leader, commits proposals, crashes the leader, elects another,
// commits more, restarts the crashed node from its stored log and shows it
// catching up; then it exits 0 (1 if the replicas disagree or the story stalls).
//
//   node dist/demo.js              the story once (about 7 s), then exit
//   node dist/demo.js --forever    crash and restart leaders until Ctrl-C
//   node dist/demo.js --seed 42    another (reproducible) sequence of elections
//
// The narration is for people, so it goes to stdout as plain sentences; the
// server logs structured records with pino instead.
import { parseArgs } from 'node:util';
import { nodeId, type Entry, type NodeId, type SoftState, type Term } from '@flotilla/core';
import { DemoCluster, type Member } from './demo-cluster.js';

const TICK_INTERVAL_MS = 50;
/** A follower campaigns after 10–19 ticks (0.5–0.95 s) without hearing from a leader. */
const ELECTION_TIMEOUT_TICKS = 10;
const HEARTBEAT_INTERVAL_TICKS = 1;
/** 300 ms between proposals, slow enough to read. */
const PROPOSAL_INTERVAL_TICKS = 6;
/** A pause between acts of the story. */
const PAUSE_TICKS = 10;
/** The story takes about 7 s; past this something is wrong, and the demo says so and exits 1 instead of hanging. */
const STORY_DURATION_MS_MAX = 20_000;
const NODE_IDS: readonly NodeId[] = [nodeId(1), nodeId(2), nodeId(3)];
const WORDS = ['apple', 'banana', 'cherry', 'damson', 'elderberry', 'fig', 'grape', 'huckleberry'];

const startedAtMs = Date.now();

function say(text: string): void {
  const now = new Date();
  const clock = now.toTimeString().slice(0, 8) + '.' + String(now.getMilliseconds()).padStart(3, '0');
  const elapsed = ((now.getTime() - startedAtMs) / 1_000).toFixed(2).padStart(6);
  console.log(`${clock} +${elapsed}s  ${text}`);
}

const quoted = (entries: readonly Entry[]): string => entries.map((e) => `#${e.index} "${new TextDecoder().decode(e.data)}"`).join(', ');

function onRoleChanged(member: Member, soft: SoftState, term: Term): void {
  const id = member.id;
  switch (soft.role) {
    case 'preCandidate':
      return say(`node ${id} heard no leader for a while and asks the others whether it could win an election (pre-vote)`);
    case 'candidate':
      return say(`node ${id} starts an election for term ${term} and votes for itself`);
    case 'leader':
      return say(`>>> node ${id} is elected LEADER for term ${term} (it appends an empty entry to commit everything before its term, §5.4.2)`);
    case 'follower':
      if (soft.leader !== 0) say(`node ${id} follows leader ${soft.leader} (term ${term})`);
      return;
  }
}

function onApplied(member: Member, entries: readonly Entry[]): void {
  const replayed = entries.filter((e) => e.index <= member.replayIndexMax);
  const fresh = entries.filter((e) => e.index > member.replayIndexMax);
  if (replayed.length > 0) say(`node ${member.id} re-applied ${quoted(replayed)} from its own stored log`);
  if (fresh.length === 0) return;
  if (member.node?.status().softState.role === 'leader') say(`committed ${quoted(fresh)} (a majority stored it); applied on node ${member.id}, the leader`);
  else say(`    applied ${quoted(fresh)} on node ${member.id}`);
}

/**
 * The script, one step per tick: `yield` waits for the next tick. A generator
 * keeps the story readable top to bottom while the timer drives it.
 */
function* story(cluster: DemoCluster, forever: boolean): Generator<void, void, void> {
  let wordIndex = 0;
  const nextWord = (): string => {
    const cycle = Math.floor(wordIndex / WORDS.length) + 1;
    return `${WORDS[wordIndex++ % WORDS.length]}${cycle > 1 ? `-${cycle}` : ''}`;
  };
  function* pause(ticks: number) {
    for (let i = 0; i < ticks; i++) yield;
  }
  function* proposeSome(count: number) {
    for (let i = 0; i < count; i++) {
      const value = nextWord();
      while (cluster.leader() === undefined) yield;
      say(`client proposes "${value}" to leader node ${cluster.leader()!.id}`);
      cluster.propose(value);
      yield* pause(PROPOSAL_INTERVAL_TICKS);
    }
  }
  /** Waits until every live node has applied everything the leader committed. */
  function* allCaughtUp() {
    for (;;) {
      const commit = cluster.leader()?.node!.status().hardState.commit;
      if (commit !== undefined && cluster.live().every((m) => m.appliedIndex === commit)) return;
      yield;
    }
  }

  say('three nodes start as followers; nobody is leader yet');
  while (cluster.leader() === undefined) yield;
  yield* pause(PAUSE_TICKS);
  yield* proposeSome(3);
  yield* allCaughtUp();

  for (;;) {
    yield* pause(PAUSE_TICKS);
    const crashed = cluster.leader()!;
    const crashedTerm = crashed.node!.status().hardState.term;
    cluster.crash(crashed.id);
    const hs = crashed.storage.initialState().hardState;
    say(`!!! CRASH: node ${crashed.id}, the leader, stops. Its memory is gone; its stored log survives (last index ${crashed.storage.lastIndex()}, term ${hs.term}, commit ${hs.commit})`);
    say(`the other two stop hearing heartbeats; one of them will start an election in 0.5–1 s`);
    while ((cluster.leader()?.node!.status().hardState.term ?? 0) <= crashedTerm) yield;
    yield* pause(PAUSE_TICKS);
    yield* proposeSome(3);
    yield* allCaughtUp();
    yield* pause(PAUSE_TICKS);

    say(`RESTART: node ${crashed.id} comes back from its stored log; it re-applies what it had committed, then the leader sends what it missed`);
    cluster.restart(crashed.id);
    yield* allCaughtUp();
    const leader = cluster.leader()!;
    say(`>>> node ${crashed.id} has caught up: applied through index ${crashed.appliedIndex}, the same as leader node ${leader.id}`);
    yield* pause(PAUSE_TICKS);
    yield* proposeSome(2);
    yield* allCaughtUp();
    if (!forever) return;
  }
}

function summarize(cluster: DemoCluster): boolean {
  say('final state of each node:');
  for (const m of cluster.members) {
    const status = m.node?.status();
    const role = status === undefined ? 'down' : `${status.softState.role}, term ${status.hardState.term}`;
    say(`  node ${m.id} (${role}): log up to index ${m.storage.lastIndex()}, applied ${m.appliedIndex}: ${m.values.join(' ') || '(nothing)'}`);
  }
  // Live nodes may lag by what was committed in the last instant, so compare prefixes.
  const live = cluster.live().map((m) => m.values);
  const longest = live.reduce((a, b) => (b.length > a.length ? b : a), []);
  const agree = live.every((values) => values.every((v, i) => v === longest[i]));
  const who = live.length === cluster.members.length ? 'all three nodes' : `the ${live.length} running nodes`;
  say(agree ? `${who} applied the same proposals in the same order.` : 'ERROR: the nodes applied different proposals — this is a bug in the core');
  return agree;
}

function main(): void {
  const { values } = parseArgs({ options: { forever: { type: 'boolean' }, seed: { type: 'string' } } });
  const forever = values.forever === true;
  const seed = Number(values.seed ?? 7);
  console.log('Flotilla core demo — an in-memory demo of the Raft consensus core, NOT the key-value server (`npm start` runs that).');
  console.log(`Three replicas of one Raft group run in this process: messages travel through an in-memory queue, each node's "disk"`);
  console.log(`is an in-memory log, and a real ${TICK_INTERVAL_MS} ms timer drives the clock. Seed ${seed}.`);
  console.log(forever ? 'Running until Ctrl-C.\n' : 'The story takes about 7 seconds, then the demo exits (--forever keeps crashing and restarting leaders).\n');

  const cluster = new DemoCluster({
    nodeIds: NODE_IDS,
    seed,
    electionTimeoutTicks: ELECTION_TIMEOUT_TICKS,
    heartbeatIntervalTicks: HEARTBEAT_INTERVAL_TICKS,
    events: { roleChanged: onRoleChanged, applied: onApplied },
  });
  const script = story(cluster, forever);

  const stop = (exitCode: number): void => {
    clearInterval(ticker);
    clearTimeout(deadline);
    process.off('SIGINT', onInterrupt);
    const agree = summarize(cluster);
    process.exitCode = agree ? exitCode : 1;
  };
  const onInterrupt = (): void => {
    console.log();
    say('interrupted (Ctrl-C): stopping the timer');
    stop(0);
  };
  // An exception here (an assertion in the core, say) is not caught: it ends the process with its stack and exit code 1.
  const ticker = setInterval(() => {
    cluster.tick();
    if (script.next().done === true) {
      say('the story is over: leader elected, proposals committed, leader crashed, new leader elected, old node restarted and caught up.');
      stop(0);
    }
  }, TICK_INTERVAL_MS);
  const deadline = forever
    ? undefined
    : setTimeout(() => {
        say(`ERROR: the story did not finish within ${STORY_DURATION_MS_MAX / 1_000} s`);
        stop(1);
      }, STORY_DURATION_MS_MAX);
  process.on('SIGINT', onInterrupt);
}

main();
