// The simulator's event trace. Building trace lines costs more than the
// simulation itself, so every call site checks `enabled` first; a disabled
// tracer is free.

export interface Tracer {
  readonly enabled: boolean;
  emit(line: string): void;
}

export const NO_TRACE: Tracer = Object.freeze({ enabled: false, emit: (): void => {} });

/** Keeps every line (determinism tests compare two runs line by line). */
export class CollectingTracer implements Tracer {
  readonly enabled = true;
  readonly lines: string[] = [];
  emit(line: string): void {
    this.lines.push(line);
  }
}

/** Keeps the last `lineCountMax` lines: the tail printed with a failure. */
export class TailTracer implements Tracer {
  readonly enabled = true;
  private readonly ring: string[] = [];
  private next = 0;
  constructor(private readonly lineCountMax: number) {}
  emit(line: string): void {
    if (this.ring.length < this.lineCountMax) this.ring.push(line);
    else this.ring[this.next] = line;
    this.next = (this.next + 1) % this.lineCountMax;
  }
  lines(): string[] {
    if (this.ring.length < this.lineCountMax) return [...this.ring];
    return [...this.ring.slice(this.next), ...this.ring.slice(0, this.next)];
  }
}

/** Writes every line to a sink as it happens (FLOTILLA_SIM_TRACE=1). */
export class StreamingTracer implements Tracer {
  readonly enabled = true;
  constructor(private readonly sink: (line: string) => void) {}
  emit(line: string): void {
    this.sink(line);
  }
}

/** Sends each line to several tracers. */
export class TeeTracer implements Tracer {
  readonly enabled = true;
  constructor(private readonly tracers: readonly Tracer[]) {}
  emit(line: string): void {
    for (const t of this.tracers) t.emit(line);
  }
}
