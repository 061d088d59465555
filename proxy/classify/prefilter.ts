// The classifier's first look, on the bytes of a Query or Parse message before any decoding: one
// pass that proves "nothing the classifier watches can be here" for ordinary statements, so that
// most queries (including the ones that inline literals, which defeat a cache keyed by text)
// never reach the lexer. It answers only "plain" or "cannot tell"; "cannot tell" costs nothing
// but the full classification, so every doubt goes that way:
//   - a word the lexer watches (temp, listen, nextval, set_config, ...) anywhere, strings and
//     quoted identifiers included;
//   - a statement head that needs the parser, changes transaction state or the catalog (SET,
//     RESET, DO, BEGIN, COMMIT, PREPARE, CREATE, ALTER, DROP, ...), where every ';' (even one
//     inside a string) starts a statement;
//   - a statement starting with anything but a letter or '(';
//   - a comment ('--', '/*'): words in it could hide a head; and '&' (U&"..." escapes can spell
//     any word).
// The property test in prefilter.test.ts checks it against the full classifier.
import { WATCHED_WORDS } from './lexer.js';

/** Statement heads the classifier sends to the parser or reads for transaction state. */
// CREATE, ALTER, DROP and IMPORT change the catalog: prepared statements Parsed after them are analysed afresh.
const HEADS = ['set', 'reset', 'prepare', 'deallocate', 'load', 'discard', 'do', 'begin', 'start', 'commit', 'end', 'rollback', 'abort', 'listen', 'declare', 'execute', 'create', 'alter', 'drop', 'import'];

const hashOf = (word: string): number => {
  let h = 0;
  for (let i = 0; i < word.length; i++) h = (Math.imul(h, 31) + word.charCodeAt(i)) | 0;
  return h;
};

// Hashes of lowercase words. A hash collision only sends a statement the slow way.
const WATCHED_ANYWHERE: ReadonlySet<number> = new Set(WATCHED_WORDS.map(hashOf));
const WATCHED_HEADS: ReadonlySet<number> = new Set([...HEADS, ...WATCHED_WORDS].map(hashOf));

// Byte classes.
const WORD = 1;
const SPACE = 2;
const CLASS = new Uint8Array(256);
for (let c = 0; c < 256; c++) {
  const letter = (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
  const digit = c >= 0x30 && c <= 0x39;
  if (letter || digit || c === 0x5f /* _ */ || c === 0x24 /* $ */ || c >= 0x80) CLASS[c] = WORD;
  else if (c === 0x20 || (c >= 0x09 && c <= 0x0d)) CLASS[c] = SPACE;
}

const SEMICOLON = 0x3b;
const MINUS = 0x2d;
const SLASH = 0x2f;
const STAR = 0x2a;
const AMPERSAND = 0x26;
const LPAREN = 0x28;

/** Whether bytes [start, end) are SQL the classifier would certainly find nothing in. */
export function isPlainSql(buf: Uint8Array, start: number, end: number): boolean {
  let i = start;
  let atHead = true;
  while (i < end) {
    const c = buf[i]!;
    const cls = CLASS[c]!;
    if (cls === SPACE) {
      i++;
      continue;
    }
    if (cls === WORD) {
      let h = 0;
      const first = c;
      while (i < end) {
        const d = buf[i]!;
        if (CLASS[d] !== WORD) break;
        // ASCII letters to lower case; other bytes as they are.
        h = (Math.imul(h, 31) + (d >= 0x41 && d <= 0x5a ? d | 0x20 : d)) | 0;
        i++;
      }
      if (atHead) {
        const isLetter = (first | 0x20) >= 0x61 && (first | 0x20) <= 0x7a;
        if (!isLetter || WATCHED_HEADS.has(h)) return false;
        atHead = false;
      } else if (WATCHED_ANYWHERE.has(h)) {
        return false;
      }
      continue;
    }
    if (c === SEMICOLON) {
      atHead = true;
    } else if (atHead) {
      if (c !== LPAREN) return false;
      atHead = false;
    } else if ((c === MINUS || c === SLASH) && i + 1 < end && buf[i + 1] === (c === MINUS ? MINUS : STAR)) {
      return false;
    } else if (c === AMPERSAND) {
      return false;
    }
    i++;
  }
  return true;
}
