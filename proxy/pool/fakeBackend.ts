// For the pools' unit tests: a socket that records writes and closes on demand, so a real
// BackendConnection can be made without a server.
import { EventEmitter } from 'node:events';
import type net from 'node:net';
import { BackendConnection, type BackendEndpoint } from '../backend/backendConnection.js';
import type { PoolKey } from './backendPool.js';

export class FakeSocket extends EventEmitter {
  writable = true;
  destroyed = false;
  writes: Buffer[] = [];
  write(b: Buffer): boolean {
    this.writes.push(b);
    return true;
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  end(): this {
    this.close();
    return this;
  }
  destroySoon(): void {
    this.close();
  }
  destroy(): this {
    this.close();
    return this;
  }
  private close(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.writable = false;
    this.emit('close');
  }
}

/** A BackendConnection over a FakeSocket, as a pool's open() would return it. */
export function fakeBackend(id: number, key: PoolKey, endpoint: BackendEndpoint, now: number): { b: BackendConnection; socket: FakeSocket } {
  const socket = new FakeSocket();
  return { b: new BackendConnection(id, socket as unknown as net.Socket, endpoint, key.user, key.database, now), socket };
}
