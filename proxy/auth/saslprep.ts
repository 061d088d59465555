// SASLprep (RFC 4013 over RFC 3454 stringprep) the way PostgreSQL's pg_saslprep() applies it to
// SCRAM passwords. Both the server (when it built the verifier) and libpq (when it answers) run
// this, so any divergence makes a non-ASCII password fail on one side only. That is also why the
// unassigned/bidi checks use the Unicode 3.2 tables rather than the runtime's newer Unicode data.
//
// Where PostgreSQL would report the password as prohibited, it falls back to the raw password
// rather than rejecting it; saslprepPassword() does the same, which is why it never throws.
import { BIDI_L, UNASSIGNED_3_2 } from './saslprepTables.js';

type Range = readonly [number, number];

function inRanges(cp: number, ranges: readonly Range[]): boolean {
  for (const [lo, hi] of ranges) {
    if (cp >= lo && cp <= hi) return true;
  }
  return false;
}

// RFC 3454 C.1.2
const NON_ASCII_SPACE: readonly Range[] = [
  [0x00a0, 0x00a0], [0x1680, 0x1680], [0x2000, 0x200b], [0x202f, 0x202f], [0x205f, 0x205f],
  [0x3000, 0x3000],
];

// RFC 3454 B.1
const MAPPED_TO_NOTHING: readonly Range[] = [
  [0x00ad, 0x00ad], [0x034f, 0x034f], [0x1806, 0x1806], [0x180b, 0x180d], [0x200b, 0x200d],
  [0x2060, 0x2060], [0xfe00, 0xfe0f], [0xfeff, 0xfeff],
];

// RFC 4013 section 2.3: C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9
const PROHIBITED: readonly Range[] = [
  ...NON_ASCII_SPACE,
  [0x0000, 0x001f], [0x007f, 0x007f],
  [0x0080, 0x009f], [0x06dd, 0x06dd], [0x070f, 0x070f], [0x180e, 0x180e], [0x200c, 0x200d],
  [0x2028, 0x2029], [0x2060, 0x2063], [0x206a, 0x206f], [0xfeff, 0xfeff], [0xfff9, 0xfffc],
  [0x1d173, 0x1d17a],
  [0xe000, 0xf8ff], [0xf0000, 0xffffd], [0x100000, 0x10fffd],
  [0xfdd0, 0xfdef],
  [0xd800, 0xdfff],
  [0xfff9, 0xfffd],
  [0x2ff0, 0x2ffb],
  [0x0340, 0x0341], [0x200e, 0x200f], [0x202a, 0x202e],
  [0xe0001, 0xe0001], [0xe0020, 0xe007f],
];

// RFC 3454 D.1
const RAND_AL_CAT: readonly Range[] = [
  [0x05be, 0x05be], [0x05c0, 0x05c0], [0x05c3, 0x05c3], [0x05d0, 0x05ea], [0x05f0, 0x05f4],
  [0x061b, 0x061b], [0x061f, 0x061f], [0x0621, 0x063a], [0x0640, 0x064a], [0x066d, 0x066f],
  [0x0671, 0x06d5], [0x06dd, 0x06dd], [0x06e5, 0x06e6], [0x06fa, 0x06fe], [0x0700, 0x070d],
  [0x0710, 0x0710], [0x0712, 0x072c], [0x0780, 0x07a5], [0x07b1, 0x07b1], [0x200f, 0x200f],
  [0xfb1d, 0xfb1d], [0xfb1f, 0xfb28], [0xfb2a, 0xfb36], [0xfb38, 0xfb3c], [0xfb3e, 0xfb3e],
  [0xfb40, 0xfb41], [0xfb43, 0xfb44], [0xfb46, 0xfbb1], [0xfbd3, 0xfd3d], [0xfd50, 0xfd8f],
  [0xfd92, 0xfdc7], [0xfdf0, 0xfdfc], [0xfe70, 0xfe74], [0xfe76, 0xfefc],
];

/** Parses "lo-hi,cp,..." (hex) into flat sorted [lo, hi, lo, hi, ...] for binary search. */
function parseRangeTable(text: string): Uint32Array {
  const parts = text.split(',');
  const out = new Uint32Array(parts.length * 2);
  parts.forEach((part, i) => {
    const [lo, hi = lo] = part.split('-');
    out[2 * i] = parseInt(lo!, 16);
    out[2 * i + 1] = parseInt(hi, 16);
  });
  return out;
}

function inTable(cp: number, table: Uint32Array): boolean {
  let lo = 0;
  let hi = table.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < table[2 * mid]!) hi = mid - 1;
    else if (cp > table[2 * mid + 1]!) lo = mid + 1;
    else return true;
  }
  return false;
}

const UNASSIGNED = parseRangeTable(UNASSIGNED_3_2);
const L_CAT = parseRangeTable(BIDI_L);

function isNonCharacter(cp: number): boolean {
  // C.4's U+nFFFE/U+nFFFF in every plane
  return (cp & 0xfffe) === 0xfffe;
}

function isProhibited(cp: number): boolean {
  return inRanges(cp, PROHIBITED) || isNonCharacter(cp) || inTable(cp, UNASSIGNED);
}

function isRandAL(cp: number): boolean {
  return inRanges(cp, RAND_AL_CAT);
}

function isL(cp: number): boolean {
  return inTable(cp, L_CAT);
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function hasLoneSurrogate(s: string): boolean {
  return LONE_SURROGATE.test(s);
}

/**
 * Result of SASLprep: `prepared` is what goes into PBKDF2; `prohibited` tells whether PostgreSQL
 * would have rejected the string and therefore used the raw password instead.
 */
export interface SaslprepResult {
  prepared: string;
  prohibited: boolean;
}

export function saslprep(input: string): SaslprepResult {
  // PostgreSQL short-circuits pure ASCII, so ASCII control characters pass through unchanged.
  if (/^[\x00-\x7f]*$/.test(input)) return { prepared: input, prohibited: false };
  // A lone surrogate cannot be UTF-8 encoded faithfully; PostgreSQL's equivalent is invalid UTF-8.
  if (hasLoneSurrogate(input)) return { prepared: input, prohibited: true };

  const mapped: number[] = [];
  for (const ch of input) {
    const cp = ch.codePointAt(0)!;
    if (inRanges(cp, NON_ASCII_SPACE)) mapped.push(0x20);
    else if (!inRanges(cp, MAPPED_TO_NOTHING)) mapped.push(cp);
  }
  if (mapped.length === 0) return { prepared: input, prohibited: true };

  const normalized = String.fromCodePoint(...mapped).normalize('NFKC');
  const cps = Array.from(normalized, (c) => c.codePointAt(0)!);
  if (cps.some(isProhibited)) return { prepared: input, prohibited: true };

  if (cps.some(isRandAL)) {
    if (cps.some(isL)) return { prepared: input, prohibited: true };
    if (!isRandAL(cps[0]!) || !isRandAL(cps[cps.length - 1]!)) {
      return { prepared: input, prohibited: true };
    }
  }
  return { prepared: normalized, prohibited: false };
}

/** The password string PostgreSQL feeds into PBKDF2 for SCRAM. */
export function saslprepPassword(password: string): string {
  return saslprep(password).prepared;
}
