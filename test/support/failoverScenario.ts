// The failover scenario, shared by the failover test (which checks correctness) and the
// benchmark (which reports timings): clients run short write transactions through the proxy
// into a ledger table; the primary dies (immediate stop); the standby is promoted; clients carry
// on over the same connections. Every commit a client saw acknowledged must be in the ledger.
import pg from 'pg';
import { join } from 'node:path';
import { type PgCluster, runAsync, startPostgres, startStandby } from '../../hack/postgres.js';
import { freePort, USERS } from './harness.js';

export interface ReplicatedPair {
  primary: PgCluster;
  standby: PgCluster & { promote(): void };
  destroy(): void;
}

/**
 * A primary with a synchronous streaming standby: a commit is acknowledged only once the standby
 * has it, so "no acknowledged commit lost" is a property the proxy must preserve, not luck.
 */
export async function startReplicatedPair(maxConnections = 60): Promise<ReplicatedPair> {
  const primary = startPostgres({
    port: await freePort(),
    users: USERS,
    maxConnections,
    settings: { synchronous_commit: 'on', wal_level: 'replica' },
  });
  primary.psql('CREATE TABLE public.ledger (id bigint PRIMARY KEY, client int NOT NULL, at timestamptz NOT NULL DEFAULT now()); GRANT ALL ON public.ledger TO app;');
  // The standby will be promoted with no standby of its own: it must not wait for one.
  const standby = startStandby(primary, { port: await freePort(), settings: { synchronous_standby_names: "''" } });
  // Only now require the standby for every commit (earlier, commits would wait for a standby that is not there).
  primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'; SELECT pg_reload_conf();");
  for (let i = 0; i < 200 && primary.psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") !== '1'; i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  if (primary.psql("SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") !== '1') {
    throw new Error('the standby did not become a synchronous standby');
  }
  return {
    primary,
    standby,
    destroy() {
      standby.destroy();
      primary.destroy();
    },
  };
}

export interface FailoverOutcome {
  clients: number;
  acknowledged: number;
  /** Transactions that returned an error to their client (their outcome is the client's to check). */
  errors: number;
  errorCodes: Record<string, number>;
  /** Acknowledged commits missing from the ledger afterwards: must be empty. */
  missing: number[];
  /** Client connections that ended or emitted a connection error: must be 0. */
  reconnects: number;
  /** From the primary's death (stop issued) to the first commit on the new writer. */
  downFromDeathMs: number;
  /** From the promotion being issued to the first commit on the new writer (PostgreSQL's own promotion time included). */
  downFromPromotionMs: number;
  /** How long PostgreSQL took to promote (pg_ctl promote -w). */
  promotionMs: number;
  /** The longest time any client went without a successful commit. */
  longestClientGapMs: number;
  committedAfterPromotion: number;
}

export interface FailoverOptions {
  proxyPort: number;
  pair: ReplicatedPair;
  clients?: number;
  /** How long the workload runs before the primary is killed. */
  warmupMs?: number;
  /** Time between the primary dying and the promotion (an operator's or a tool's reaction). */
  promoteDelayMs?: number;
  /** Commits each client must make after the promotion before the run ends. */
  commitsAfter?: number;
  timeoutMs?: number;
}

export async function runFailover(opts: FailoverOptions): Promise<FailoverOutcome> {
  const n = opts.clients ?? 8;
  const app = USERS[0]!;
  const clients: pg.Client[] = [];
  let reconnects = 0;
  for (let i = 0; i < n; i++) {
    // A query that gets no answer in 20 s is a proxy bug, not a slow failover: fail loudly.
    const c = new pg.Client({ host: '127.0.0.1', port: opts.proxyPort, user: app.name, password: app.password, database: 'postgres', query_timeout: 20_000 });
    c.on('error', () => reconnects++);
    c.on('end', () => reconnects++);
    await c.connect();
    clients.push(c);
  }
  const acked: number[] = [];
  const errorCodes: Record<string, number> = {};
  let errors = 0;
  let nextId = 1;
  let killedAt = 0;
  let promotedAt = 0;
  let promotionMs = 0;
  let firstAfterPromotion = 0;
  let committedAfterPromotion = 0;
  const lastSuccess = new Array<number>(n).fill(0);
  const afterPromotion = new Array<number>(n).fill(0);
  let longestGap = 0;
  let stop = false;
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);

  const worker = async (i: number): Promise<void> => {
    const c = clients[i]!;
    for (let k = 0; !stop && Date.now() < deadline; k++) {
      const id = nextId++;
      try {
        if (k % 2 === 0) {
          await c.query('INSERT INTO public.ledger (id, client) VALUES ($1, $2)', [id, i]);
        } else {
          await c.query('BEGIN');
          await c.query('INSERT INTO public.ledger (id, client) VALUES ($1, $2)', [id, i]);
          await c.query('COMMIT');
        }
        const now = Date.now();
        acked.push(id);
        if (lastSuccess[i]! > 0) longestGap = Math.max(longestGap, now - lastSuccess[i]!);
        lastSuccess[i] = now;
        if (promotedAt > 0) {
          if (firstAfterPromotion === 0) firstAfterPromotion = now;
          committedAfterPromotion++;
          afterPromotion[i]!++;
        }
      } catch (e) {
        errors++;
        const code = (e as { code?: string }).code ?? ((e as Error).message.includes('timeout') ? 'client-timeout' : 'none');
        errorCodes[code] = (errorCodes[code] ?? 0) + 1;
        // The client's own clean-up, on the same connection: no reconnect.
        await c.query('ROLLBACK').catch(() => undefined);
      }
      if (promotedAt > 0 && afterPromotion.every((x) => x >= (opts.commitsAfter ?? 5))) stop = true;
    }
  };

  const workers = clients.map((_, i) => worker(i));
  await new Promise((r) => setTimeout(r, opts.warmupMs ?? 1000));
  const pgCtl = join(opts.pair.primary.bindir, 'pg_ctl');
  killedAt = Date.now();
  await runAsync(pgCtl, ['-D', opts.pair.primary.dataDir, '-m', 'immediate', '-w', 'stop']);
  await new Promise((r) => setTimeout(r, opts.promoteDelayMs ?? 200));
  // Anything committed from here on can only have been committed by the new writer.
  promotedAt = Date.now();
  await runAsync(pgCtl, ['-D', opts.pair.standby.dataDir, '-w', 'promote']);
  promotionMs = Date.now() - promotedAt;
  await Promise.all(workers);
  // A successful commit counts only if it completed after the promotion finished.
  const ids = new Set(opts.pair.standby.psql('SELECT id FROM public.ledger').split('\n').filter(Boolean).map(Number));
  const missing = acked.filter((id) => !ids.has(id));
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  const ended = reconnects;
  return {
    clients: n,
    acknowledged: acked.length,
    errors,
    errorCodes,
    missing,
    reconnects: ended - n, // each client's own end() above counts once
    downFromDeathMs: firstAfterPromotion ? firstAfterPromotion - killedAt : -1,
    downFromPromotionMs: firstAfterPromotion ? firstAfterPromotion - promotedAt : -1,
    promotionMs,
    longestClientGapMs: longestGap,
    committedAfterPromotion,
  };
}
