// The application side of the kind end-to-end tests: a small HTTP service that runs in a pod of
// the cluster (image: the Dockerfile's build stage, which has Node 24, node-postgres and this
// file compiled) and opens real node-postgres connections to what the test names — a proxy's
// Service by its DNS name, as applications do. The test drives it through the API server's pod
// proxy (`kubectl get --raw /api/v1/namespaces/NS/pods/NAME:8080/proxy/...`), so nothing outside
// the cluster talks to the cluster's network.
//
// The password comes from PGPASSWORD and the user and database from PGUSER and PGDATABASE (the
// pod's env, from a Secret), as node-postgres reads them.
//
//   GET  /healthz
//   POST /open   {group, count, host, port?, ssl?: {ca, servername}}       open `count` clients
//   POST /query  {group, from, to, sql}     run sql on clients [from, to); each result or error
//   POST /close  {group}                    end the group's clients
//   POST /try    {host, port?, ssl?, password?, sql}   connect, run sql, disconnect: the rows or the error
//   POST /load/start {host, port?, clients, samplerHost?}   start a transaction workload
//   GET  /load                              its counters so far
//   POST /load/stop                         stop it; the final counters
//   POST /tls/peer {host, port?, servername, ca}   the certificate the server presents after an SSLRequest
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import pg from 'pg';

type Conn = { host: string; port?: number; ssl?: { ca: string; servername: string }; password?: string };

const groups = new Map<string, pg.Client[]>();

function clientConfig(c: Conn): pg.ClientConfig {
  return {
    host: c.host,
    port: c.port ?? 5432,
    connectionTimeoutMillis: 10_000,
    ...(c.password !== undefined ? { password: c.password } : {}),
    ...(c.ssl ? { ssl: { ca: c.ssl.ca, servername: c.ssl.servername, rejectUnauthorized: true } } : {}),
  };
}

async function connect(c: Conn): Promise<pg.Client> {
  const client = new pg.Client(clientConfig(c));
  // An idle client dropped by the server is reported where it is next used, not thrown here.
  client.on('error', () => {});
  await client.connect();
  return client;
}

function errorOf(e: unknown): { code?: string; message: string } {
  const err = e as { code?: string; message?: string };
  return { ...(err.code ? { code: err.code } : {}), message: err.message ?? String(e) };
}

// --- the workload: short transactions in a loop, reconnecting as applications do ------------

type Counters = {
  commits: number;
  /** Errors on an established connection that a draining proxy pod closed (57P01, terminated, reset). */
  drained: number;
  /** Connection attempts that failed (refused, reset or timed out before the session started). */
  connectErrors: string[];
  /** Anything else: always a failure. */
  other: string[];
  /** Most backend connections PostgreSQL showed at once (sampled every 100 ms, own and health checks excluded). */
  maxBackends: number;
  samples: number;
};

let load: { running: boolean; counters: Counters; done: Promise<void> } | undefined;

const DRAINED = /Connection terminated|ECONNRESET|EPIPE|not queryable|Client has encountered a connection error|closed/i;

async function worker(conn: Conn, counters: Counters, isRunning: () => boolean): Promise<void> {
  let c: pg.Client | undefined;
  while (isRunning()) {
    if (!c) {
      try {
        c = await connect(conn);
      } catch (e) {
        const err = errorOf(e);
        counters.connectErrors.push(`${err.code ?? ''} ${err.message}`.trim());
        // An application's reconnect backoff.
        await new Promise((r) => setTimeout(r, 50));
        continue;
      }
    }
    try {
      await c.query('BEGIN');
      await c.query('SELECT pg_sleep(0.005)');
      await c.query('COMMIT');
      counters.commits += 1;
    } catch (e) {
      const err = errorOf(e);
      if (err.code === '57P01' || DRAINED.test(err.message)) counters.drained += 1;
      else counters.other.push(`${err.code ?? ''} ${err.message}`.trim());
      await c.end().catch(() => {});
      c = undefined;
    }
  }
  await c?.end().catch(() => {});
}

async function sampler(host: string, counters: Counters, isRunning: () => boolean): Promise<void> {
  const c = await connect({ host });
  try {
    while (isRunning()) {
      const r = await c.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name <> 'dbproxy health check'",
      );
      counters.maxBackends = Math.max(counters.maxBackends, r.rows[0].n as number);
      counters.samples += 1;
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await c.end().catch(() => {});
  }
}

// --- TLS: the certificate a PostgreSQL server (or the proxy) presents ------------------------

function tlsPeer(o: { host: string; port?: number; servername: string; ca: string }): Promise<{ serial: string; subject: string; authorized: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(o.port ?? 5432, o.host);
    const fail = (e: Error) => {
      socket.destroy();
      reject(e);
    };
    socket.setTimeout(10_000, () => fail(new Error('timeout')));
    socket.once('error', fail);
    socket.once('connect', () => {
      const req = Buffer.alloc(8);
      req.writeInt32BE(8, 0);
      req.writeInt32BE(80877103, 4); // SSLRequest
      socket.write(req);
    });
    socket.once('data', (d: Buffer) => {
      if (d[0] !== 0x53) return fail(new Error(`server answered ${JSON.stringify(String.fromCharCode(d[0]!))} to SSLRequest`));
      const t = tls.connect({ socket, servername: o.servername, ca: o.ca, rejectUnauthorized: false });
      t.once('error', fail);
      t.once('secureConnect', () => {
        const cert = t.getPeerCertificate();
        resolve({ serial: cert.serialNumber, subject: String(cert.subject?.CN ?? ''), authorized: t.authorized });
        t.destroy();
      });
    });
  });
}

// --- HTTP ------------------------------------------------------------------------------------

async function body(req: IncomingMessage): Promise<any> {
  let s = '';
  for await (const chunk of req) s += chunk;
  return s ? JSON.parse(s) : {};
}

async function handle(req: IncomingMessage): Promise<unknown> {
  const path = (req.url ?? '').split('?')[0];
  const b = req.method === 'POST' ? await body(req) : {};
  switch (`${req.method} ${path}`) {
    case 'GET /healthz':
      return { ok: true };
    case 'POST /open': {
      const list = groups.get(b.group) ?? [];
      groups.set(b.group, list);
      for (let i = 0; i < b.count; i += 20) {
        const n = Math.min(20, b.count - i);
        list.push(...(await Promise.all(Array.from({ length: n }, () => connect(b)))));
      }
      return { open: list.length };
    }
    case 'POST /query': {
      const list = groups.get(b.group) ?? [];
      const results: unknown[] = [];
      for (const c of list.slice(b.from, b.to)) {
        try {
          const r = await c.query(b.sql);
          const last = Array.isArray(r) ? r[r.length - 1] : r;
          results.push({ rows: last.rows });
        } catch (e) {
          results.push({ error: errorOf(e) });
        }
      }
      return { results };
    }
    case 'POST /try': {
      let c: pg.Client | undefined;
      try {
        c = await connect(b);
        const r = await c.query(b.sql);
        return { rows: r.rows };
      } catch (e) {
        return { error: errorOf(e) };
      } finally {
        await c?.end().catch(() => {});
      }
    }
    case 'POST /close': {
      const list = groups.get(b.group) ?? [];
      groups.delete(b.group);
      await Promise.all(list.map((c) => c.end().catch(() => {})));
      return { closed: list.length };
    }
    case 'POST /load/start': {
      if (load?.running) throw new Error('a workload is already running');
      const counters: Counters = { commits: 0, drained: 0, connectErrors: [], other: [], maxBackends: 0, samples: 0 };
      const state = { running: true, counters, done: Promise.resolve() };
      const isRunning = () => state.running;
      const tasks = Array.from({ length: b.clients }, () => worker(b, counters, isRunning));
      if (b.samplerHost) tasks.push(sampler(b.samplerHost, counters, isRunning).catch((e) => void counters.other.push(`sampler: ${errorOf(e).message}`)));
      state.done = Promise.all(tasks).then(() => {});
      load = state;
      return { started: b.clients };
    }
    case 'GET /load':
      if (!load) throw new Error('no workload');
      return load.counters;
    case 'POST /load/stop': {
      if (!load) throw new Error('no workload');
      load.running = false;
      await load.done;
      return load.counters;
    }
    case 'POST /tls/peer':
      return tlsPeer(b);
    default:
      throw Object.assign(new Error(`no such endpoint: ${req.method} ${path}`), { status: 404 });
  }
}

const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  handle(req).then(
    (out) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(out));
    },
    (e: unknown) => {
      const status = (e as { status?: number }).status ?? 500;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: errorOf(e) }));
    },
  );
});
const port = Number(process.env.PORT ?? 8080);
server.listen(port, () => process.stdout.write(`client driver listening on :${port}\n`));
for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => server.close(() => process.exit(0)));
