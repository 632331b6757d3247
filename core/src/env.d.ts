// The core runs on any JavaScript runtime and so imports no Node types; these
// WHATWG encoding globals exist in every runtime we target.
declare class TextEncoder {
  encode(input?: string): Uint8Array;
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean });
  decode(input?: Uint8Array): string;
}
// Timers and the monotonic clock, also in every runtime: only SYSTEM_CLOCK (clock.ts) uses them.
declare const performance: { now(): number };
declare function setTimeout(fn: () => void, ms: number): unknown;
declare function clearTimeout(handle: unknown): void;
