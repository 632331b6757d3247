// One-line descriptions of messages and Readys for the simulator's trace.
import type { Message, Ready } from '@flotilla/core';

export function describeMessage(m: Message): string {
  const head = `${m.type} ${m.from}>${m.to} t${m.term}`;
  switch (m.type) {
    case 'append':
      return `${head} prev=${m.index}/${m.logTerm} ents=${m.entries.length > 0 ? `${m.entries[0]!.index}..${m.entries[m.entries.length - 1]!.index}` : '-'} commit=${m.commit}`;
    case 'appendResponse':
      return `${head} index=${m.index}${m.reject ? ` reject hint=${m.rejectHint}/${m.logTerm}` : ''}`;
    case 'vote':
    case 'preVote':
      return `${head} last=${m.index}/${m.logTerm}${m.transfer ? ' transfer' : ''}`;
    case 'voteResponse':
    case 'preVoteResponse':
      return `${head}${m.reject ? ' reject' : ' grant'}`;
    case 'heartbeat':
      return `${head} commit=${m.commit} round=${m.round}`;
    case 'heartbeatResponse':
      return `${head} round=${m.round}`;
    case 'snapshot':
      return `${head} snap=${m.snapshot.metadata.index}/${m.snapshot.metadata.term}`;
    case 'readIndexResponse':
      return `${head} index=${m.index} ctx=${m.contexts.join(',')}`;
    case 'readIndex':
      return `${head} ctx=${m.contexts.join(',')}`;
    case 'propose':
      return `${head} ents=${m.entries.length}`;
    default:
      return head;
  }
}

export function describeReady(rd: Ready): string {
  const parts: string[] = [];
  if (rd.softState !== undefined) parts.push(`soft=${rd.softState.role}/lead${rd.softState.leader}`);
  if (rd.hardState !== undefined) parts.push(`hard=t${rd.hardState.term}/v${rd.hardState.vote}/c${rd.hardState.commit}`);
  if (rd.snapshot !== undefined) parts.push(`snap=${rd.snapshot.metadata.index}/${rd.snapshot.metadata.term}`);
  if (rd.entries.length > 0) parts.push(`ents=${rd.entries[0]!.index}..${rd.entries[rd.entries.length - 1]!.index}`);
  if (rd.committedEntries.length > 0) parts.push(`apply=${rd.committedEntries[0]!.index}..${rd.committedEntries[rd.committedEntries.length - 1]!.index}`);
  if (rd.messages.length > 0) parts.push(`msgs=${rd.messages.length}`);
  if (rd.messagesAfterPersist.length > 0) parts.push(`msgsAfterPersist=${rd.messagesAfterPersist.length}`);
  if (rd.readStates.length > 0) parts.push(`reads=${rd.readStates.map((r) => `${r.context}@${r.index}`).join(',')}`);
  if (rd.droppedReads.length > 0) parts.push(`droppedReads=${rd.droppedReads.join(',')}`);
  return parts.join(' ');
}
