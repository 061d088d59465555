import { saslprep, saslprepPassword } from './saslprep.js';

describe('saslprep', () => {
  // RFC 4013 section 3 examples that PostgreSQL treats the same way.
  test.each([
    ['I\u00ADX', 'IX'], // SOFT HYPHEN mapped to nothing
    ['user', 'user'],
    ['USER', 'USER'], // case preserved
    ['\u00AA', 'a'], // NFKC
    ['\u2168', 'IX'], // NFKC
  ])('RFC 4013 example %j -> %j', (input, expected) => {
    expect(saslprep(input)).toEqual({ prepared: expected, prohibited: false });
  });

  test('maps non-ASCII spaces to SPACE and drops zero-width characters', () => {
    expect(saslprepPassword('a\u00A0b\u3000c')).toBe('a b c');
    expect(saslprepPassword('a\u200Bb')).toBe('a b'); // U+200B is in both tables; space wins, as in PostgreSQL
    expect(saslprepPassword('a\uFEFFb\u00E9')).toBe('ab\u00E9');
  });

  test('normalizes combining sequences with NFKC', () => {
    expect(saslprepPassword('e\u0301')).toBe('\u00E9');
    expect(saslprepPassword('\uFB01x\u00E9')).toBe('fix\u00E9');
  });

  test('pure ASCII is passed through unchanged, control characters included (PostgreSQL shortcut)', () => {
    // RFC 4013 would reject U+0007, but PostgreSQL never inspects ASCII-only passwords.
    expect(saslprep('a\u0007b')).toEqual({ prepared: 'a\u0007b', prohibited: false });
    expect(saslprep('')).toEqual({ prepared: '', prohibited: false });
  });

  test.each([
    ['\u00AD', 'maps to the empty string'],
    ['\u00E9\u0007', 'ASCII control character in a non-ASCII string'],
    ['\u00E9\uE000', 'private use'],
    ['\u00E9\u200E', 'LEFT-TO-RIGHT MARK'],
    ['\u00E9\uFFFE', 'non-character'],
    ['\u{1F600}\u2168', 'code point unassigned in Unicode 3.2'],
    ['\u0221\u2168', 'code point unassigned in Unicode 3.2 (BMP)'],
    ['\u0627\u0031', 'RandALCat string not ending with RandALCat'],
    ['\u0627\uFB01', 'RandALCat mixed with LCat after normalization'],
    ['\u05D0\u2168\u05D1', 'RandALCat mixed with LCat from NFKC of U+2168'],
    ['\u00E9\uD800', 'lone surrogate'],
    ['\uDC00\u00E9', 'lone low surrogate'],
  ])('prohibited %j (%s) falls back to the raw password', (input) => {
    expect(saslprep(input)).toEqual({ prepared: input, prohibited: true });
    expect(saslprepPassword(input)).toBe(input);
  });

  test('pure right-to-left strings are allowed', () => {
    expect(saslprep('\u0627\u0628')).toEqual({ prepared: '\u0627\u0628', prohibited: false });
    expect(saslprep('\u05D0\u05D1\u05D2')).toEqual({ prepared: '\u05D0\u05D1\u05D2', prohibited: false });
  });

  test('astral characters assigned in Unicode 3.2 are allowed', () => {
    // U+1D400 MATHEMATICAL BOLD CAPITAL A, NFKC -> "A"
    expect(saslprep('\u{1D400}b')).toEqual({ prepared: 'Ab', prohibited: false });
  });
});
