/**
 * The versioned register: one key of Flotilla's KV API as a sequential
 * object. A put returns the version it wrote; a get returns the value and
 * version, or absent; a write may be conditional on the current version
 * (`ifVersion`: If-Match "n", or 0 for If-None-Match: * — only if absent) and
 * is then refused with the current version when the condition fails (412);
 * a delete makes the key absent (version 0).
 *
 * Versions are not predictable (the store writes max(previous + 1, log
 * index)), so the model checks what is promised: a put's version exceeds the
 * version it replaced. A put whose outcome is unknown leaves a state whose
 * version is unknown but bounded below; a later observation (a get, a 412's
 * current version, a successful If-Match) pins it.
 */
import { HistoryError, type Model, type Operation } from './history.js';

export type RegisterInput =
  | { readonly kind: 'get' }
  | { readonly kind: 'put'; readonly value: string; readonly ifVersion?: number }
  | { readonly kind: 'delete'; readonly ifVersion?: number };

export type RegisterOutput =
  /** get: no such key. */
  | { readonly kind: 'absent' }
  /** get: the value and its version. */
  | { readonly kind: 'found'; readonly value: string; readonly version: number }
  /** put applied, writing this version. */
  | { readonly kind: 'written'; readonly version: number }
  /** delete applied (also when the key was absent). */
  | { readonly kind: 'deleted' }
  /** A conditional write refused (412); the key's version when it was decided (0: absent). */
  | { readonly kind: 'refused'; readonly currentVersion: number };

/** Absent, or a value whose version is known (`version`) or only bounded below (`version === null`, at least `versionMin`). */
export type RegisterState = null | { readonly value: string; readonly version: number | null; readonly versionMin: number };

export type RegisterOperation = Operation<RegisterInput, RegisterOutput>;

const OUTPUT_KINDS: Readonly<Record<RegisterInput['kind'], readonly RegisterOutput['kind'][]>> = {
  get: ['absent', 'found'],
  put: ['written', 'refused'],
  delete: ['deleted', 'refused'],
};

/** Throws HistoryError if `op`'s output cannot answer its input, or a version is not a positive integer. */
export function validateRegisterOperation(op: RegisterOperation): void {
  const bad = (why: string) => new HistoryError('BAD_OPERATION_OUTPUT', `operation ${op.id} (${describeRegisterOperation(op)}): ${why}`);
  const { input, output } = op;
  if (input.kind !== 'get' && input.ifVersion !== undefined && !(Number.isSafeInteger(input.ifVersion) && input.ifVersion >= 0)) throw bad('ifVersion must be a non-negative integer');
  if (output === null) return;
  if (!OUTPUT_KINDS[input.kind].includes(output.kind)) throw bad(`a ${input.kind} cannot answer ${output.kind}`);
  if ((output.kind === 'found' || output.kind === 'written') && !(Number.isSafeInteger(output.version) && output.version >= 1)) throw bad('version must be a positive integer');
  if (output.kind === 'refused') {
    if (!(Number.isSafeInteger(output.currentVersion) && output.currentVersion >= 0)) throw bad('currentVersion must be a non-negative integer');
    if (input.kind === 'get' || input.ifVersion === undefined) throw bad('only a conditional write can be refused');
  }
}

/**
 * The state as the condition `ifVersion` sees it when it holds: undefined if
 * it cannot hold, otherwise the state with its version pinned to ifVersion.
 */
function conditionHolds(state: RegisterState, ifVersion: number | undefined): { state: RegisterState } | undefined {
  if (ifVersion === undefined) return { state };
  if (state === null) return ifVersion === 0 ? { state } : undefined;
  if (ifVersion === 0) return undefined;
  if (state.version !== null) return state.version === ifVersion ? { state } : undefined;
  return ifVersion >= state.versionMin ? { state: { ...state, version: ifVersion, versionMin: ifVersion } } : undefined;
}

/** The state with its version pinned to `version`, if that version is possible. */
function pinned(state: RegisterState, version: number): RegisterState | undefined {
  if (state === null) return version === 0 ? null : undefined;
  if (state.version !== null) return state.version === version ? state : undefined;
  return version >= state.versionMin ? { ...state, version, versionMin: version } : undefined;
}

/** The least version a put over `state` may write. */
function nextVersionMin(state: RegisterState): number {
  return state === null ? 1 : (state.version ?? state.versionMin) + 1;
}

function stepRegister(state: RegisterState, input: RegisterInput, output: RegisterOutput | undefined): RegisterState | undefined {
  switch (input.kind) {
    case 'get':
      if (output === undefined) return state; // a read has no effect
      if (output.kind === 'absent') return state === null ? null : undefined;
      if (output.kind === 'found') return state !== null && state.value === output.value ? pinned(state, output.version) : undefined;
      return undefined;
    case 'put': {
      if (output !== undefined && output.kind === 'refused') return refused(state, input.ifVersion, output.currentVersion);
      const held = conditionHolds(state, input.ifVersion);
      if (held === undefined) return undefined;
      const versionMin = nextVersionMin(held.state);
      if (output === undefined) return { value: input.value, version: null, versionMin };
      if (output.kind !== 'written' || output.version < versionMin) return undefined;
      return { value: input.value, version: output.version, versionMin: output.version };
    }
    case 'delete': {
      if (output !== undefined && output.kind === 'refused') return refused(state, input.ifVersion, output.currentVersion);
      if (output !== undefined && output.kind !== 'deleted') return undefined;
      return conditionHolds(state, input.ifVersion) === undefined ? undefined : null;
    }
  }
}

/** A 412: the condition failed against the current version `currentVersion`; nothing changed, but the version is now known. */
function refused(state: RegisterState, ifVersion: number | undefined, currentVersion: number): RegisterState | undefined {
  if (ifVersion === undefined || ifVersion === currentVersion) return undefined;
  return pinned(state, currentVersion);
}

export function describeRegisterOperation(op: RegisterOperation): string {
  const { input, output } = op;
  const condition = input.kind !== 'get' && input.ifVersion !== undefined ? (input.ifVersion === 0 ? ' if absent' : ` if version ${input.ifVersion}`) : '';
  const call = input.kind === 'put' ? `put ${JSON.stringify(input.value)}${condition}` : `${input.kind}${condition}`;
  const result =
    output === null
      ? 'unknown outcome'
      : output.kind === 'found'
        ? `${JSON.stringify(output.value)} v${output.version}`
        : output.kind === 'written'
          ? `ok v${output.version}`
          : output.kind === 'refused'
            ? `refused, current v${output.currentVersion}`
            : output.kind;
  const when = `[${op.invokeMs.toFixed(1)}, ${op.completeMs === null ? '∞' : op.completeMs.toFixed(1)}] ms`;
  return `#${op.id} client ${op.clientId} ${call} → ${result} ${when}`;
}

export function describeRegisterState(state: RegisterState): string {
  if (state === null) return 'absent';
  return `${JSON.stringify(state.value)} ${state.version === null ? `v≥${state.versionMin} (unknown)` : `v${state.version}`}`;
}

export const registerModel: Model<RegisterState, RegisterInput, RegisterOutput> = {
  init: null,
  step: stepRegister,
  // The value goes last: versions are numbers, so the key is unambiguous whatever the value holds.
  stateKey: (s) => (s === null ? '-' : `${s.version ?? ''}|${s.versionMin}|${s.value}`),
  // A version known only from below allows every version above that bound, so such a state subsumes any
  // state with the same value and a version (or bound) at or above it.
  stateGroupKey: (s) => (s === null ? '-' : `|${s.value}`),
  subsumes: (a, b) => {
    if (a === null || b === null) return a === b;
    if (a.value !== b.value) return false;
    if (a.version !== null) return b.version === a.version;
    return (b.version ?? b.versionMin) >= a.versionMin;
  },
  inputKey: (i) => (i.kind === 'get' ? 'get' : `${i.kind}|${i.ifVersion ?? ''}|${i.kind === 'put' ? i.value : ''}`),
  describeOperation: describeRegisterOperation,
  describeState: describeRegisterState,
};
