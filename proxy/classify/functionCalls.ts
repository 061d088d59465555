// The FunctionCall message ('F') names a function by OID and carries no SQL text, so the
// classifier never sees it. Built-in functions have fixed OIDs (PostgreSQL's pg_proc.dat), which
// is enough to recognise the few that change session state: set_config, the session advisory
// locks and the sequence functions. A user-defined function called this way stays as invisible
// as one called from SQL (see the README's security section).
import type { FunctionCall } from '../protocol/clientMessages.js';
import type { SessionSetting } from './classifier.js';
import type { PinReason } from './pinReasons.js';

const SET_CONFIG = 2078;
const SESSION_ADVISORY_LOCKS: ReadonlySet<number> = new Set([2880, 2881, 2882, 2883, 2886, 2887, 2888, 2889]);
const SEQUENCE_FUNCTIONS: ReadonlySet<number> = new Set([1574, 1575, 1576, 1765, 2559]);
const ROLE_SETTINGS: ReadonlySet<string> = new Set(['role', 'session_authorization']);

export interface FunctionCallEffect {
  readonly pins: readonly PinReason[];
  readonly settings: readonly SessionSetting[];
}

const NONE: FunctionCallEffect = Object.freeze({ pins: [], settings: [] });

/** What a FunctionCall does to the session. `inTransactionBlock`: the session's status is 'T' or 'E'. */
export function functionCallEffect(call: FunctionCall, inTransactionBlock: boolean): FunctionCallEffect {
  if (SESSION_ADVISORY_LOCKS.has(call.oid)) return { pins: ['session_advisory_lock'], settings: [] };
  if (SEQUENCE_FUNCTIONS.has(call.oid)) return inTransactionBlock ? NONE : { pins: ['sequence_function_outside_transaction'], settings: [] };
  if (call.oid !== SET_CONFIG) return NONE;
  const [name, , isLocal] = call.args;
  const local = isLocal?.value ? argBool(isLocal.value, isLocal.format) : undefined;
  if (local === true) return NONE;
  // Text arguments look the same in text and binary format.
  const setting = name?.value ? name.value.toString('utf8').toLowerCase() : undefined;
  if (setting === undefined || local === undefined) return { pins: ['set'], settings: [{ kind: 'opaque' }] };
  if (ROLE_SETTINGS.has(setting)) return { pins: ['set_role'], settings: [] };
  return { pins: ['set'], settings: [{ kind: 'set', name: setting, sql: '' }] };
}

function argBool(value: Buffer, format: number): boolean | undefined {
  if (format === 1) return value.length === 1 ? value[0] !== 0 : undefined;
  const s = value.toString('utf8').trim().toLowerCase();
  if (s.length === 0) return undefined;
  if ('true'.startsWith(s) || 'yes'.startsWith(s) || s === 'on' || s === '1') return true;
  if ('false'.startsWith(s) || 'no'.startsWith(s) || s === 'off' || s === 'of' || s === '0') return false;
  return undefined;
}
