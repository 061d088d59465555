// The stream core on its own, with fake sockets: bytes arrive as they were sent whatever the
// chunking, each read costs one write per direction, and a full socket stops reading from the
// other side until it drains.
import { EventEmitter } from 'node:events';
import fc from 'fast-check';
import { Framer, type FrameSink, inspectTable } from '../protocol/framer.js';
import { OutBuffer } from './outBuffer.js';
import { PAUSE_BACKPRESSURE, PAUSE_BORROW, StreamPair, type StreamOwner } from './streamPair.js';

const fcParams = { seed: Number(process.env.FC_SEED ?? 5), numRuns: Number(process.env.FC_RUNS ?? 200) };

class FakeSocket extends EventEmitter {
  readonly writes: Buffer[] = [];
  /** The buffers as handed to write(), not copies. */
  readonly handed: Buffer[] = [];
  corked = 0;
  paused = false;
  full = false;
  write(b: Buffer): boolean {
    this.handed.push(b);
    this.writes.push(Buffer.from(b));
    return !this.full;
  }
  cork(): void {
    this.corked++;
  }
  uncork(): void {}
  pause(): this {
    this.paused = true;
    return this;
  }
  resume(): this {
    this.paused = false;
    return this;
  }
  get bytes(): Buffer {
    return Buffer.concat(this.writes);
  }
}

function msg(type: string, body: Buffer | string): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeUInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

/** An owner that forwards everything as it came, each way. */
function forwarding(): { owner: StreamOwner; reads: { client: number; server: number }; pair?: StreamPair } {
  const holder: { owner: StreamOwner; reads: { client: number; server: number }; pair?: StreamPair } = {
    reads: { client: 0, server: 0 },
    owner: {
      fromClient: { raw: (b) => holder.pair!.toServer.push(b), message: (_t, m) => holder.pair!.toServer.push(m) } as FrameSink,
      fromServer: { raw: (b) => holder.pair!.toClient.push(b), message: (_t, m) => holder.pair!.toClient.push(m) } as FrameSink,
      afterClientRead: () => void holder.reads.client++,
      afterServerRead: () => void holder.reads.server++,
      framingError: (e) => {
        throw e;
      },
    },
  };
  return holder;
}

function setUp(clientInspect = inspectTable('QPBEDCHSF')) {
  const client = new FakeSocket();
  const backend = new FakeSocket();
  const h = forwarding();
  const pair = new StreamPair(client, new Framer(clientInspect, 1 << 20), h.owner);
  h.pair = pair;
  pair.attach(backend, new Framer(inspectTable('TCZE'), 1 << 20));
  return { client, backend, pair, reads: h.reads };
}

test('any chunking of client and server traffic arrives byte for byte, one write per read at most', () => {
  const message = fc.record({ t: fc.constantFrom('Q', 'P', 'B', 'd', 'T', 'D', 'C', 'Z'), body: fc.uint8Array({ maxLength: 3000 }) });
  fc.assert(
    fc.property(fc.array(message, { maxLength: 20 }), fc.array(fc.nat(), { maxLength: 20 }), (msgs, cuts) => {
      const { client, backend, pair } = setUp();
      const stream = Buffer.concat(msgs.map((m) => msg(m.t, Buffer.from(m.body))));
      const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
      let from = 0;
      let reads = 0;
      for (const p of [...points, stream.length]) {
        const chunk = stream.subarray(from, p);
        from = p;
        if (chunk.length === 0) continue;
        reads++;
        const before = backend.writes.length;
        pair.clientData(Buffer.from(chunk));
        expect(backend.writes.length - before).toBeLessThanOrEqual(1);
        // And the other way, the same bytes as if the server had sent them.
        const w0 = client.writes.length;
        pair.serverData(Buffer.from(chunk));
        expect(client.writes.length - w0).toBeLessThanOrEqual(1);
      }
      expect(backend.bytes).toEqual(stream);
      expect(client.bytes).toEqual(stream);
      expect(reads).toBeGreaterThanOrEqual(0);
      expect(backend.corked + client.corked).toBe(0);
    }),
    fcParams,
  );
});

test('a read forwarded whole is written as the very buffer that was read', () => {
  const { backend, pair } = setUp();
  const read = Buffer.concat([msg('P', 'x\0SELECT 1\0\0\0'), msg('B', '\0x\0\0\0\0\0\0\0'), msg('E', '\0\0\0\0\0'), msg('S', '')]);
  pair.clientData(read);
  expect(backend.handed).toHaveLength(1);
  // Not a copy, not even a new view: the read itself.
  expect(backend.handed[0]).toBe(read);
});

test('a full backend socket stops client reads until it drains; a full client socket stops backend reads', () => {
  const { client, backend, pair } = setUp();
  backend.full = true;
  pair.clientData(msg('Q', 'select 1\0'));
  expect(client.paused).toBe(true);
  pair.backendDrained();
  expect(client.paused).toBe(false);
  client.full = true;
  pair.serverData(msg('Z', 'I'));
  expect(backend.paused).toBe(true);
  client.emit('drain');
  expect(backend.paused).toBe(false);
});

test('client reads resume only when no reason to pause remains (waiting for a backend, a full backend)', () => {
  const { client, backend, pair } = setUp();
  pair.pauseClient(PAUSE_BORROW);
  backend.full = true;
  pair.clientData(msg('Q', 'select 1\0'));
  expect(client.paused).toBe(true);
  pair.unpauseClient(PAUSE_BORROW);
  expect(client.paused).toBe(true);
  pair.unpauseClient(PAUSE_BACKPRESSURE);
  expect(client.paused).toBe(false);
});

test('detaching drops what was not written to the backend and lets both sides read again', () => {
  const { client, backend, pair } = setUp();
  client.full = true;
  pair.serverData(msg('Z', 'I'));
  expect(backend.paused).toBe(true);
  backend.full = true;
  pair.clientData(msg('Q', 'select 1\0'));
  expect(client.paused).toBe(true);
  pair.toServer.push(msg('Q', 'never sent\0'));
  pair.detach();
  expect(backend.paused).toBe(false);
  expect(client.paused).toBe(false);
  expect(pair.hasBackend).toBe(false);
  expect(pair.toServer.size).toBe(0);
});

describe('OutBuffer', () => {
  test('neighbouring slices merge into one write; others are joined into one write when small', () => {
    const sink = new FakeSocket();
    const out = new OutBuffer(sink);
    const chunk = Buffer.from('abcdefghij');
    out.push(chunk.subarray(0, 3));
    out.push(chunk.subarray(3, 7));
    out.push(Buffer.from('XY'));
    out.push(chunk.subarray(7));
    expect(out.size).toBe(12);
    expect(out.flush()).toBe(true);
    expect(sink.writes.map((w) => w.toString())).toEqual(['abcdefgXYhij']);
    expect(out.size).toBe(0);
  });

  test('large output goes out as several writes under one cork, in order', () => {
    const sink = new FakeSocket();
    const out = new OutBuffer(sink);
    const a = Buffer.alloc(40_000, 1);
    const b = Buffer.alloc(40_000, 2);
    out.push(a);
    out.push(b);
    out.flush();
    expect(sink.corked).toBe(1);
    expect(Buffer.concat(sink.writes)).toEqual(Buffer.concat([a, b]));
  });

  test('any sequence of pushes is written in order, byte for byte', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ minLength: 1, maxLength: 200 })), { maxLength: 30 }), (parts) => {
        const sink = new FakeSocket();
        const out = new OutBuffer(sink);
        const big = Buffer.concat(parts.map(([, u]) => Buffer.from(u)));
        let at = 0;
        const expected: Buffer[] = [];
        for (const [slice, u] of parts) {
          // Either a slice of one shared read, or a buffer of its own.
          const piece = slice ? big.subarray(at, at + u.length) : Buffer.from(u);
          at += u.length;
          expected.push(Buffer.from(piece));
          out.push(piece);
        }
        out.flush();
        expect(Buffer.concat(sink.writes)).toEqual(Buffer.concat(expected));
        expect(sink.writes.length).toBeLessThanOrEqual(1);
      }),
      fcParams,
    );
  });
});
