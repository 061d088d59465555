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

const literal = (s: string): string => `'${s.replaceAll("'", "''")}'`;
const ident = (s: string): string => `"${s.replaceAll('"', '""')}"`;

/** SQL that reads the current values of parameters, one column each, NULL for an unknown one. */
export function readBackSql(names: readonly string[]): string {
  return `SELECT ${names.map((n) => `current_setting(${literal(n)}, true)`).join(', ')}`;
}

/**
 * SQL that brings a backend from `applied` to `wanted`, or null when nothing differs.
 * set_config() parses a value exactly as a startup parameter is parsed (a search_path list stays a list).
 */
export function paramSyncSql(wanted: ReadonlyMap<string, string>, applied: ReadonlyMap<string, string>): string | null {
  const sets: string[] = [];
  const resets: string[] = [];
  for (const [k, v] of wanted) if (applied.get(k) !== v) sets.push(`set_config(${literal(k)}, ${literal(v)}, false)`);
  for (const k of applied.keys()) if (!wanted.has(k)) resets.push(`RESET ${ident(k)}`);
  if (sets.length === 0 && resets.length === 0) return null;
  const parts: string[] = [];
  if (sets.length) parts.push(`SELECT ${sets.join(', ')}`);
  parts.push(...resets);
  return parts.join('; ');
}
