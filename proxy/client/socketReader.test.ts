import net from 'node:net';
import { ProtocolViolation } from '../protocol/clientMessages.js';
import { ClientGone, SocketReader } from './socketReader.js';

/** A connected pair of real loopback sockets: what the proxy reads from, and the client's end. */
async function socketPair(): Promise<{ server: net.Socket; client: net.Socket; close(): void }> {
  const listener = net.createServer();
  await new Promise<void>((r) => listener.listen(0, '127.0.0.1', () => r()));
  const port = (listener.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => listener.once('connection', r));
  const client = net.connect({ host: '127.0.0.1', port });
  const server = await accepted;
  client.on('error', () => undefined);
  server.on('error', () => undefined);
  return {
    server,
    client,
    close: () => {
      client.destroy();
      server.destroy();
      listener.close();
    },
  };
}

function message(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head[0] = type.charCodeAt(0);
  head.writeUInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
}

test('a message dribbled in byte by byte comes out whole, and what follows stays for the next read', async () => {
  const { server, client, close } = await socketPair();
  try {
    const reader = new SocketReader(server);
    const first = message('p', Buffer.from('SCRAM-SHA-256\0'));
    const second = message('p', Buffer.alloc(40_000, 0x62));
    const bytes = Buffer.concat([first, second]);
    const read = reader.readMessage();
    for (let i = 0; i < first.length; i++) {
      client.write(bytes.subarray(i, i + 1));
      await new Promise((r) => setImmediate(r));
    }
    client.write(bytes.subarray(first.length));
    expect(await read).toEqual({ type: 'p', msg: first });
    expect(await reader.readMessage()).toEqual({ type: 'p', msg: second });
    client.write(Buffer.from('rest'));
    await new Promise((r) => setTimeout(r, 20));
    expect(reader.detach().toString()).toBe('rest');
  } finally {
    close();
  }
});

test('more than the limit sent ahead of the protocol: reading stops and the next read says why', async () => {
  const { server, client, close } = await socketPair();
  try {
    const reader = new SocketReader(server, 64 * 1024);
    // Nobody is reading (the proxy is waiting out a failure delay, or calling STS).
    client.write(Buffer.alloc(4 * 1024 * 1024, 0x61));
    await new Promise<void>((r) => {
      const check = (): void => (server.isPaused() ? r() : void setTimeout(check, 5));
      check();
    });
    expect(server.bytesRead).toBeLessThan(1024 * 1024);
    const err = await reader.readMessage().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ProtocolViolation);
    expect(err).toMatchObject({ code: '08P01', message: 'client sent more than 65536 bytes before authentication completed' });
    expect(() => reader.detach()).toThrow(ProtocolViolation);
  } finally {
    close();
  }
});

test('a client that leaves mid-message is ClientGone', async () => {
  const { server, client, close } = await socketPair();
  try {
    const reader = new SocketReader(server);
    client.end(message('p', Buffer.alloc(100)).subarray(0, 50));
    await expect(reader.readMessage()).rejects.toBeInstanceOf(ClientGone);
  } finally {
    close();
  }
});
