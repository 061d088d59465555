// Cancel requests between proxy replicas: a Service balances each new TCP connection, so a
// client's CancelRequest often reaches a replica other than the one running its query. A cancel
// whose key is not known here is sent to every peer's admin HTTP endpoint (POST /cancel); peers
// only look up their own sessions and never forward again, so there are no loops, and replicas
// that happen to share a replicaId still find the right session by pid and secret. Peers answer
// every well-formed cancel alike (202), matched or not, so the forwarder only learns which peers
// it reached. The same way, a DROP DATABASE through one replica asks the others to close their
// idle connections to that database (POST /release-database), which only peers may ask.
import { lookup } from 'node:dns/promises';
import { networkInterfaces } from 'node:os';
import type { Logger } from 'pino';

export interface PeerConfig {
  /** A name resolving to every replica's address (a headless Service), re-resolved per cancel. */
  dns?: string;
  /** Fixed peer addresses (host:port of their admin HTTP), for setups without DNS. */
  static: string[];
  /** The admin HTTP port of peers found by DNS. */
  adminPort: number;
  timeoutMs: number;
}

export interface PeerForwarderDeps {
  config: PeerConfig;
  /** This replica's own admin address (host:port), never sent to. */
  self: () => string;
  log: Logger;
  resolve?: (name: string) => Promise<string[]>;
  post?: (url: string, body: string, timeoutMs: number) => Promise<number>;
}

const localAddresses = (): Set<string> =>
  new Set(
    Object.values(networkInterfaces())
      .flat()
      .map((i) => i?.address)
      .filter((a): a is string => typeof a === 'string'),
  );

async function httpPost(url: string, body: string, timeoutMs: number): Promise<number> {
  const r = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(timeoutMs) });
  return r.status;
}

export class PeerForwarder {
  constructor(private readonly deps: PeerForwarderDeps) {}

  get enabled(): boolean {
    return this.deps.config.dns !== undefined || this.deps.config.static.length > 0;
  }

  async peers(): Promise<string[]> {
    const { config } = this.deps;
    const out = new Set(config.static);
    if (config.dns) {
      try {
        const addresses = await (this.deps.resolve ?? (async (n: string) => (await lookup(n, { all: true })).map((a) => a.address)))(config.dns);
        const mine = localAddresses();
        for (const a of addresses) if (!mine.has(a)) out.add(a.includes(':') ? `[${a}]:${config.adminPort}` : `${a}:${config.adminPort}`);
      } catch (e) {
        this.deps.log.warn({ peers: config.dns, err: (e as Error).message }, 'peer name did not resolve');
      }
    }
    out.delete(this.deps.self());
    return [...out];
  }

  /** Sends the cancel to every peer; resolves to how many took it in (202). */
  forward(pid: number, secret: number): Promise<number> {
    return this.postToPeers('/cancel', { pid, secret }, 'cancel');
  }

  /** Asks every peer to close its idle connections to `database` (a DROP DATABASE is coming); resolves to how many took it in. */
  releaseDatabase(database: string): Promise<number> {
    return this.postToPeers('/release-database', { database }, 'database release');
  }

  /**
   * Whether `address` (a request's source) is one of the peers: an address of the DNS name or of
   * a static peer. Requests only peers may make are refused from anywhere else.
   */
  async isPeer(address: string | undefined): Promise<boolean> {
    if (address === undefined) return false;
    const plain = address.replace(/^::ffff:/, '');
    const { config } = this.deps;
    const resolve = this.deps.resolve ?? (async (n: string) => (await lookup(n, { all: true })).map((a) => a.address));
    const names = [...(config.dns ? [config.dns] : []), ...config.static.map((p) => p.replace(/^\[?([^\]]*?)\]?:\d+$/, '$1'))];
    for (const name of names) {
      try {
        if (name === plain || (await resolve(name)).some((a) => a.replace(/^::ffff:/, '') === plain)) return true;
      } catch {
        // A name that does not resolve names no peer.
      }
    }
    return false;
  }

  private async postToPeers(path: string, message: object, what: string): Promise<number> {
    const body = JSON.stringify(message);
    const post = this.deps.post ?? httpPost;
    const results = await Promise.all(
      (await this.peers()).map((peer) =>
        post(`http://${peer}${path}`, body, this.deps.config.timeoutMs).then(
          (status) => {
            if (status === 202) return true;
            this.deps.log.warn({ peer, status }, `peer did not take the forwarded ${what}`);
            return false;
          },
          (e: Error) => {
            this.deps.log.warn({ peer, err: e.message }, `${what} could not be forwarded to a peer`);
            return false;
          },
        ),
      ),
    );
    return results.filter(Boolean).length;
  }
}
