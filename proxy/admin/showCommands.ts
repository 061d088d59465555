// What the admin console's SHOW commands answer, as PgBouncer 1.24 answers them: the same column
// names and types in the same order, so tools written for PgBouncer (pgbouncer_exporter, its
// dashboards, scripts reading SHOW POOLS) read dbproxy unchanged; dbproxy's own columns (pinning,
// the target's role, ...) come after PgBouncer's. Where a PgBouncer column describes machinery
// dbproxy does not have (cancel-request pools, server_check_query, DNS caches) it is 0 or empty,
// as PgBouncer itself shows when that machinery is idle.
import type { ProxyStats, TargetStats } from '../contract/stats.js';
import type { ProxyConfig } from '../contract/config.js';
import { parseConfig } from '../contract/config.js';
import type { PoolBudget } from '../pool/budget.js';
import type { PoolKey } from '../pool/backendPool.js';
import { COUNTER_FIELDS, type CounterField, type PoolCounterRegistry } from './poolCounters.js';
import { DBPROXY_VERSION } from './version.js';

/** PostgreSQL type OIDs of the console's columns (what PgBouncer declares for each). */
export const TYPE_OID = { text: 25, int4: 23, int8: 20, numeric: 1700 } as const;
export type ColumnType = keyof typeof TYPE_OID;

export interface Column {
  name: string;
  type: ColumnType;
}

export type Cell = string | number | boolean | null;

export interface ResultSet {
  columns: Column[];
  rows: Cell[][];
}

/** A client session as the console sees it. */
export interface SessionView {
  readonly id: number;
  readonly key: PoolKey;
  readonly state: 'idle' | 'waiting' | 'active' | 'pinned';
  readonly connectedAt: number;
  readonly lastActivity: number;
  readonly borrowStartedAt: number;
  readonly pinnedReasons: readonly string[];
  readonly currentBackend: { readonly id: number } | null;
  readonly connection: { tls: string; remoteAddress: string; remotePort: number; localAddress: string; localPort: number; applicationName: string };
}

/** A backend connection as the console sees it. */
export interface BackendView {
  readonly id: number;
  readonly user: string;
  readonly database: string;
  readonly endpoint: { host: string; port: number };
  readonly pid: number;
  readonly createdAt: number;
  readonly lastUsedAt: number;
  readonly encrypted: boolean;
  readonly socket: { localAddress?: string; localPort?: number };
  readonly statements: { readonly size: number };
  readonly appliedParams: ReadonlyMap<string, string>;
}

export interface PoolKeyView extends PoolKey {
  idle: number;
  waiting: number;
  opening: number;
  borrowed: number;
  /** The user's cap (users[].maxConnections), null without one. */
  maxConnections: number | null;
  pinned: number;
  oldestWaitSince: number | null;
}

/** Everything SHOW reads, provided by the proxy server. */
export interface AdminView {
  now(): number;
  config(): ProxyConfig;
  sessions(): Iterable<SessionView>;
  poolKeys(): PoolKeyView[];
  backends(): Array<{ backend: BackendView; state: 'idle' | 'borrowed' | 'pinned' }>;
  limits(): PoolBudget | null;
  paused(): boolean;
  writer(): string | null;
  targets(): TargetStats[];
  counters(): PoolCounterRegistry;
  /** The /stats document; SHOW STATE adds a summary of it to PgBouncer's rows. */
  stats(): ProxyStats;
}

/** SHOW subjects with a PgBouncer meaning dbproxy can answer, plus dbproxy's own TARGETS. */
export const SHOW_SUBJECTS = ['pools', 'stats', 'stats_totals', 'stats_averages', 'totals', 'databases', 'users', 'lists', 'clients', 'servers', 'config', 'version', 'state', 'targets'] as const;
export type ShowSubject = (typeof SHOW_SUBJECTS)[number];

/**
 * PgBouncer SHOW subjects that describe machinery dbproxy does not have: answered with an error
 * saying so rather than with made-up rows. MEM is PgBouncer's slab allocator; SOCKETS and
 * ACTIVE_SOCKETS its socket buffers; FDS its file descriptors for online restart; DNS_* its
 * resolver cache; PEERS and PEER_POOLS its peering config (dbproxy finds peers by DNS per cancel).
 */
export const NOT_APPLICABLE: Readonly<Record<string, string>> = {
  mem: 'dbproxy has no slab allocator; see /metrics (dbproxy_process_resident_memory_bytes, dbproxy_process_heap_bytes)',
  sockets: 'dbproxy has no per-socket packet buffers to show; see SHOW CLIENTS and SHOW SERVERS',
  active_sockets: 'dbproxy has no per-socket packet buffers to show; see SHOW CLIENTS and SHOW SERVERS',
  fds: 'dbproxy does not pass file descriptors for an online restart; rolling updates replace pods instead',
  dns_hosts: 'dbproxy keeps no DNS cache; target names are resolved again on every health check',
  dns_zones: 'dbproxy keeps no DNS cache; target names are resolved again on every health check',
  peers: 'dbproxy peers are the replicas behind peers.dns or peers.static, found per cancel request',
  peer_pools: 'dbproxy peers are the replicas behind peers.dns or peers.static, found per cancel request',
};

const col = (name: string, type: ColumnType): Column => ({ name, type });
const cols = (type: ColumnType, ...names: string[]): Column[] => names.map((n) => col(n, type));

/** PgBouncer's timestamp format in SHOW CLIENTS/SERVERS: "2024-05-01 12:00:00 UTC". */
const pgbTime = (ms: number): string => `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;

/** Seconds and the microseconds beyond them, as PgBouncer splits wait and maxwait. */
const splitWait = (ms: number): [number, number] => {
  const us = Math.max(0, Math.round(ms * 1000));
  return [Math.floor(us / 1e6), us % 1e6];
};

const reasonsText = (reasons: Iterable<string>): string | null => {
  const all = [...new Set(reasons)].sort();
  return all.length > 0 ? all.join(',') : null;
};

// ---- POOLS ----

const POOLS_COLUMNS: Column[] = [
  ...cols('text', 'database', 'user'),
  ...cols('int4', 'cl_active', 'cl_waiting', 'cl_active_cancel_req', 'cl_waiting_cancel_req', 'sv_active', 'sv_active_cancel', 'sv_being_canceled', 'sv_idle', 'sv_used', 'sv_tested', 'sv_login', 'maxwait', 'maxwait_us'),
  ...cols('text', 'pool_mode', 'load_balance_hosts'),
  // dbproxy's own: backends pinned to one client, the process-wide pool size, why they are
  // pinned, and the target the pool lends from.
  ...cols('int4', 'sv_pinned', 'pool_size'),
  ...cols('text', 'pin_reasons', 'target', 'target_role'),
];

function showPools(v: AdminView): ResultSet {
  const now = v.now();
  const byKey = new Map<string, { key: PoolKey; active: number; waiting: number; reasons: string[] }>();
  const entry = (key: PoolKey) => {
    const k = `${key.user}\u0000${key.database}`;
    let e = byKey.get(k);
    if (!e) byKey.set(k, (e = { key, active: 0, waiting: 0, reasons: [] }));
    return e;
  };
  for (const s of v.sessions()) {
    const e = entry(s.key);
    if (s.state === 'waiting') e.waiting++;
    else e.active++;
    e.reasons.push(...s.pinnedReasons);
  }
  const pools = new Map(v.poolKeys().map((p) => [`${p.user}\u0000${p.database}`, p]));
  for (const p of pools.values()) entry(p);
  const size = v.limits()?.maxDatabaseConnections ?? null;
  const writer = v.writer();
  const rows = [...byKey.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, e]): Cell[] => {
      const p = pools.get(k);
      const [maxwait, maxwaitUs] = p?.oldestWaitSince != null ? splitWait(now - p.oldestWaitSince) : [0, 0];
      return [
        e.key.database,
        e.key.user,
        e.active,
        e.waiting,
        0,
        0,
        p?.borrowed ?? 0,
        0,
        0,
        p?.idle ?? 0,
        0,
        0,
        p?.opening ?? 0,
        maxwait,
        maxwaitUs,
        'transaction',
        null,
        p?.pinned ?? 0,
        // What this pool may reach: its user's cap (users[].maxConnections) when lower than the budget.
        p?.maxConnections != null && (size === null || p.maxConnections < size) ? p.maxConnections : size,
        reasonsText(e.reasons),
        writer,
        writer ? 'writer' : null,
      ];
    });
  return { columns: POOLS_COLUMNS, rows };
}

// ---- STATS, STATS_TOTALS, STATS_AVERAGES ----

/** PgBouncer's name of each counter (SHOW STATS adds total_ / avg_ in front). */
const STATS_NAMES: Record<CounterField, string> = {
  serverAssignments: 'server_assignment_count',
  xactCount: 'xact_count',
  queryCount: 'query_count',
  bytesIn: 'received',
  bytesOut: 'sent',
  xactTimeUs: 'xact_time',
  queryTimeUs: 'query_time',
  waitTimeUs: 'wait_time',
  clientParseCount: 'client_parse_count',
  serverParseCount: 'server_parse_count',
  bindCount: 'bind_count',
};
const STATS_FIELDS = COUNTER_FIELDS.map((f) => STATS_NAMES[f]);

function showStats(v: AdminView, what: 'stats' | 'stats_totals' | 'stats_averages'): ResultSet {
  const totals = v.counters().totalsByDatabase();
  const avgs = new Map(v.counters().averagesByDatabase().map((a) => [a.database, a]));
  // The *_time totals are microseconds, kept fractional while summing; SHOW gives integers.
  const total = (t: (typeof totals)[number]): number[] => COUNTER_FIELDS.map((f) => Math.round(t[f]));
  const average = (db: string): number[] => {
    const a = avgs.get(db);
    return COUNTER_FIELDS.map((f) => (a ? a[f] : 0));
  };
  // PgBouncer's names: received/sent are "total_received" in STATS, "bytes_received" in the others.
  const plain = STATS_FIELDS.map((f) => (f === 'received' || f === 'sent' ? `bytes_${f}` : f));
  switch (what) {
    case 'stats':
      return {
        columns: [
          col('database', 'text'),
          ...cols('numeric', ...STATS_FIELDS.map((f) => `total_${f}`)),
          ...cols('numeric', ...STATS_FIELDS.map((f) => (f === 'received' ? 'avg_recv' : `avg_${f}`))),
        ],
        rows: totals.map((t) => [t.database, ...total(t), ...average(t.database)]),
      };
    case 'stats_totals':
      return { columns: [col('database', 'text'), ...cols('numeric', ...plain)], rows: totals.map((t) => [t.database, ...total(t)]) };
    case 'stats_averages':
      // PgBouncer 1.24 names the prepared-statement averages avg_*, the others as in STATS_TOTALS.
      return {
        columns: [col('database', 'text'), ...cols('numeric', ...plain.map((f) => (f.endsWith('parse_count') || f === 'bind_count' ? `avg_${f}` : f)))],
        rows: totals.map((t) => [t.database, ...average(t.database)]),
      };
  }
}

function showTotals(v: AdminView): ResultSet {
  const sum = new Array<number>(STATS_FIELDS.length).fill(0);
  const avg = new Array<number>(STATS_FIELDS.length).fill(0);
  for (const t of v.counters().totalsByDatabase()) {
    COUNTER_FIELDS.forEach((f, i) => (sum[i]! += Math.round(t[f])));
  }
  for (const a of v.counters().averagesByDatabase()) {
    COUNTER_FIELDS.forEach((f, i) => (avg[i]! += a[f]));
  }
  return {
    columns: [col('name', 'text'), col('value', 'numeric')],
    rows: [
      ...STATS_FIELDS.map((f, i): Cell[] => [`total_${f}`, sum[i]!]),
      ...STATS_FIELDS.map((f, i): Cell[] => [f === 'received' ? 'avg_recv' : `avg_${f}`, avg[i]!]),
    ],
  };
}

// ---- DATABASES, USERS, LISTS ----

const DATABASES_COLUMNS: Column[] = [
  ...cols('text', 'name', 'host'),
  col('port', 'int4'),
  ...cols('text', 'database', 'force_user'),
  ...cols('int4', 'pool_size', 'min_pool_size', 'reserve_pool_size', 'server_lifetime'),
  ...cols('text', 'pool_mode', 'load_balance_hosts'),
  ...cols('int4', 'max_connections', 'current_connections', 'max_client_connections', 'current_client_connections', 'paused', 'disabled'),
  // dbproxy's own: the role of the target the pool lends from.
  col('target_role', 'text'),
];

function databases(v: AdminView): string[] {
  const dbs = new Set<string>();
  for (const p of v.poolKeys()) dbs.add(p.database);
  for (const s of v.sessions()) dbs.add(s.key.database);
  return [...dbs].sort();
}

function showDatabases(v: AdminView): ResultSet {
  const writer = v.writer();
  const [host, port] = writer ? [writer.slice(0, writer.lastIndexOf(':')), Number(writer.slice(writer.lastIndexOf(':') + 1))] : [null, null];
  const size = v.limits()?.maxDatabaseConnections ?? 0;
  const lifetime = Math.round(v.config().pool.maxConnectionLifetime / 1000);
  const open = new Map<string, number>();
  for (const { backend } of v.backends()) open.set(backend.database, (open.get(backend.database) ?? 0) + 1);
  const clients = new Map<string, number>();
  for (const s of v.sessions()) clients.set(s.key.database, (clients.get(s.key.database) ?? 0) + 1);
  const paused = v.paused() ? 1 : 0;
  return {
    columns: DATABASES_COLUMNS,
    rows: databases(v).map((db) => [db, host, port, db, null, size, 0, 0, lifetime, 'transaction', null, size, open.get(db) ?? 0, v.config().pool.maxClientConnections, clients.get(db) ?? 0, paused, 0, writer ? 'writer' : null]),
  };
}

function showUsers(v: AdminView): ResultSet {
  const clients = new Map<string, number>();
  for (const s of v.sessions()) clients.set(s.key.user, (clients.get(s.key.user) ?? 0) + 1);
  const servers = new Map<string, number>();
  for (const { backend } of v.backends()) servers.set(backend.user, (servers.get(backend.user) ?? 0) + 1);
  const names = [...new Set([...v.config().users.map((u) => u.name), ...clients.keys()])].sort();
  return {
    columns: [...cols('text', 'name', 'pool_size', 'reserve_pool_size', 'pool_mode'), ...cols('int4', 'max_user_connections', 'current_connections', 'max_user_client_connections', 'current_client_connections')],
    // max_user_connections: users[].maxConnections, 0 (PgBouncer's "no limit") without one.
    rows: names.map((n) => [n, '', '', null, v.config().users.find((u) => u.name === n)?.maxConnections ?? 0, servers.get(n) ?? 0, 0, clients.get(n) ?? 0]),
  };
}

function showLists(v: AdminView): ResultSet {
  let clients = 0;
  for (const _ of v.sessions()) clients++;
  const servers = v.backends().length;
  const items: Array<[string, number]> = [
    ['databases', databases(v).length],
    ['users', v.config().users.length],
    ['peers', 0],
    ['pools', v.poolKeys().length],
    ['peer_pools', 0],
    ['free_clients', 0],
    ['used_clients', clients],
    ['login_clients', 0],
    ['free_servers', 0],
    ['used_servers', servers],
    ['dns_names', 0],
    ['dns_zones', 0],
    ['dns_queries', 0],
    ['dns_pending', 0],
  ];
  return { columns: [col('list', 'text'), col('items', 'int4')], rows: items };
}

// ---- CLIENTS, SERVERS ----

const SOCKET_COLUMNS: Column[] = [
  ...cols('text', 'type', 'user', 'database', 'replication', 'state', 'addr'),
  col('port', 'int4'),
  col('local_addr', 'text'),
  col('local_port', 'int4'),
  ...cols('text', 'connect_time', 'request_time'),
  ...cols('int4', 'wait', 'wait_us', 'close_needed'),
  ...cols('text', 'ptr', 'link'),
  col('remote_pid', 'int4'),
  ...cols('text', 'tls', 'application_name'),
  ...cols('int4', 'prepared_statements', 'id'),
];

/** PgBouncer's ptr/link are memory addresses; dbproxy's are stable ids, c<n> for clients and s<n> for servers. */
const clientPtr = (id: number): string => `c${id}`;
const serverPtr = (id: number): string => `s${id}`;

function showClients(v: AdminView): ResultSet {
  const now = v.now();
  const rows = [...v.sessions()]
    .sort((a, b) => a.id - b.id)
    .map((s): Cell[] => {
      const c = s.connection;
      const [wait, waitUs] = s.state === 'waiting' && s.borrowStartedAt > 0 ? splitWait(now - s.borrowStartedAt) : [0, 0];
      return [
        'C',
        s.key.user,
        s.key.database,
        'none',
        s.state === 'waiting' ? 'waiting' : 'active',
        c.remoteAddress,
        c.remotePort,
        c.localAddress,
        c.localPort,
        pgbTime(s.connectedAt),
        pgbTime(s.lastActivity),
        wait,
        waitUs,
        0,
        clientPtr(s.id),
        s.currentBackend ? serverPtr(s.currentBackend.id) : '',
        0,
        c.tls,
        c.applicationName,
        0,
        s.id,
        s.state,
        reasonsText(s.pinnedReasons),
        Math.round((now - s.connectedAt) / 1000),
        Math.round((now - s.lastActivity) / 1000),
      ];
    });
  return {
    // dbproxy's own: the session's state (idle, waiting, active: holding a backend, pinned), why it is pinned, and ages in seconds.
    columns: [...SOCKET_COLUMNS, ...cols('text', 'session_state', 'pinned_reasons'), ...cols('int4', 'connect_seconds', 'idle_seconds')],
    rows,
  };
}

function showServers(v: AdminView): ResultSet {
  const now = v.now();
  const owner = new Map<number, SessionView>();
  for (const s of v.sessions()) if (s.currentBackend) owner.set(s.currentBackend.id, s);
  const writer = v.writer();
  const rows = v
    .backends()
    .sort((a, b) => a.backend.id - b.backend.id)
    .map(({ backend: b, state }): Cell[] => {
      const s = owner.get(b.id);
      const endpoint = `${b.endpoint.host}:${b.endpoint.port}`;
      return [
        'S',
        b.user,
        b.database,
        'none',
        state === 'idle' ? 'idle' : 'active',
        b.endpoint.host,
        b.endpoint.port,
        b.socket.localAddress ?? '',
        b.socket.localPort ?? 0,
        pgbTime(b.createdAt),
        pgbTime(b.lastUsedAt),
        0,
        0,
        0,
        serverPtr(b.id),
        s ? clientPtr(s.id) : '',
        b.pid,
        b.encrypted ? 'TLS' : '',
        b.appliedParams.get('application_name') ?? '',
        b.statements.size,
        b.id,
        state,
        s ? reasonsText(s.pinnedReasons) : null,
        endpoint === writer ? 'writer' : 'unknown',
        Math.round((now - b.createdAt) / 1000),
        state === 'idle' ? Math.round((now - b.lastUsedAt) / 1000) : 0,
      ];
    });
  return {
    // dbproxy's own: idle, borrowed or pinned; why the client holding it is pinned; the target's role; ages in seconds.
    columns: [...SOCKET_COLUMNS, ...cols('text', 'pool_state', 'pinned_reasons', 'target_role'), ...cols('int4', 'age_seconds', 'idle_seconds')],
    rows,
  };
}

// ---- CONFIG, VERSION, STATE, TARGETS ----

/** Settings that take effect on RELOAD; the rest need a restart (see ProxyServer.reload). */
const RESTART_ONLY = new Set(['listen', 'adminListen', 'targets', 'replicaId', 'tls', 'backendTls', 'iamAuth', 'iam', 'serviceAccountAuth']);

/** Scalar settings and string lists, dotted (pool.borrowTimeout); lists of objects (users, mappings) are left out. */
function flatten(value: unknown, prefix: string, out: Map<string, string | null>): void {
  if (value === undefined) return;
  if (value === null) {
    out.set(prefix, null);
  } else if (Array.isArray(value)) {
    if (value.every((x) => typeof x === 'string')) out.set(prefix, value.join(','));
  } else if (typeof value === 'object') {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else {
    out.set(prefix, String(value));
  }
}

let defaultsCache: Map<string, string | null> | undefined;
function configDefaults(): Map<string, string | null> {
  if (!defaultsCache) {
    defaultsCache = new Map();
    flatten(parseConfig({ targets: ['default:5432'], users: [{ name: 'default', passwordFile: '/dev/null' }] }), '', defaultsCache);
  }
  return defaultsCache;
}

function showConfig(v: AdminView): ResultSet {
  const c = v.config();
  const secs = (ms: number): string => String(Math.round(ms / 1000));
  // PgBouncer's names for the settings that have an equivalent, first: tools written for PgBouncer
  // (pgbouncer_exporter reads max_client_conn and max_user_connections) find them.
  const pgb: Array<[string, string, string, boolean]> = [
    ['admin_users', c.adminUsers.join(','), '', true],
    ['client_idle_timeout', secs(c.pool.idleClientTimeout), '1800', true],
    ['default_pool_size', String(v.limits()?.maxDatabaseConnections ?? 0), '', true],
    ['max_client_conn', String(c.pool.maxClientConnections), '10000', true],
    ['max_db_connections', String(v.limits()?.maxDatabaseConnections ?? 0), '', true],
    ['max_prepared_statements', String(c.session.maxPreparedStatements), '200', true],
    ['max_user_connections', '0', '0', true],
    ['pool_mode', 'transaction', 'transaction', false],
    ['query_wait_timeout', secs(c.pool.borrowTimeout), '120', true],
    ['server_connect_timeout', secs(c.pool.connectTimeout), '10', true],
    ['server_idle_timeout', secs(c.pool.idleConnectionTimeout), '60', true],
    ['server_lifetime', secs(c.pool.maxConnectionLifetime), '3600', true],
    ['stats_users', c.statsUsers.join(','), '', true],
  ];
  const own = new Map<string, string | null>();
  flatten(c, '', own);
  const defaults = configDefaults();
  return {
    columns: cols('text', 'key', 'value', 'default', 'changeable'),
    rows: [
      ...pgb.map(([k, val, def, changeable]): Cell[] => [k, val, def, changeable ? 'yes' : 'no']),
      ...[...own.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([k, val]): Cell[] => [k, val, defaults.get(k) ?? null, RESTART_ONLY.has(k.split('.')[0]!) ? 'no' : 'yes']),
    ],
  };
}

function showTargets(v: AdminView): ResultSet {
  // After the writer's view of each target: the read-only endpoint's (standbys only).
  return {
    columns: [
      ...cols('text', 'endpoint', 'state', 'reason', 'role'),
      col('max_connections', 'int4'),
      ...cols('text', 'reader_state', 'reader_reason'),
      ...cols('int8', 'lag_ms', 'lag_bytes'),
      col('replay_paused', 'text'),
    ],
    rows: v
      .targets()
      .map((t) => [t.endpoint, t.state, t.reason ?? null, t.role, t.maxConnections, t.reader?.state ?? null, t.reader?.reason ?? null, t.reader?.lagMs ?? null, t.reader?.lagBytes ?? null, t.reader ? (t.reader.replayPaused ? 'yes' : 'no') : null]),
  };
}

/** The /stats counts SHOW STATE shows after PgBouncer's rows, one key per row. */
function stateSummary(s: ProxyStats): Record<string, string | number | null> {
  return {
    client_connections: s.clientConnections,
    database_connections: s.databaseConnections,
    borrowed: s.borrowed,
    pinned: s.pinned,
    idle: s.idle,
    waiting: s.waiting,
    borrow_timeouts: s.borrowTimeouts,
    budget: s.pool.budget,
    max_database_connections: s.pool.maxDatabaseConnections,
    target_max_connections: s.pool.targetMaxConnections,
    writer: s.writer,
    failovers: s.failovers,
    ...Object.fromEntries(Object.entries(s.pinsByReason).map(([r, n]) => [`pins_${r}`, n])),
  };
}

function showState(v: AdminView): ResultSet {
  return {
    columns: cols('text', 'key', 'value'),
    rows: [
      ['active', v.paused() ? 'no' : 'yes'],
      ['paused', v.paused() ? 'yes' : 'no'],
      ['suspended', 'no'],
      ...Object.entries(stateSummary(v.stats())).map(([k, val]): Cell[] => [k, val === null ? null : String(val)]),
    ],
  };
}

export function show(v: AdminView, what: ShowSubject): ResultSet {
  switch (what) {
    case 'pools':
      return showPools(v);
    case 'stats':
    case 'stats_totals':
    case 'stats_averages':
      return showStats(v, what);
    case 'totals':
      return showTotals(v);
    case 'databases':
      return showDatabases(v);
    case 'users':
      return showUsers(v);
    case 'lists':
      return showLists(v);
    case 'clients':
      return showClients(v);
    case 'servers':
      return showServers(v);
    case 'config':
      return showConfig(v);
    case 'version':
      return { columns: [col('version', 'text')], rows: [[`dbproxy ${DBPROXY_VERSION}`]] };
    case 'state':
      return showState(v);
    case 'targets':
      return showTargets(v);
  }
}
