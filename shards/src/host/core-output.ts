import { assert } from '@flotilla/core';
import { toWire } from '../errors.js';
import type { CoreOutEvent, CoreOutput, CoreReply } from './core-protocol.js';
import { Outbox } from './outbox.js';

/**
 * What a core has gathered for the Host since its last flush: Raft traffic
 * per peer (the outbox), answers to requests, and events. A flush hands all
 * of it over as one CoreOutput; the round loop decides when (ShardCore).
 */
export class CoreOutputBuffer {
  readonly outbox = new Outbox();
  private replies: CoreReply[] = [];
  private events: CoreOutEvent[] = [];

  constructor(private readonly emit: (output: CoreOutput) => void) {}

  reply(id: number, value: unknown): void {
    this.replies.push({ id, ok: true, value });
  }

  /** Only errors with a stable code cross to the Host (../errors.ts toWire); anything else is our bug. */
  fail(id: number, err: unknown): void {
    const wire = toWire(err);
    assert(wire !== undefined, () => `request ${id} failed with an uncoded error: ${String(err)}`);
    this.replies.push({ id, ok: false, error: wire });
  }

  event(e: CoreOutEvent): void {
    this.events.push(e);
  }

  flush(): void {
    if (this.outbox.isEmpty() && this.replies.length === 0 && this.events.length === 0) return;
    const output: CoreOutput = { outbound: this.outbox.take(), replies: this.replies, events: this.events };
    this.replies = [];
    this.events = [];
    this.emit(output);
  }
}
