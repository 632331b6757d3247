// The crash child's stdout protocol: one line per event, space-separated.
//
// Before every operation that changes durable state the child writes an
// intent line, synchronously, so that it reaches the pipe before the first
// byte reaches LMDB; after the operation's promise resolves it writes the
// acknowledgements. The parent therefore knows, for every kill, the last
// acknowledged state and the at most one operation that may or may not
// have become durable.
//
//   create <shard>                                        created <shard>
//   round <shard>:<from>:<last>:<term>:<hsTerm>:<vote>:<commit> … | <shard>:<to> …
//                                                         ack <shard> <lastIndex> <lastTerm> <commit>   (one per write)
//                                                         applied <shard> <to>                          (one per apply target)
//   compact <shard> <upTo>                                compacted <shard> <upTo>
//   install <shard> <index> <term> <hsTerm> <vote> <commit>
//                                                         installed <shard> <index>
//   stage <shard> <index> <seq>                           staged <shard> <index> <seq>   (staging is not visible state)
//   abort <shard> <index>                                 aborted <shard> <index>        (receive mode: a transfer cleared)
//   destroy <shard>                                       destroyed <shard>              (receive mode: destroyed and created empty)
//   start, ready                                          (process milestones)
//
// A round is the Host's write (ShardCore.round): one NodeStore.persist of the
// writes before `|` whose transaction also runs the state machine's staged
// apply of the targets after it (`alsoInTransaction`), so log, hard state,
// data and applied index commit together. Either side may be empty, not both:
// the Host's rounds are log-only, log + apply, or apply-only (a checksum
// segment after the first). In a write, from = last + 1 means "no entries,
// hard state only"; all entries of one write carry `term`. An apply target
// may reach entries the same round writes (up to the round's new commit).

export interface HardStateLine {
  readonly term: number;
  readonly vote: number;
  readonly commit: number;
}

export interface WriteIntent {
  readonly shard: number;
  readonly from: number;
  readonly last: number;
  readonly term: number;
  readonly hardState: HardStateLine;
}

export interface ApplyTarget {
  readonly shard: number;
  readonly to: number;
}

export type Intent =
  | { readonly kind: 'create'; readonly shard: number }
  /**
   * `checkpoint`: the round's transaction also moves the store's log tail into the per-shard records;
   * `compact`: the shards that checkpoint may compact to their applied index (NodeStore.setCheckpointCompaction),
   * those of them the tail holds.
   */
  | { readonly kind: 'round'; readonly writes: readonly WriteIntent[]; readonly targets: readonly ApplyTarget[]; readonly checkpoint?: boolean; readonly compact?: readonly number[] }
  | { readonly kind: 'compact'; readonly shard: number; readonly upTo: number }
  | { readonly kind: 'install'; readonly shard: number; readonly index: number; readonly term: number; readonly hardState: HardStateLine };

export type Ack =
  | { readonly kind: 'created'; readonly shard: number }
  | { readonly kind: 'ack'; readonly shard: number; readonly lastIndex: number; readonly lastTerm: number; readonly commit: number }
  | { readonly kind: 'applied'; readonly shard: number; readonly index: number }
  | { readonly kind: 'compacted'; readonly shard: number; readonly upTo: number }
  | { readonly kind: 'installed'; readonly shard: number; readonly index: number };

export type Info =
  | { readonly kind: 'start' }
  | { readonly kind: 'ready' }
  | { readonly kind: 'stage' | 'staged'; readonly shard: number; readonly index: number; readonly seq: number }
  | { readonly kind: 'abort' | 'aborted'; readonly shard: number; readonly index: number }
  | { readonly kind: 'destroy' | 'destroyed'; readonly shard: number };

export type Line = Intent | Ack | Info;

export const ACK_KINDS: ReadonlySet<string> = new Set(['created', 'ack', 'applied', 'compacted', 'installed']);
export const INTENT_KINDS: ReadonlySet<string> = new Set(['create', 'round', 'compact', 'install']);

export function formatLine(line: Line): string {
  switch (line.kind) {
    case 'create':
    case 'created':
      return `${line.kind} ${line.shard}`;
    case 'round': {
      const writes = line.writes.map((w) => [w.shard, w.from, w.last, w.term, w.hardState.term, w.hardState.vote, w.hardState.commit].join(':'));
      const compact = line.compact !== undefined && line.compact.length > 0 ? [`compact=${line.compact.join(',')}`] : [];
      return ['round', ...(line.checkpoint === true ? ['checkpoint', ...compact] : []), ...writes, '|', ...line.targets.map((t) => `${t.shard}:${t.to}`)].join(' ');
    }
    case 'ack':
      return `ack ${line.shard} ${line.lastIndex} ${line.lastTerm} ${line.commit}`;
    case 'applied':
      return `applied ${line.shard} ${line.index}`;
    case 'compact':
    case 'compacted':
      return `${line.kind} ${line.shard} ${line.upTo}`;
    case 'install':
      return `install ${line.shard} ${line.index} ${line.term} ${line.hardState.term} ${line.hardState.vote} ${line.hardState.commit}`;
    case 'installed':
      return `installed ${line.shard} ${line.index}`;
    case 'stage':
    case 'staged':
      return `${line.kind} ${line.shard} ${line.index} ${line.seq}`;
    case 'abort':
    case 'aborted':
      return `${line.kind} ${line.shard} ${line.index}`;
    case 'destroy':
    case 'destroyed':
      return `${line.kind} ${line.shard}`;
    case 'start':
    case 'ready':
      return line.kind;
  }
}

/** Parses one line; throws on anything malformed (a child bug, or a torn line, which the pipe never produces). */
export function parseLine(text: string): Line {
  const [kind, ...words] = text.trim().split(' ');
  let rest = words;
  const ints = (parts: readonly string[], count: number): number[] => {
    if (parts.length !== count) throw new Error(`line "${text}": expected ${count} numbers`);
    return parts.map((p) => {
      const n = Number(p);
      if (!Number.isSafeInteger(n) || n < 0) throw new Error(`line "${text}": "${p}" is not a non-negative integer`);
      return n;
    });
  };
  switch (kind) {
    case 'create':
    case 'created':
      return { kind, shard: ints(rest, 1)[0]! };
    case 'round': {
      const checkpoint = rest[0] === 'checkpoint';
      if (checkpoint) rest = rest.slice(1);
      const compact = checkpoint && rest[0]?.startsWith('compact=') === true ? (() => { const parts = rest[0]!.slice('compact='.length).split(','); return ints(parts, parts.length); })() : undefined;
      if (compact !== undefined) rest = rest.slice(1);
      const bar = rest.indexOf('|');
      if (bar < 0 || rest.indexOf('|', bar + 1) >= 0) throw new Error(`line "${text}": a round needs exactly one "|" between writes and apply targets`);
      if (rest.length === 1) throw new Error(`line "${text}": a round without writes or apply targets`);
      const writes = rest.slice(0, bar).map((part) => {
        const [shard, from, last, term, hsTerm, vote, commit] = ints(part.split(':'), 7) as [number, number, number, number, number, number, number];
        return { shard, from, last, term, hardState: { term: hsTerm, vote, commit } };
      });
      const targets = rest.slice(bar + 1).map((part) => {
        const [shard, to] = ints(part.split(':'), 2) as [number, number];
        return { shard, to };
      });
      if (!checkpoint) return { kind, writes, targets };
      return compact === undefined ? { kind, writes, targets, checkpoint } : { kind, writes, targets, checkpoint, compact };
    }
    case 'ack': {
      const [shard, lastIndex, lastTerm, commit] = ints(rest, 4) as [number, number, number, number];
      return { kind, shard, lastIndex, lastTerm, commit };
    }
    case 'applied': {
      const [shard, index] = ints(rest, 2) as [number, number];
      return { kind, shard, index };
    }
    case 'compact':
    case 'compacted': {
      const [shard, upTo] = ints(rest, 2) as [number, number];
      return { kind, shard, upTo };
    }
    case 'install': {
      const [shard, index, term, hsTerm, vote, commit] = ints(rest, 6) as [number, number, number, number, number, number];
      return { kind, shard, index, term, hardState: { term: hsTerm, vote, commit } };
    }
    case 'installed': {
      const [shard, index] = ints(rest, 2) as [number, number];
      return { kind, shard, index };
    }
    case 'stage':
    case 'staged': {
      const [shard, index, seq] = ints(rest, 3) as [number, number, number];
      return { kind, shard, index, seq };
    }
    case 'abort':
    case 'aborted': {
      const [shard, index] = ints(rest, 2) as [number, number];
      return { kind, shard, index };
    }
    case 'destroy':
    case 'destroyed':
      return { kind, shard: ints(rest, 1)[0]! };
    case 'start':
    case 'ready':
      ints(rest, 0);
      return { kind };
    default:
      throw new Error(`unknown line "${text}"`);
  }
}
