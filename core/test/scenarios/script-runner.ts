// Interprets scenario scripts (core/testdata/*.txt) against a RawNode cluster
// and renders what happened as text, so a scenario and its expected output
// can be read side by side and a behaviour change shows up as a diff.
//
// One command per line; `#` starts a comment. Commands that act on a replica
// only call its API; time and the network move only in `tick`, `process`,
// `deliver` and `stabilize`. Each command's output lists the messages sent
// while it ran (with their fate when a rule intervened), role/term/leader
// changes (`~`), reads answered or dropped, and refused requests (`!`).
//
//   cluster voters=1,2,3 [learners=4] [checkQuorum=true] [preVote=true] [readMode=safe|lease] [seed=1]
//   add-replica 4 [bootstrap]      start a replica (empty storage, or the initial configuration)
//   campaign 1 | propose 1 data | read 1 ctx | transfer 1 2
//   conf 1 auto|implicit|explicit [add=4] [remove=1] [learner=5]   (no changes: leave the joint config)
//   tick [count] [ids=1,2]         tick, letting the network settle after each tick (prints a summary)
//   process | deliver | stabilize  handle Readys | and one network hop | until quiet
//   partition 1 | 2 3 ; isolate 1 ; cut 1 2 ; drop heartbeat append ; hold snapshot ; release ; heal
//   stop 1 | restart 1 | compact 1 | report-snapshot 1 3 failed|finished
//   status [1,2]                   one line per replica
import { FlotillaError } from '../../src/errors.js';
import type { ReadMode } from '../../src/raft.js';
import { NETWORK_MESSAGE_TYPES, nodeId, type ConfChange, type ConfChangeSingle, type Message, type NodeId } from '../../src/types.js';
import { storageWith } from '../helpers.js';
import { Cluster, describeMessage, type ReplicaConfig } from './rawnode-cluster.js';

interface Observed {
  role: string;
  term: number;
  lead: number;
  readStates: number;
  droppedReads: number;
}

export class ScriptRunner {
  private cluster: Cluster | undefined;
  private config: ReplicaConfig = {};
  private initialVoters: number[] = [];
  private readonly out: string[] = [];

  /** Runs a whole script and returns its rendered output. */
  run(script: string): string {
    script.split('\n').forEach((raw, i) => {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) {
        this.out.push(raw.trimEnd());
        return;
      }
      this.out.push(`> ${line}`);
      try {
        this.command(line);
      } catch (err) {
        if (err instanceof FlotillaError) this.out.push(`! ${err.code}: ${err.message}`);
        else throw new Error(`line ${i + 1} "${line}": ${(err as Error).message}`);
      }
    });
    return `${this.out.join('\n').trimEnd()}\n`;
  }

  private get c(): Cluster {
    if (this.cluster === undefined) throw new Error('the script must start with a `cluster` command');
    return this.cluster;
  }

  private command(line: string): void {
    const [name, ...args] = line.split(/\s+/) as [string, ...string[]];
    const options = Object.fromEntries(args.filter((a) => a.includes('=')).map((a) => a.split('=') as [string, string]));
    const positional = args.filter((a) => !a.includes('='));
    const num = (i: number): number => {
      const v = Number(positional[i]);
      if (!Number.isInteger(v)) throw new Error(`argument ${i + 1} of ${name} must be an integer`);
      return v;
    };
    if (name === 'cluster') return this.startCluster(options);

    const before = this.observe();
    const traceStart = this.c.trace.length;
    let summarize = false;
    switch (name) {
      case 'add-replica':
        this.c.addReplica(num(0), {
          storage: positional[1] === 'bootstrap' ? storageWith({ voters: this.initialVoters }) : undefined,
          config: this.config,
        });
        break;
      case 'campaign':
        this.c.node(num(0)).campaign();
        break;
      case 'propose':
        this.c.propose(num(0), positional[1] ?? '', { stabilize: false });
        break;
      case 'read':
        this.c.readIndex(num(0), positional[1] ?? '', { stabilize: false });
        break;
      case 'transfer':
        this.c.transferLeader(num(0), num(1), { stabilize: false });
        break;
      case 'conf':
        this.c.proposeConfChange(num(0), this.parseConfChange(positional[1], options), { stabilize: false });
        break;
      case 'tick':
        this.c.tick({ count: positional[0] === undefined ? 1 : num(0), ids: options['ids']?.split(',').map(Number) });
        summarize = true;
        break;
      case 'process':
        this.c.processReadys();
        break;
      case 'deliver':
        this.c.processReadys();
        this.c.deliver();
        this.c.processReadys();
        break;
      case 'stabilize':
        this.c.stabilize();
        break;
      case 'partition':
        this.c.partition(...line.slice('partition'.length).split('|').map((g) => g.trim().split(/\s+/).map(Number)));
        break;
      case 'isolate':
        this.c.isolate(num(0));
        break;
      case 'cut':
        this.c.cut(num(0), num(1));
        break;
      case 'drop':
        this.c.dropType(...this.messageTypes(positional));
        break;
      case 'hold': {
        const types = this.messageTypes(positional);
        this.c.hold((m) => types.includes(m.type));
        break;
      }
      case 'release':
        this.c.release();
        break;
      case 'heal':
        this.c.heal();
        break;
      case 'stop':
        this.c.stop(num(0));
        break;
      case 'restart':
        this.c.restart(num(0));
        break;
      case 'compact':
        this.c.compact(num(0));
        break;
      case 'report-snapshot':
        this.c.node(num(0)).reportSnapshot(nodeId(num(1)), positional[2] === 'failed' ? 'failed' : 'finished');
        break;
      case 'status':
        this.status(positional[0]?.split(',').map(Number));
        return;
      default:
        throw new Error(`unknown command ${name}`);
    }
    this.report(before, this.c.trace.slice(traceStart).map((s) => s.fate === 'delivered' ? describeMessage(s.message) : `${describeMessage(s.message)} (${s.fate})`), summarize);
  }

  private startCluster(options: Record<string, string>): void {
    const list = (v: string | undefined): number[] => (v === undefined || v === '' ? [] : v.split(',').map(Number));
    const flag = (v: string | undefined, fallback: boolean): boolean => (v === undefined ? fallback : v === 'true');
    this.initialVoters = list(options['voters']);
    this.config = {
      checkQuorum: flag(options['checkQuorum'], true),
      preVote: flag(options['preVote'], true),
      readMode: (options['readMode'] ?? 'safe') as ReadMode,
    };
    this.cluster = new Cluster({ voters: this.initialVoters, learners: list(options['learners']), config: this.config, seed: Number(options['seed'] ?? 1) });
  }

  private parseConfChange(transition: string | undefined, options: Record<string, string>): ConfChange {
    if (transition !== 'auto' && transition !== 'implicit' && transition !== 'explicit') throw new Error(`conf needs a transition, got ${transition}`);
    const changes: ConfChangeSingle[] = [];
    const add = (key: string, type: ConfChangeSingle['type']): void => {
      for (const id of options[key]?.split(',') ?? []) changes.push({ type, nodeId: nodeId(Number(id)) });
    };
    add('add', 'addNode');
    add('remove', 'removeNode');
    add('learner', 'addLearner');
    return { transition, changes };
  }

  private messageTypes(names: string[]): Message['type'][] {
    for (const n of names) if (!NETWORK_MESSAGE_TYPES.has(n as Message['type'])) throw new Error(`unknown message type ${n}`);
    return names as Message['type'][];
  }

  private observe(): Map<NodeId, Observed> {
    const seen = new Map<NodeId, Observed>();
    for (const [id, r] of this.c.replicas) {
      const raft = r.node.raft;
      seen.set(id, { role: raft.role, term: raft.term, lead: raft.lead, readStates: r.readStates.length, droppedReads: r.droppedReads.length });
    }
    return seen;
  }

  private report(before: Map<NodeId, Observed>, messages: string[], summarize: boolean): void {
    if (summarize) {
      const counts = new Map<string, number>();
      for (const s of messages) {
        const type = s.split(' ')[1]!;
        counts.set(type, (counts.get(type) ?? 0) + 1);
      }
      if (counts.size > 0) this.out.push(`messages: ${[...counts].map(([t, n]) => `${t}×${n}`).join(' ')}`);
    } else {
      this.out.push(...messages);
    }
    for (const [id, r] of [...this.c.replicas].sort(([a], [b]) => a - b)) {
      const raft = r.node.raft;
      const was = before.get(id);
      if (was === undefined || was.role !== raft.role || was.term !== raft.term || was.lead !== raft.lead) {
        this.out.push(`~ ${id}: ${raft.role} term=${raft.term} lead=${raft.lead}`);
      }
      for (const rs of r.readStates.slice(was?.readStates ?? 0)) this.out.push(`~ ${id}: read ${rs.context} at index ${rs.index}`);
      for (const ctx of r.droppedReads.slice(was?.droppedReads ?? 0)) this.out.push(`~ ${id}: read ${ctx} dropped`);
    }
  }

  private status(ids: number[] | undefined): void {
    for (const [id, r] of [...this.c.replicas].sort(([a], [b]) => a - b)) {
      if (ids !== undefined && !ids.includes(id)) continue;
      const s = r.node.status();
      const cs = s.config;
      const parts = [
        `${id}:`,
        r.up ? s.softState.role : 'down',
        `term=${s.hardState.term}`,
        `lead=${s.softState.leader}`,
        `commit=${s.hardState.commit}`,
        `applied=${s.applied}`,
        `last=${s.lastIndex}`,
        `voters=(${cs.voters.join(' ')})${cs.votersOutgoing.length > 0 ? `&&(${cs.votersOutgoing.join(' ')})` : ''}`,
      ];
      if (cs.learners.length > 0) parts.push(`learners=(${cs.learners.join(' ')})`);
      if (cs.learnersNext.length > 0) parts.push(`learnersNext=(${cs.learnersNext.join(' ')})`);
      if (cs.autoLeave) parts.push('autoLeave');
      if (s.leadTransferee !== 0) parts.push(`transferee=${s.leadTransferee}`);
      if (s.leaseValid) parts.push('lease');
      const first = r.storage.firstIndex();
      if (first > 1) parts.push(`snapshot=${first - 1}`);
      parts.push(`sm=[${r.stateMachine.join(' ')}]`);
      this.out.push(parts.join(' '));
    }
  }
}
