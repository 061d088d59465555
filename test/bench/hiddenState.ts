// Measures what a transaction pooler does with session state, side by side: client A changes
// something in its session and disconnects; then client B, the next client on the only server
// connection, reads it. Direct
// to PostgreSQL each client has its own session, so B sees the default: that is the right answer.
// Run by `make bench` (README, "Session state the proxy cannot see"); `node
// dist/test/bench/hiddenState.js` alone after `make build` and hack/install-bench-deps.sh.
import { join } from 'node:path';
import pg from 'pg';
import { type PgBouncerBinary, pgBouncer124, startPgBouncer, systemPgBouncer } from '../../hack/pgbouncer.js';
import { startPostgres } from '../../hack/postgres.js';
import { repoRoot } from '../../hack/repoRoot.js';
import { freePort, startDbproxy } from './dbproxyProcess.js';

const USER = { name: 'app', password: 'app-secret', auth: 'scram-sha-256' as const };

interface Case {
  what: string;
  /** Client A's statement. */
  change: string;
  /** Client B's question; its one value is shown. */
  read: string;
}

const CASES: Case[] = [
  { what: 'SET work_mem', change: "SET work_mem = '77MB'", read: 'SHOW work_mem' },
  { what: 'SET SESSION CHARACTERISTICS', change: 'SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY', read: 'SHOW default_transaction_read_only' },
  { what: 'SET nested in a DO block', change: "DO $$ BEGIN IF true THEN SET search_path = pg_catalog; END IF; END $$", read: 'SHOW search_path' },
  { what: "EXECUTE 'SET ...' in a DO block", change: "DO $$ BEGIN EXECUTE 'SET statement_timeout = 77000'; END $$", read: 'SHOW statement_timeout' },
  { what: 'set_config in a function, reported parameter', change: 'SELECT public.hide_application_name()', read: 'SHOW application_name' },
  { what: 'set_config in a function, unreported parameter', change: 'SELECT public.hide_work_mem()', read: 'SHOW work_mem' },
  { what: 'SET ROLE', change: 'SET ROLE hidden_reader', read: 'SELECT current_user' },
];

async function one(port: number, sql: string): Promise<string> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: USER.name, password: USER.password, database: 'postgres' });
  await c.connect();
  try {
    const r = await c.query(sql);
    return r.rows.length > 0 ? String(Object.values(r.rows[0] as object)[0]) : '';
  } finally {
    await c.end();
  }
}

/** A changes and leaves; B, the next client, reads. */
async function measure(port: number, c: Case): Promise<string> {
  try {
    await one(port, c.change);
    return await one(port, c.read);
  } catch (e) {
    return `error: ${(e as Error).message}`;
  } finally {
    // The next case starts from a clean server connection.
    await one(port, 'DISCARD ALL').catch(() => undefined);
  }
}

async function main(): Promise<void> {
  const server = startPostgres({ port: await freePort(), users: [USER], maxConnections: 100 });
  server.psql(`
    CREATE ROLE hidden_reader NOLOGIN; GRANT hidden_reader TO app;
    CREATE FUNCTION public.hide_work_mem() RETURNS text LANGUAGE sql AS $$ SELECT set_config('work_mem', '66MB', false) $$;
    CREATE FUNCTION public.hide_application_name() RETURNS text LANGUAGE sql AS $$ SELECT set_config('application_name', 'hidden', false) $$;
  `);
  const secret = server.psql(`SELECT rolpassword FROM pg_authid WHERE rolname = '${USER.name}'`);
  const columns: Array<{ name: string; port: number; stop: () => Promise<void> }> = [{ name: 'PostgreSQL', port: server.port, stop: async () => undefined }];
  const proxy = await startDbproxy({ cli: join(repoRoot(), 'dist/proxy/cli/dbproxy.js'), targetPort: server.port, users: [USER], maxConnectionsPercent: 2, expectPool: 1 });
  columns.push({ name: 'dbproxy', port: proxy.port, stop: () => proxy.stop() });
  const bin: PgBouncerBinary | undefined = pgBouncer124() ?? systemPgBouncer();
  if (bin) {
    const b = await startPgBouncer({ bin, listenPort: await freePort(), targetPort: server.port, poolSize: 1, users: [{ name: USER.name, password: secret }] });
    columns.push({ name: bin.version.replace('PgBouncer ', 'PgBouncer '), port: b.port, stop: () => b.stop() });
  }
  try {
    const rows: string[][] = [];
    for (const c of CASES) {
      const row = [c.what, c.read];
      for (const col of columns) row.push(await measure(col.port, c));
      rows.push(row);
    }
    const header = ['client A ran', 'client B asked', ...columns.map((c) => `${c.name} (pool of 1)`.replace('PostgreSQL (pool of 1)', 'PostgreSQL directly'))];
    console.log('\nSession state: what client B sees after client A changed its session (one shared server connection)\n');
    console.log(`| ${header.join(' | ')} |\n|${header.map(() => '---').join('|')}|`);
    for (const r of rows) console.log(`| ${r.join(' | ')} |`);
  } finally {
    for (const c of columns) await c.stop();
    server.destroy();
  }
}

main().catch((e: unknown) => {
  console.error((e as Error).stack ?? String(e));
  process.exit(1);
});
