// A hand-written SQL lexer for the statement classifier's fast path.
//
// Every simple Query and every Parse message passes through here, so this must cost about as much
// as one pass over the characters. No library does this cheaply enough: the real grammar
// (libpg-query) costs a WASM call plus a JSON round-trip per statement, and generic SQL tokenizers
// allocate a token object per token. This one allocates only the per-statement result, the first
// two keywords and, rarely, an array of watched words.
//
// It knows exactly as much of PostgreSQL's lexical structure as is needed to never mistake text
// inside a comment, string, dollar-quoted body or quoted identifier for a keyword, and to split
// a multi-statement Query where PostgreSQL (and psql) would. It does not judge statements: it
// only reports which ones could possibly need the real parser.

/**
 * Words whose presence sends a statement to the real parser. The keyword-like ones (temp, hold,
 * execute, listen) only count unquoted: a keyword cannot be written as a quoted identifier. The
 * name-like ones (functions and the pg_temp schema) also count as exactly-matching quoted
 * identifiers, since `"nextval"('s')` calls the same function as `nextval('s')`.
 */
export const WATCHED_WORDS = [
  'temp',
  'temporary',
  'pg_temp',
  'hold',
  'execute',
  'listen',
  'nextval',
  'setval',
  'currval',
  'lastval',
  'set_config',
  'pg_advisory_lock',
  'pg_advisory_lock_shared',
  'pg_try_advisory_lock',
  'pg_try_advisory_lock_shared',
] as const;
export type WatchedWord = (typeof WATCHED_WORDS)[number];

// Indexes into WATCHED_WORDS from which quoted identifiers may match too.
const FIRST_NAME_LIKE = WATCHED_WORDS.indexOf('nextval');
const PG_TEMP = WATCHED_WORDS.indexOf('pg_temp');

export interface LexedStatement {
  /** Lowercased first keyword; '' when the statement starts with something else, e.g. '('. */
  readonly firstWord: string;
  /** Lowercased second token when it is a word, else ''. */
  readonly secondWord: string;
  /** Distinct watched words found outside strings and comments, in first-seen order. */
  readonly words: readonly WatchedWord[];
  /** Number of tokens (words, literals, punctuation); tells `COMMIT` from `COMMIT AND CHAIN`. */
  readonly tokenCount: number;
  /**
   * The lexer could not see through part of the statement (an unterminated quote or comment,
   * or a U&"..." identifier whose escapes could spell anything), so it must not be cleared.
   */
  readonly opaque: boolean;
  /** Offset of the first token. */
  readonly start: number;
  /** Offset just past the last token (excludes the terminating semicolon). */
  readonly end: number;
}

const NO_WORDS: readonly WatchedWord[] = Object.freeze([]);

const enum Ch {
  Tab = 9,
  Lf = 10,
  Vt = 11,
  Ff = 12,
  Cr = 13,
  Space = 32,
  DoubleQuote = 34,
  Dollar = 36,
  Ampersand = 38,
  Quote = 39,
  LParen = 40,
  RParen = 41,
  Star = 42,
  Plus = 43,
  Minus = 45,
  Dot = 46,
  Slash = 47,
  Zero = 48,
  Nine = 57,
  Semicolon = 59,
  UpperA = 65,
  UpperE = 69,
  UpperZ = 90,
  Backslash = 92,
  Underscore = 95,
  LowerA = 97,
  LowerE = 101,
  LowerZ = 122,
}

function isSpace(c: number): boolean {
  return c === Ch.Space || (c >= Ch.Tab && c <= Ch.Cr);
}

function isDigit(c: number): boolean {
  return c >= Ch.Zero && c <= Ch.Nine;
}

// PostgreSQL treats every byte >= 0x80 as an identifier letter; in UTF-16 terms, every code unit >= 0x80.
function isIdentStart(c: number): boolean {
  return (c >= Ch.LowerA && c <= Ch.LowerZ) || (c >= Ch.UpperA && c <= Ch.UpperZ) || c === Ch.Underscore || c >= 0x80;
}

function isIdentCont(c: number): boolean {
  return isIdentStart(c) || isDigit(c) || c === Ch.Dollar;
}

function lowerAscii(c: number): number {
  return c >= Ch.UpperA && c <= Ch.UpperZ ? c | 0x20 : c;
}

/** Case-insensitive (ASCII folding, like PostgreSQL for unquoted identifiers) compare of sql[s, e) with a lowercase word. */
function wordIs(sql: string, s: number, e: number, lower: string): boolean {
  if (e - s !== lower.length) return false;
  for (let k = 0; k < lower.length; k++) {
    if (lowerAscii(sql.charCodeAt(s + k)) !== lower.charCodeAt(k)) return false;
  }
  return true;
}

function startsWithFolded(sql: string, s: number, e: number, lower: string, fold: boolean): boolean {
  if (e - s < lower.length) return false;
  for (let k = 0; k < lower.length; k++) {
    const c = sql.charCodeAt(s + k);
    if ((fold ? lowerAscii(c) : c) !== lower.charCodeAt(k)) return false;
  }
  return true;
}

/** Index in WATCHED_WORDS of the word sql[s, e), or -1. `quoted` = the text of a quoted identifier. */
function watchedIndex(sql: string, s: number, e: number, quoted: boolean): number {
  const len = e - s;
  // pg_temp also matches the real per-backend schema names pg_temp_1, pg_temp_2, ...
  if (len >= 7 && startsWithFolded(sql, s, e, 'pg_temp', !quoted)) {
    if (len === 7 || sql.charCodeAt(s + 7) === Ch.Underscore) return PG_TEMP;
  }
  for (let w = quoted ? FIRST_NAME_LIKE : 0; w < WATCHED_WORDS.length; w++) {
    const word = WATCHED_WORDS[w]!;
    if (word.length !== len || w === PG_TEMP) continue;
    if (quoted ? sql.startsWith(word, s) : wordIs(sql, s, e, word)) return w;
  }
  return -1;
}

// ---- scanners shared by lexStatements and redactLiterals; each returns the index just past the token,
// ---- or -1 when the token is unterminated.

function skipBlockComment(sql: string, i: number): number {
  // PostgreSQL block comments nest.
  let depth = 1;
  let k = i + 2;
  const n = sql.length;
  while (k < n) {
    const c = sql.charCodeAt(k);
    if (c === Ch.Slash && sql.charCodeAt(k + 1) === Ch.Star) {
      depth++;
      k += 2;
    } else if (c === Ch.Star && sql.charCodeAt(k + 1) === Ch.Slash) {
      k += 2;
      if (--depth === 0) return k;
    } else {
      k++;
    }
  }
  return -1;
}

function skipLineComment(sql: string, i: number): number {
  const n = sql.length;
  let k = i + 2;
  while (k < n) {
    const c = sql.charCodeAt(k);
    if (c === Ch.Lf || c === Ch.Cr) return k;
    k++;
  }
  return n;
}

/** A '...' string or "..." identifier starting at the quote at i; a doubled quote is an escaped quote. */
function skipQuoted(sql: string, i: number, quote: number): number {
  const n = sql.length;
  let k = i + 1;
  while (k < n) {
    if (sql.charCodeAt(k) === quote) {
      if (sql.charCodeAt(k + 1) === quote) {
        k += 2;
        continue;
      }
      return k + 1;
    }
    k++;
  }
  return -1;
}

/** An E'...' string body starting at the quote at i: backslash escapes anything, '' is a quote. */
function skipEscapeString(sql: string, i: number): number {
  const n = sql.length;
  let k = i + 1;
  while (k < n) {
    const c = sql.charCodeAt(k);
    if (c === Ch.Backslash) {
      k += 2;
    } else if (c === Ch.Quote) {
      if (sql.charCodeAt(k + 1) === Ch.Quote) {
        k += 2;
        continue;
      }
      return k + 1;
    } else {
      k++;
    }
  }
  return -1;
}

/**
 * If a dollar-quote opening tag ($$ or $tag$) starts at i, the index just past it, else -1.
 * The tag follows identifier rules minus '$', so $1 (a parameter) never opens a quote.
 */
function dollarTagEnd(sql: string, i: number): number {
  let k = i + 1;
  const c = sql.charCodeAt(k);
  if (c === Ch.Dollar) return k + 1;
  if (!isIdentStart(c)) return -1;
  k++;
  const n = sql.length;
  while (k < n) {
    const d = sql.charCodeAt(k);
    if (d === Ch.Dollar) return k + 1;
    if (!isIdentStart(d) && !isDigit(d)) return -1;
    k++;
  }
  return -1;
}

function skipDollarQuoted(sql: string, i: number, tagEnd: number): number {
  const close = sql.indexOf(sql.slice(i, tagEnd), tagEnd);
  return close < 0 ? -1 : close + (tagEnd - i);
}

function skipIdent(sql: string, i: number): number {
  const n = sql.length;
  let k = i + 1;
  while (k < n && isIdentCont(sql.charCodeAt(k))) k++;
  return k;
}

/** A numeric literal: decimal, 1.5e-3, .5, 0x1F / 0o17 / 0b101, 1_000 (PostgreSQL 16+). */
function skipNumber(sql: string, i: number): number {
  const n = sql.length;
  let k = i;
  while (k < n) {
    const c = sql.charCodeAt(k);
    if (isDigit(c) || c === Ch.Dot || c === Ch.Underscore || (isIdentStart(c) && c < 0x80)) {
      // An exponent may carry a sign: 1e-5.
      if ((c === Ch.LowerE || c === Ch.UpperE) && k + 1 < n) {
        const s = sql.charCodeAt(k + 1);
        if ((s === Ch.Minus || s === Ch.Plus) && isDigit(sql.charCodeAt(k + 2))) {
          k += 3;
          continue;
        }
      }
      // `1..5` is not a number followed by a number; stop before a second dot run.
      if (c === Ch.Dot && sql.charCodeAt(k + 1) === Ch.Dot) break;
      k++;
    } else {
      break;
    }
  }
  return k;
}

const PREFIX_B = 98;
const PREFIX_E = 101;
const PREFIX_N = 110;
const PREFIX_U = 117;
const PREFIX_X = 120;

/**
 * If sql[s, e) is a one-letter prefix of a string constant (E'..' with backslash escapes, B'..',
 * X'..', N'..', or U& before '..' or ".."), that letter lowercased, else 0.
 */
function stringPrefix(sql: string, s: number, e: number): number {
  if (e - s !== 1) return 0;
  const c = lowerAscii(sql.charCodeAt(s));
  return c === PREFIX_E || c === PREFIX_B || c === PREFIX_X || c === PREFIX_N || c === PREFIX_U ? c : 0;
}

/**
 * Split `sql` into statements at top-level semicolons and describe each one.
 * Empty statements (only whitespace, comments or semicolons) are left out.
 */
export function lexStatements(sql: string): LexedStatement[] {
  const out: LexedStatement[] = [];
  const n = sql.length;

  let tokenCount = 0;
  let identCount = 0;
  let start = 0;
  let end = 0;
  let firstWord = '';
  let secondWord = '';
  let words: WatchedWord[] | null = null;
  let opaque = false;
  let parenDepth = 0;
  // psql's heuristic for CREATE FUNCTION/PROCEDURE ... BEGIN ATOMIC ... END, whose body holds
  // semicolons that do not end the statement: 0 = undecided, 1 = is such a statement, -1 = is not.
  let routine = 0;
  let beginDepth = 0;

  const addWord = (w: number): void => {
    const word = WATCHED_WORDS[w]!;
    if (words === null) words = [word];
    else if (!words.includes(word)) words.push(word);
  };

  const finish = (): void => {
    if (tokenCount > 0) {
      out.push({
        firstWord,
        secondWord,
        words: words ?? NO_WORDS,
        tokenCount,
        opaque,
        start,
        end,
      });
    }
    tokenCount = 0;
    identCount = 0;
    firstWord = '';
    secondWord = '';
    words = null;
    opaque = false;
    parenDepth = 0;
    routine = 0;
    beginDepth = 0;
  };

  let i = 0;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === Ch.Minus && sql.charCodeAt(i + 1) === Ch.Minus) {
      i = skipLineComment(sql, i);
      continue;
    }
    if (c === Ch.Slash && sql.charCodeAt(i + 1) === Ch.Star) {
      const k = skipBlockComment(sql, i);
      if (k < 0) {
        // Everything after is comment; PostgreSQL rejects it, but the statement so far is not cleared.
        if (tokenCount > 0) opaque = true;
        i = n;
      } else {
        i = k;
      }
      continue;
    }
    if (c === Ch.Semicolon && parenDepth === 0 && beginDepth === 0) {
      finish();
      i++;
      continue;
    }

    if (tokenCount === 0) start = i;
    tokenCount++;
    let k: number;

    if (isIdentStart(c)) {
      k = skipIdent(sql, i);
      const prefix = stringPrefix(sql, i, k);
      const next = sql.charCodeAt(k);
      if (prefix !== 0 && prefix !== PREFIX_U && next === Ch.Quote) {
        k = prefix === PREFIX_E ? skipEscapeString(sql, k) : skipQuoted(sql, k, Ch.Quote);
      } else if (prefix === PREFIX_U && next === Ch.Ampersand && sql.charCodeAt(k + 1) === Ch.Quote) {
        k = skipQuoted(sql, k + 1, Ch.Quote);
      } else if (prefix === PREFIX_U && next === Ch.Ampersand && sql.charCodeAt(k + 1) === Ch.DoubleQuote) {
        // A U&"..." identifier may spell a watched name with escapes; let the parser decide.
        opaque = true;
        k = skipQuoted(sql, k + 1, Ch.DoubleQuote);
      } else {
        // A plain word.
        if (tokenCount === 1) firstWord = sql.slice(i, k).toLowerCase();
        else if (tokenCount === 2) secondWord = sql.slice(i, k).toLowerCase();
        const w = watchedIndex(sql, i, k, false);
        if (w >= 0) addWord(w);
        if (routine >= 0) {
          if (identCount === 0) routine = wordIs(sql, i, k, 'create') ? 0 : -1;
          else if (routine === 0) {
            const isRoutine = wordIs(sql, i, k, 'function') || wordIs(sql, i, k, 'procedure');
            if (identCount === 1) routine = isRoutine ? 1 : wordIs(sql, i, k, 'or') ? 0 : -1;
            else if (identCount === 2) routine = wordIs(sql, i, k, 'replace') ? 0 : -1;
            else routine = isRoutine ? 1 : -1;
          } else if (wordIs(sql, i, k, 'begin')) {
            beginDepth++;
          } else if (wordIs(sql, i, k, 'case')) {
            // CASE also ends with END, but only matters inside a BEGIN.
            if (beginDepth > 0) beginDepth++;
          } else if (wordIs(sql, i, k, 'end')) {
            if (beginDepth > 0) beginDepth--;
          }
        }
        identCount++;
      }
    } else if (c === Ch.Quote) {
      k = skipQuoted(sql, i, Ch.Quote);
    } else if (c === Ch.DoubleQuote) {
      k = skipQuoted(sql, i, Ch.DoubleQuote);
      if (k > 0) {
        const w = watchedIndex(sql, i + 1, k - 1, true);
        if (w >= 0) addWord(w);
      }
    } else if (c === Ch.Dollar) {
      if (isDigit(sql.charCodeAt(i + 1))) {
        k = i + 1;
        while (k < n && isDigit(sql.charCodeAt(k))) k++;
      } else {
        const tagEnd = dollarTagEnd(sql, i);
        k = tagEnd < 0 ? i + 1 : skipDollarQuoted(sql, i, tagEnd);
      }
    } else if (isDigit(c) || (c === Ch.Dot && isDigit(sql.charCodeAt(i + 1)))) {
      k = skipNumber(sql, i);
    } else {
      if (c === Ch.LParen) parenDepth++;
      else if (c === Ch.RParen && parenDepth > 0) parenDepth--;
      k = i + 1;
    }

    if (k < 0) {
      opaque = true;
      end = n;
      i = n;
    } else {
      end = k;
      i = k;
    }
  }
  finish();
  return out;
}

/**
 * Replace every string constant (all quoting styles, including dollar-quoted bodies and typed
 * prefixes such as E'..' or X'..') and every numeric constant with `?`. Comments are dropped and
 * runs of whitespace become one space, so the result is a compact digest that can be logged.
 * Parameter references ($1) and quoted identifiers are kept. An unterminated string is replaced
 * up to the end, never copied.
 */
export function redactLiterals(sql: string): string {
  const n = sql.length;
  let out = '';
  // sql[copyFrom, i) is pending verbatim output.
  let copyFrom = 0;
  let pendingSpace = false;
  let i = 0;

  const emit = (text: string, from: number, to: number): void => {
    if (pendingSpace && out.length > 0) out += ' ';
    pendingSpace = false;
    out += text === '' ? sql.slice(from, to) : text;
  };

  while (i < n) {
    const c = sql.charCodeAt(i);
    copyFrom = i;
    if (isSpace(c)) {
      pendingSpace = true;
      i++;
      continue;
    }
    if (c === Ch.Minus && sql.charCodeAt(i + 1) === Ch.Minus) {
      pendingSpace = true;
      i = skipLineComment(sql, i);
      continue;
    }
    if (c === Ch.Slash && sql.charCodeAt(i + 1) === Ch.Star) {
      pendingSpace = true;
      const k = skipBlockComment(sql, i);
      i = k < 0 ? n : k;
      continue;
    }

    let k: number;
    let literal = false;
    if (isIdentStart(c)) {
      k = skipIdent(sql, i);
      const prefix = stringPrefix(sql, i, k);
      const next = sql.charCodeAt(k);
      if (prefix !== 0 && prefix !== PREFIX_U && next === Ch.Quote) {
        // E'..', B'..', X'..', N'..': the prefix is part of the constant.
        k = prefix === PREFIX_E ? skipEscapeString(sql, k) : skipQuoted(sql, k, Ch.Quote);
        literal = true;
      } else if (prefix === PREFIX_U && next === Ch.Ampersand && sql.charCodeAt(k + 1) === Ch.Quote) {
        k = skipQuoted(sql, k + 1, Ch.Quote);
        literal = true;
      } else if (prefix === PREFIX_U && next === Ch.Ampersand && sql.charCodeAt(k + 1) === Ch.DoubleQuote) {
        k = skipQuoted(sql, k + 1, Ch.DoubleQuote);
      }
    } else if (c === Ch.Quote) {
      k = skipQuoted(sql, i, Ch.Quote);
      literal = true;
    } else if (c === Ch.DoubleQuote) {
      k = skipQuoted(sql, i, Ch.DoubleQuote);
    } else if (c === Ch.Dollar) {
      if (isDigit(sql.charCodeAt(i + 1))) {
        k = i + 1;
        while (k < n && isDigit(sql.charCodeAt(k))) k++;
      } else {
        const tagEnd = dollarTagEnd(sql, i);
        if (tagEnd < 0) {
          k = i + 1;
        } else {
          k = skipDollarQuoted(sql, i, tagEnd);
          literal = true;
        }
      }
    } else if (isDigit(c) || (c === Ch.Dot && isDigit(sql.charCodeAt(i + 1)))) {
      k = skipNumber(sql, i);
      literal = true;
    } else {
      k = i + 1;
      // Keep operators and punctuation compact: `a = ?`, `f(?, ?)`, `x::text`.
      emit('', copyFrom, k);
      i = k;
      continue;
    }

    if (k < 0) k = n;
    emit(literal ? '?' : '', copyFrom, k);
    i = k;
  }
  return out;
}
