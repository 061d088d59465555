// The framer is the data path's only parser of the byte stream: whatever the chunking, it must
// deliver exactly the messages and raw bytes that one whole chunk would. These properties run
// random message sequences through random chunkings (1-byte reads and headers split across
// reads included) and compare against a model computed from the messages themselves.
// FC_SEED / FC_RUNS override the fixed seed and the number of runs (e.g. FC_RUNS=20000 locally).
import fc from 'fast-check';
import { Framer, FramingError, inspectTable, type FrameSink } from './framer.js';

const fcParams = { seed: Number(process.env.FC_SEED ?? 11), numRuns: Number(process.env.FC_RUNS ?? 300) };

type Event = { kind: 'raw'; bytes: Buffer } | { kind: 'msg'; type: number; bytes: Buffer };

interface Spec {
  type: number;
  body: Buffer;
}

function encode(m: Spec): Buffer {
  const b = Buffer.allocUnsafe(5 + m.body.length);
  b[0] = m.type;
  b.writeUInt32BE(4 + m.body.length, 1);
  m.body.copy(b, 5);
  return b;
}

/**
 * Adjacent raw events merged (chunking may split raw bytes anywhere, but never reorder them),
 * each event as a string, so comparing megabytes stays cheap.
 */
function normalize(events: Event[]): string[] {
  const out: Array<{ kind: 'raw' | 'msg'; parts: Buffer[]; type: number }> = [];
  for (const e of events) {
    const last = out[out.length - 1];
    if (e.kind === 'raw' && e.bytes.length === 0) continue;
    if (e.kind === 'raw' && last?.kind === 'raw') last.parts.push(e.bytes);
    else out.push({ kind: e.kind, parts: [e.bytes], type: e.kind === 'msg' ? e.type : 0 });
  }
  return out.map((e) => `${e.kind}:${e.type}:${Buffer.concat(e.parts).toString('hex')}`);
}

const TOGGLE = 0x21; // '!': an inspected type whose delivery swaps the inspect table, as a session does

/** What the stream must produce: each message whole or raw, decided by the table in force at its header. */
function model(msgs: Spec[], a: Uint8Array, b: Uint8Array): string[] {
  let table = a;
  const events: Event[] = [];
  for (const m of msgs) {
    if (table[m.type]) {
      events.push({ kind: 'msg', type: m.type, bytes: encode(m) });
      if (m.type === TOGGLE) table = table === a ? b : a;
    } else events.push({ kind: 'raw', bytes: encode(m) });
  }
  return normalize(events);
}

function run(chunks: Buffer[], a: Uint8Array, b: Uint8Array, maxLength = 1 << 30): { events: string[]; atBoundary: boolean } {
  const events: Event[] = [];
  const framer = new Framer(a, maxLength);
  const sink: FrameSink = {
    raw: (bytes) => events.push({ kind: 'raw', bytes: Buffer.from(bytes) }),
    message: (type, bytes) => {
      events.push({ kind: 'msg', type, bytes: Buffer.from(bytes) });
      if (type === TOGGLE) framer.inspect = framer.inspect === a ? b : a;
    },
  };
  for (const c of chunks) framer.push(c, sink);
  return { events: normalize(events), atBoundary: framer.atBoundary };
}

function split(stream: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((x, y) => x - y);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const p of points) {
    chunks.push(stream.subarray(start, p));
    start = p;
  }
  chunks.push(stream.subarray(start));
  return chunks;
}

const TYPES = [...'QPBEDCHSFdcfX123tTnCIsEZSNAGHWVKR', '!'].map((c) => c.charCodeAt(0));

// Mostly small bodies (headers split across reads are the interesting case), sometimes large
// ones, so one message spans many chunks.
const body = fc.oneof(
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 12 }) },
  { weight: 3, arbitrary: fc.uint8Array({ minLength: 13, maxLength: 300 }) },
  { weight: 1, arbitrary: fc.integer({ min: 1000, max: 70_000 }).map((n) => new Uint8Array(n).fill(0x78)) },
);
const message = fc.record({ type: fc.constantFrom(...TYPES), body: body.map((u) => Buffer.from(u)) });
const table = fc.subarray(TYPES).map((ts) => inspectTable(String.fromCharCode(...ts, TOGGLE)));

describe('Framer', () => {
  test('any chunking of any message sequence gives the messages and raw bytes of one whole chunk', () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 25 }), table, table, fc.array(fc.nat(), { maxLength: 40 }), (msgs, a, b, cuts) => {
        const stream = Buffer.concat(msgs.map(encode));
        const expected = model(msgs, a, b);
        const whole = run([stream], a, b);
        const chunked = run(split(stream, cuts), a, b);
        expect(whole.events).toEqual(expected);
        expect(chunked.events).toEqual(expected);
        expect(chunked.atBoundary).toBe(true);
      }),
      fcParams,
    );
  });

  test('one-byte reads give the same result as one chunk', () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 12 }), table, table, (msgs, a, b) => {
        const stream = Buffer.concat(msgs.map(encode));
        const bytes = [...stream].map((x) => Buffer.of(x));
        expect(run(bytes, a, b).events).toEqual(model(msgs, a, b));
      }),
      { ...fcParams, numRuns: Math.ceil(fcParams.numRuns / 3) },
    );
  });

  test('a boundary is reported only between messages', () => {
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 8 }), table, fc.nat(), (msgs, a, cut) => {
        const stream = Buffer.concat(msgs.map(encode));
        const ends = new Set<number>([0]);
        let off = 0;
        for (const m of msgs) ends.add((off += 5 + m.body.length));
        const at = cut % (stream.length + 1);
        const framer = new Framer(a, 1 << 30);
        framer.push(stream.subarray(0, at), { raw: () => undefined, message: () => undefined });
        expect(framer.atBoundary).toBe(ends.has(at));
      }),
      fcParams,
    );
  });

  test('a length over the limit is a FramingError at the same message whatever the chunking', () => {
    fc.assert(
      fc.property(fc.array(message, { maxLength: 6 }), table, fc.array(fc.nat(), { maxLength: 10 }), fc.constantFrom(0, 1, 3, 1000, 0xffffffff), (msgs, a, cuts, badLen) => {
        const limit = 100_000;
        const bad = Buffer.alloc(5);
        bad[0] = 'Q'.charCodeAt(0);
        bad.writeUInt32BE(badLen === 1000 ? limit + 1 : badLen, 1);
        const stream = Buffer.concat([...msgs.map(encode), bad, Buffer.from('after')]);
        const events: Event[] = [];
        const framer = new Framer(a, limit);
        const sink: FrameSink = {
          raw: (bytes) => events.push({ kind: 'raw', bytes: Buffer.from(bytes) }),
          message: (type, bytes) => events.push({ kind: 'msg', type, bytes: Buffer.from(bytes) }),
        };
        let error: unknown;
        try {
          for (const c of split(stream, cuts)) framer.push(c, sink);
        } catch (e) {
          error = e;
        }
        expect(error).toBeInstanceOf(FramingError);
        // Everything before the bad header was delivered, nothing after it.
        expect(normalize(events)).toEqual(model(msgs, a, a));
      }),
      fcParams,
    );
  });

  test('an inspected message spanning three reads is delivered once and never leaks as raw bytes', () => {
    // The shape of the request-smuggling attack: a Bind announcing a large body, then whole
    // messages in a later read that are really the Bind's body.
    const smuggled = Buffer.concat([encode({ type: 0x51, body: Buffer.from('SELECT 1\0') }), encode({ type: 0x51, body: Buffer.from('SELECT 2\0') })]);
    const bindBody = Buffer.concat([Buffer.alloc(100, 0x61), smuggled, Buffer.alloc(200, 0x62)]);
    const bind = encode({ type: 0x42, body: bindBody });
    const chunks = [bind.subarray(0, 50), bind.subarray(50, 100 + 5), bind.subarray(105, 105 + smuggled.length), bind.subarray(105 + smuggled.length)];
    const table = inspectTable('QPBEDCSHF');
    const { events } = run(chunks, table, table);
    expect(events).toEqual(normalize([{ kind: 'msg', type: 0x42, bytes: bind }]));
  });
});
