// The replicated state machine: an append-only list of client values, each
// with the log index it was applied at. Small enough to snapshot as JSON.
import type { Entry, LogIndex } from '@flotilla/core';

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

export interface AppliedValue {
  readonly index: LogIndex;
  readonly value: string;
}

export class StateMachine {
  appliedIndex: LogIndex;
  private readonly values: AppliedValue[];
  private readonly valueSet: Set<string>;

  private constructor(appliedIndex: LogIndex, values: AppliedValue[]) {
    this.appliedIndex = appliedIndex;
    this.values = values;
    this.valueSet = new Set(values.map((v) => v.value));
  }

  static empty(): StateMachine {
    return new StateMachine(0, []);
  }

  /** The state machine held in a snapshot taken at `index`. */
  static fromImage(image: Uint8Array, index: LogIndex): StateMachine {
    const pairs = image.byteLength === 0 ? [] : (JSON.parse(decoder.decode(image)) as [number, string][]);
    return new StateMachine(
      index,
      pairs.map(([i, value]) => ({ index: i, value })),
    );
  }

  image(): Uint8Array {
    return encoder.encode(JSON.stringify(this.values.map((v) => [v.index, v.value])));
  }

  /** Applies a normal entry; the leader's empty entries change nothing but the applied index. */
  applyNormal(e: Entry): void {
    if (e.data.byteLength > 0) {
      const value = decoder.decode(e.data);
      this.values.push({ index: e.index, value });
      this.valueSet.add(value);
    }
    this.appliedIndex = e.index;
  }

  /** A conf change entry only moves the applied index here; membership lives on the disk. */
  applyConfChange(e: Entry): void {
    this.appliedIndex = e.index;
  }

  has(value: string): boolean {
    return this.valueSet.has(value);
  }

  contents(): readonly AppliedValue[] {
    return this.values;
  }
}

export function encodeValue(value: string): Uint8Array {
  return encoder.encode(value);
}

export function decodeText(data: Uint8Array): string {
  return decoder.decode(data);
}
