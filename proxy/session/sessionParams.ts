// Session parameters a client asked for at startup, replayed on whichever backend it borrows:
// only the difference from what that backend already has, in one round trip.

/** Startup keys that are not GUCs, or that the proxy must not pass on. */
const NOT_GUCS = new Set(['user', 'database', 'replication', 'options']);

/** Reads `options` ("-c name=value --name=value") the way the server does: backslash escapes spaces. */
export function parseOptions(options: string): Map<string, string> {
  const out = new Map<string, string>();
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  for (let i = 0; i < options.length; i++) {
    const c = options[i]!;
    if (c === '\\' && i + 1 < options.length) {
      cur += options[++i];
      inWord = true;
    } else if (c === ' ' || c === '\t' || c === '\n') {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  for (let i = 0; i < words.length; i++) {
    let w = words[i]!;
    if (w === '-c' && i + 1 < words.length) w = words[++i]!;
    else if (w.startsWith('-c')) w = w.slice(2);
    else if (w.startsWith('--')) w = w.slice(2);
    else continue;
    const eq = w.indexOf('=');
    if (eq > 0) out.set(w.slice(0, eq).replaceAll('-', '_').toLowerCase(), w.slice(eq + 1));
  }
  return out;
}

/** The session parameters a startup packet asks for, names lowercased as GUC lookup is. */
export function startupSessionParams(params: Map<string, string>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, v] of params) {
    if (NOT_GUCS.has(k) || k.startsWith('_pq_.')) continue;
    out.set(k.toLowerCase(), v);
  }
  const options = params.get('options');
  if (options) for (const [k, v] of parseOptions(options)) out.set(k, v);
  return out;
}

/**
 * A string literal that reads the same whatever the session's standard_conforming_strings: a
 * client may turn that off, and a value with a backslash must not change the proxy's SQL.
 */
export const literal = (s: string): string => `E'${s.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;
const ident = (s: string): string => `"${s.replaceAll('"', '""')}"`;

/**
 * SQL that reads the current values of parameters, one column each: NULL for a parameter that
 * does not exist or is at the connection's own default (its reset value), which is what the
 * session's state holds for "not changed", so a RESET is remembered as one.
 */
export function readBackSql(names: readonly string[]): string {
  const column = (n: string): string =>
    `(SELECT CASE WHEN s.name IS NOT NULL AND s.setting IS NOT DISTINCT FROM s.reset_val THEN NULL ELSE v.value END ` +
    `FROM (SELECT pg_catalog.current_setting(${literal(n)}, true) AS value) v ` +
    `LEFT JOIN pg_catalog.pg_settings s ON pg_catalog.lower(s.name) = ${literal(n.toLowerCase())})`;
  return `SELECT ${names.map(column).join(', ')}`;
}

/**
 * A statement that puts parameters back to the given values, for a simple Query (inserted after
 * a RESET) or an Execute: a DO block, whose only answer is one CommandComplete.
 */
export function restoreParamsSql(values: ReadonlyMap<string, string>): string {
  const calls = [...values].map(([k, v]) => `PERFORM pg_catalog.set_config(${literal(k)}, ${literal(v)}, false);`).join(' ');
  let tag = 'dbproxy';
  while (calls.includes(`$${tag}$`)) tag += '_';
  return `DO $${tag}$ BEGIN ${calls} END $${tag}$`;
}

/**
 * SQL that brings a backend from `applied` to `wanted`, or null when nothing differs.
 * set_config() parses a value exactly as a startup parameter is parsed (a search_path list stays a list).
 */
export function paramSyncSql(wanted: ReadonlyMap<string, string>, applied: ReadonlyMap<string, string>): string | null {
  const sets: string[] = [];
  const resets: string[] = [];
  for (const [k, v] of wanted) if (applied.get(k) !== v) sets.push(`pg_catalog.set_config(${literal(k)}, ${literal(v)}, false)`);
  for (const k of applied.keys()) if (!wanted.has(k)) resets.push(`RESET ${ident(k)}`);
  if (sets.length === 0 && resets.length === 0) return null;
  const parts: string[] = [];
  if (sets.length) parts.push(`SELECT ${sets.join(', ')}`);
  parts.push(...resets);
  return parts.join('; ');
}
