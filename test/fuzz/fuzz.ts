// `make fuzz`: random and mutated protocol traffic, before and after login, against a dbproxy
// process (the CLI, as it runs in a pod) in front of a real PostgreSQL. Bounded by time; not part
// of `make test`. It fails on:
//   - the proxy process ending (a crash, an unhandled rejection: Node exits on those);
//   - a FATAL from the proxy, or a closed connection, on a sequence of valid messages;
//   - a client receiving another client's data (every valid statement carries its client's mark);
//   - memory that keeps growing (resident memory late in the run against early in the run);
//   - the proxy failing a plain query afterwards, or keeping backends borrowed or clients open.
// Environment: FUZZ_SECONDS (default 60), FUZZ_SEED (default: random), FUZZ_CLIENTS (default 8),
// FUZZ_CLI (another build's dist/proxy/cli/dbproxy.js, e.g. to check the fuzzer finds an old bug).
import { randomInt } from 'node:crypto';
import net from 'node:net';
import { join } from 'node:path';
import { serialize } from 'pg-protocol';
import { Parser } from 'pg-protocol/dist/parser.js';
import type { BackendMessage } from 'pg-protocol/dist/messages.js';
import { startPostgres, type PgUser } from '../../hack/postgres.js';
import { repoRoot } from '../../hack/repoRoot.js';
import { ScramClientExchange } from '../../proxy/auth/scramClient.js';
import { startDbproxy } from '../bench/dbproxyProcess.js';
import { freePort } from '../support/harness.js';

const SECONDS = Number(process.env.FUZZ_SECONDS ?? 60);
const SEED = Number(process.env.FUZZ_SEED ?? randomInt(2 ** 31));
const CLIENTS = Number(process.env.FUZZ_CLIENTS ?? 8);
const USER: PgUser = { name: 'fuzz', password: 'fuzz-secret', auth: 'scram-sha-256' };

type Msg = BackendMessage & Record<string, unknown>;

function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Failure extends Error {}

/** A connection that parses what comes back; a parse failure of the proxy's answer is itself a finding. */
class Conn {
  readonly messages: Msg[] = [];
  closed = false;
  private readonly parser = new Parser();
  private wake: (() => void) | null = null;
  private cursor = 0;

  constructor(readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      this.parser.parse(d, (m) => this.messages.push(m as Msg));
      this.notify();
    });
    socket.on('close', () => {
      this.closed = true;
      this.notify();
    });
    socket.on('error', () => undefined);
  }

  static open(port: number): Promise<Conn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => resolve(new Conn(s)));
      s.once('error', reject);
    });
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** The next message, or null when the connection closed or `ms` passed. */
  async next(ms: number): Promise<Msg | null> {
    const deadline = Date.now() + ms;
    while (this.cursor >= this.messages.length) {
      if (this.closed || Date.now() >= deadline) return null;
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
    return this.messages[this.cursor++]!;
  }

  write(b: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(b);
  }

  close(): void {
    this.socket.destroy();
  }
}

async function login(port: number, params: Record<string, string> = {}): Promise<Conn> {
  const c = await Conn.open(port);
  c.write(serialize.startup({ user: USER.name, database: 'postgres', ...params }));
  let scram: ScramClientExchange | undefined;
  for (;;) {
    const m = await c.next(10_000);
    if (m === null) throw new Failure(`login: the proxy closed or went silent (${c.messages.map((x) => x.name).join(',')})`);
    if (m.name === 'authenticationSASL') {
      scram = new ScramClientExchange(USER.password);
      c.write(serialize.sendSASLInitialResponseMessage('SCRAM-SHA-256', scram.clientFirst()));
    } else if (m.name === 'authenticationSASLContinue') {
      c.write(serialize.sendSCRAMClientFinalMessage(scram!.handleServerFirst(m.data as string)));
    } else if (m.name === 'error') {
      throw new Failure(`login refused: ${String(m.code)} ${String(m.message)}`);
    } else if (m.name === 'readyForQuery') {
      return c;
    }
  }
}

function frontend(type: string, body: Buffer | string = Buffer.alloc(0)): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  const out = Buffer.alloc(5 + b.length);
  out[0] = type.charCodeAt(0);
  out.writeUInt32BE(4 + b.length, 1);
  b.copy(out, 5);
  return out;
}

/** A batch of valid messages for client `mark`, and how many ReadyForQuery answer it. */
function validBatch(rnd: () => number, mark: string): { bytes: Buffer; ready: number } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const statements = [
    `SELECT '${mark}' AS m`,
    `SELECT '${mark}', pg_sleep(0.002)`,
    `SELECT repeat('${mark}', ${1 + Math.floor(rnd() * 20_000)})`,
    `SET application_name = '${mark}'`,
    'SHOW application_name',
    `SET work_mem = '${1 + Math.floor(rnd() * 64)}MB'`,
    'SELECT 1/0',
    'BEGIN',
    'COMMIT',
    'ROLLBACK',
    `DO $$ BEGIN RAISE NOTICE '${mark}'; END $$`,
    `COPY (SELECT '${mark}' FROM generate_series(1, 3)) TO STDOUT`,
    `SELECT '${mark}' FROM generate_series(1, ${Math.floor(rnd() * 500)})`,
    `SELECT current_setting('application_name') = '${mark}' OR current_setting('application_name') = ''`,
  ];
  const parts: Buffer[] = [];
  let ready = 0;
  const n = 1 + Math.floor(rnd() * 6);
  for (let i = 0; i < n; i++) {
    const kind = rnd();
    if (kind < 0.45) {
      parts.push(serialize.query(rnd() < 0.2 ? `${pick(statements)}; ${pick(statements)}` : pick(statements)));
      ready++;
    } else if (kind < 0.9) {
      const name = rnd() < 0.5 ? '' : `s${Math.floor(rnd() * 4)}`;
      parts.push(serialize.parse({ name, text: pick([`SELECT $1::text || '${mark}'`, `SELECT '${mark}' WHERE $1::text IS NOT NULL`]) }));
      if (rnd() < 0.3) parts.push(serialize.describe({ type: 'S', name }));
      parts.push(serialize.bind({ statement: name, values: [rnd() < 0.2 ? null : mark] }));
      if (rnd() < 0.3) parts.push(serialize.describe({ type: 'P', name: '' }));
      parts.push(serialize.execute({ rows: rnd() < 0.2 ? 1 : 0 }));
      if (rnd() < 0.3) parts.push(serialize.close({ type: 'S', name }));
      if (rnd() < 0.1) parts.push(serialize.flush());
      parts.push(serialize.sync());
      ready++;
    } else {
      parts.push(serialize.query('CREATE TEMP TABLE IF NOT EXISTS f (v text)'));
      parts.push(serialize.query('COPY f FROM STDIN'), frontend('d', `${mark}\n`), frontend('c'));
      ready += 2;
    }
  }
  return { bytes: Buffer.concat(parts), ready };
}

/** Writes in random chunks, so message headers and bodies split across reads. */
async function writeChunked(c: Conn, bytes: Buffer, rnd: () => number): Promise<void> {
  let at = 0;
  while (at < bytes.length) {
    const n = rnd() < 0.3 ? 1 + Math.floor(rnd() * 8) : 1 + Math.floor(rnd() * bytes.length);
    c.write(bytes.subarray(at, at + n));
    at += n;
    if (rnd() < 0.3) await new Promise((r) => setImmediate(r));
  }
}

/** Damages a valid byte stream: a flipped byte, a lying length, truncation, garbage. */
function mutate(bytes: Buffer, rnd: () => number): Buffer {
  const b = Buffer.from(bytes);
  switch (Math.floor(rnd() * 6)) {
    case 0:
      if (b.length > 0) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      return b;
    case 1: {
      // A length field of the first message set to anything.
      if (b.length >= 5) b.writeUInt32BE([0, 3, 4, 5, 0x7fffffff, 0xffffffff, 1 << 30, Math.floor(rnd() * 2 ** 32)][Math.floor(rnd() * 8)]! >>> 0, 1);
      return b;
    }
    case 2:
      return b.subarray(0, Math.floor(rnd() * b.length));
    case 3: {
      const junk = Buffer.alloc(1 + Math.floor(rnd() * 64));
      for (let i = 0; i < junk.length; i++) junk[i] = Math.floor(rnd() * 256);
      return Buffer.concat([b.subarray(0, Math.floor(rnd() * b.length)), junk]);
    }
    case 4:
      // An unknown message type.
      return Buffer.concat([frontend(String.fromCharCode(Math.floor(rnd() * 256)), 'x'), b]);
    default:
      // A message announcing more than it will ever send.
      return Buffer.concat([b, frontend('B').subarray(0, 1), Buffer.from([0, 0x10, 0, 0])]);
  }
}

/** Random bytes or a damaged startup packet, before any login. */
function preLoginJunk(rnd: () => number): Buffer {
  const startup = serialize.startup({ user: USER.name, database: 'postgres', application_name: 'fz' });
  const ssl = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  const cancel = serialize.cancel(Math.floor(rnd() * 2 ** 31), Math.floor(rnd() * 2 ** 31));
  const base = [startup, ssl, cancel, Buffer.concat([ssl, startup])][Math.floor(rnd() * 4)]!;
  return rnd() < 0.2 ? Buffer.from(Array.from({ length: 1 + Math.floor(rnd() * 300) }, () => Math.floor(rnd() * 256))) : mutate(base, rnd);
}

/**
 * Every statement carries its client's mark. A mark holds a check value, so a byte the mutator
 * flipped inside the mark (which then reads as another client's) is told apart from a real one.
 */
const MARK = /fz(\d+)k([0-9a-f]{6})x/g;

function markOf(n: number): string {
  return `fz${n}k${check(String(n))}x`;
}

function check(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return (h & 0xffffff).toString(16).padStart(6, '0');
}

/** Marks in a message that are valid and not `own`. */
function foreignMarks(m: Msg, own: string): string[] {
  const text = JSON.stringify(m, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('latin1') : (v as object)));
  const out: string[] = [];
  for (const found of text.matchAll(MARK)) if (found[0] !== own && check(found[1]!) === found[2]) out.push(found[0]);
  return out;
}

interface Tally {
  valid: number;
  mutated: number;
  preLogin: number;
  disconnects: number;
  messages: number;
}

/** Reads the answers of `ready` ReadyForQuery; checks marks and that no FATAL comes. */
async function readValid(c: Conn, ready: number, mark: string, what: string): Promise<number> {
  let seen = 0;
  let count = 0;
  while (seen < ready) {
    const m = await c.next(30_000);
    if (m === null) throw new Failure(`${what}: connection ${c.closed ? 'closed' : 'silent for 30 s'} on valid input after ${count} messages`);
    count++;
    if (m.name === 'error' && m.severity === 'FATAL') throw new Failure(`${what}: FATAL on valid input: ${String(m.code)} ${String(m.message)}`);
    if (m.name === 'readyForQuery') seen++;
    for (const found of foreignMarks(m, mark)) throw new Failure(`${what}: client ${mark} received ${found}'s data in ${m.name}`);
  }
  return count;
}

async function worker(id: number, port: number, deadline: number, tally: Tally): Promise<void> {
  const rnd = prng(SEED + id * 7919);
  let round = 0;
  while (Date.now() < deadline) {
    const mark = markOf(id * 1_000_000 + round++);
    const scenario = rnd();
    if (scenario < 0.15) {
      const c = await Conn.open(port);
      await writeChunked(c, preLoginJunk(rnd), rnd);
      await c.next(200 + Math.floor(rnd() * 300));
      c.close();
      tally.preLogin++;
      continue;
    }
    const c = await login(port, rnd() < 0.3 ? { application_name: mark, options: `-c work_mem=${1 + Math.floor(rnd() * 8)}MB` } : {});
    try {
      const batches = 1 + Math.floor(rnd() * 5);
      for (let i = 0; i < batches; i++) {
        const b = validBatch(rnd, mark);
        await writeChunked(c, b.bytes, rnd);
        tally.messages += await readValid(c, b.ready, mark, `worker ${id} round ${round}`);
        tally.valid++;
      }
      const end = rnd();
      if (end < 0.3) {
        // Damaged input: an error and a closed connection are fine, a crash or a leak is not.
        await writeChunked(c, mutate(validBatch(rnd, mark).bytes, rnd), rnd);
        for (let m = await c.next(300); m !== null; m = await c.next(300)) {
          for (const found of foreignMarks(m, mark)) throw new Failure(`mutated client ${mark} received ${found}'s data`);
        }
        tally.mutated++;
      } else if (end < 0.5) {
        // Gone in the middle of something.
        const b = validBatch(rnd, mark).bytes;
        c.write(b.subarray(0, Math.floor(rnd() * b.length)));
        tally.disconnects++;
      } else {
        c.write(frontend('X'));
      }
    } finally {
      c.close();
    }
  }
}

async function main(): Promise<void> {
  const t0 = Date.now();
  console.log(`fuzz: seed ${SEED}, ${SECONDS} s, ${CLIENTS} clients (FUZZ_SEED=${SEED} repeats this run)`);
  const pg = startPostgres({ port: await freePort(), users: [USER], maxConnections: 60 });
  const proxy = await startDbproxy({
    cli: process.env.FUZZ_CLI ?? join(repoRoot(), 'dist/proxy/cli/dbproxy.js'),
    targetPort: pg.port,
    users: [USER],
    maxConnectionsPercent: 20,
  });
  const tally: Tally = { valid: 0, mutated: 0, preLogin: 0, disconnects: 0, messages: 0 };
  const rss: Array<{ at: number; rss: number }> = [];
  const sampler = setInterval(() => {
    try {
      rss.push({ at: Date.now() - t0, rss: proxy.rss() });
    } catch {
      // The process is gone: reported below.
    }
  }, 500);
  const failures: string[] = [];
  try {
    const deadline = Date.now() + SECONDS * 1000;
    const crashWatch = setInterval(() => {
      if (proxy.exitStatus()) failures.push(`${proxy.exitStatus()!}\n${proxy.logTail(4000)}`);
    }, 200);
    const results = await Promise.allSettled(Array.from({ length: CLIENTS }, (_, i) => worker(i, proxy.port, deadline, tally)));
    clearInterval(crashWatch);
    for (const r of results) if (r.status === 'rejected') failures.push((r.reason as Error).message);
    if (proxy.exitStatus()) failures.push(`${proxy.exitStatus()!}\n${proxy.logTail(4000)}`);
    else {
      // Afterwards: a plain query works, and nothing stays borrowed or connected.
      const c = await login(proxy.port);
      const finalMark = markOf(999_999_999);
      c.write(serialize.query(`SELECT '${finalMark}'`));
      await readValid(c, 1, finalMark, 'final check');
      c.close();
      const deadlineIdle = Date.now() + 15_000;
      for (;;) {
        const s = await proxy.stats();
        if (s.borrowed === 0 && s.clientConnections === 0) break;
        if (Date.now() > deadlineIdle) {
          failures.push(`after the run: ${s.borrowed} backends still borrowed, ${s.clientConnections} clients still connected`);
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } finally {
    clearInterval(sampler);
    await proxy.stop();
    pg.destroy();
  }
  if (process.env.FUZZ_RSS_LOG) console.log(rss.map((r) => `${Math.round(r.at / 1000)}s:${Math.round(r.rss / 1048576)}`).join(" "));
  // Memory: the highest resident size in the last third against the first third (after warm-up).
  const third = Math.floor(rss.length / 3);
  const mb = (n: number): number => Math.round(n / 1048576);
  const early = Math.max(...rss.slice(1, third + 1).map((r) => r.rss), 0);
  const late = Math.max(...rss.slice(2 * third).map((r) => r.rss), 0);
  if (third > 2 && late > early * 1.5 + 32 * 1048576) failures.push(`memory keeps growing: ${mb(early)} MB early, ${mb(late)} MB late`);
  console.log(
    `fuzz: ${Math.round((Date.now() - t0) / 1000)} s; ${tally.valid} valid batches (${tally.messages} answers checked), ${tally.mutated} mutated, ` +
      `${tally.preLogin} pre-login, ${tally.disconnects} mid-stream disconnects; resident memory ${mb(early)} MB early, ${mb(late)} MB late`,
  );
  if (failures.length > 0) {
    console.error(`fuzz FAILED (seed ${SEED}):\n- ${failures.join('\n- ')}`);
    process.exit(1);
  }
  console.log('fuzz: no findings');
}

main().catch((e: unknown) => {
  console.error(`fuzz FAILED (seed ${SEED}): ${(e as Error).stack ?? String(e)}`);
  process.exit(1);
});
