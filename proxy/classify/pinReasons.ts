// Why a client session gets pinned to one backend connection. The values are Prometheus label
// values (dbproxy_..._pinned_total{reason="..."}) and appear in logs, so they are stable
// snake_case identifiers: renaming one breaks dashboards and alerts.

export const PIN_REASONS = [
  'temporary_object',
  'listen',
  'session_advisory_lock',
  'cursor_with_hold',
  'sql_prepare',
  'load',
  'sequence_function_outside_transaction',
  'set',
  'set_role',
  'unparseable_statement',
  'dynamic_sql',
] as const;

export type PinReason = (typeof PIN_REASONS)[number];

const DESCRIPTIONS: Readonly<Record<PinReason, string>> = {
  temporary_object:
    'the client created a temporary table, view, sequence or other object, which exists only on its backend connection',
  listen: 'the client ran LISTEN, and notifications are delivered only to the backend connection that listens',
  session_advisory_lock:
    'the client took a session-level advisory lock, which is held by its backend connection until released',
  cursor_with_hold:
    'the client declared a cursor WITH HOLD, which outlives its transaction on its backend connection',
  sql_prepare:
    'the client used SQL-level PREPARE, EXECUTE or DEALLOCATE, whose prepared statements live on one backend connection',
  load: 'the client ran LOAD, which loads a shared library into its backend connection only',
  sequence_function_outside_transaction:
    'the client called nextval, setval, currval or lastval outside a transaction block, and a later currval or lastval must see the same backend connection',
  set: 'the client changed a session-level setting the proxy does not track (SET, RESET or set_config(..., false); see session.trackSettings and session.untrackedParameters)',
  set_role: 'the client changed its role or session authorization (SET ROLE, SET SESSION AUTHORIZATION, RESET ROLE)',
  unparseable_statement:
    'the proxy could not parse a statement it could not otherwise clear, so it keeps the backend connection to be safe',
  dynamic_sql:
    'the client ran SQL the proxy cannot read before it runs (EXECUTE of a computed string, or a DO block in a language other than PL/pgSQL), which may change session state',
};

/** One human sentence (no trailing period) for logs, e.g. `session pinned: <sentence>`. */
export function describePinReason(reason: PinReason): string {
  return DESCRIPTIONS[reason];
}

export function isPinReason(value: string): value is PinReason {
  return (PIN_REASONS as readonly string[]).includes(value);
}
