// The proxy's config file schema. This module is one half of the seam between the proxy and the
// operator (the other half is stats.ts): the operator renders this shape into a ConfigMap, the
// proxy parses it. Neither side reaches into the other's internals.
import { z } from 'zod';
import { parse as parseYaml } from 'yaml';

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses "120s", "500ms", "2m", "1h", or a bare number of seconds, into milliseconds. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value * 1000 : undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
  if (!m) return undefined;
  return Math.round(Number(m[1]) * DURATION_UNITS_MS[m[2] ?? 's']!);
}

const duration = (def: string) =>
  z
    .union([z.string(), z.number()])
    .default(def)
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `invalid duration ${JSON.stringify(v)} (use e.g. "500ms", "30s", "5m", "1h")` });
        return z.NEVER;
      }
      return ms;
    });

const hostPort = (what: string, allowAnyPort = false) =>
  z.string().refine((v) => splitHostPort(v, allowAnyPort) !== undefined, { message: `${what} must be host:port, e.g. 127.0.0.1:5432` });

/** Splits "host:port" or "[v6]:port"; port 0 (any free port) only where `allowAnyPort`. */
export function splitHostPort(v: string, allowAnyPort = false): { host: string; port: number } | undefined {
  const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(v.trim());
  if (!m || m[1] === '') return undefined;
  const port = Number(m[2]);
  if (port < (allowAnyPort ? 0 : 1) || port > 65535) return undefined;
  return { host: m[1]!, port };
}

const userSchema = z
  .object({
    /** Database user name, as clients send it in the startup packet. */
    name: z.string().min(1).max(63),
    /** File holding the password alone (a mounted Kubernetes Secret key works as is). */
    passwordFile: z.string().min(1).optional(),
    /** File holding an RDS-style JSON secret: {"username": ..., "password": ...}. */
    secretFile: z.string().min(1).optional(),
  })
  .strict()
  .refine((u) => (u.passwordFile === undefined) !== (u.secretFile === undefined), {
    message: 'exactly one of passwordFile or secretFile must be set',
  });

const poolSchema = z
  .object({
    /** Share of the target's max_connections this proxy (all replicas together) may use, 1-100. */
    maxConnectionsPercent: z.number().int().min(1).max(100).default(90),
    /** Share of max_connections kept open while idle; idle connections above it are closed. Default: half of maxConnectionsPercent. */
    maxIdleConnectionsPercent: z.number().int().min(0).max(100).optional(),
    /** Number of proxy replicas sharing the budget; the operator sets it. */
    replicas: z.number().int().min(1).default(1),
    /** How long a client waits for a backend connection before getting SQLSTATE 53300. */
    borrowTimeout: duration('120s'),
    /** A client connection idle this long (not in a transaction) is closed. 0 disables. */
    idleClientTimeout: duration('1800s'),
    /** Backend connections are closed, when idle, after this age. 0 disables. */
    maxConnectionLifetime: duration('3600s'),
    /** Idle backend connections above the idle cap are closed after being idle this long. */
    idleConnectionTimeout: duration('60s'),
    /** Runs on every new backend connection before it is lent. Empty: none. */
    initQuery: z.string().default(''),
    /** Maximum client connections on this proxy; more get SQLSTATE 53300. */
    maxClientConnections: z.number().int().min(1).default(10000),
    /** Timeout for opening a backend connection (TCP, startup and authentication). */
    connectTimeout: duration('10s'),
  })
  .strict()
  .refine((p) => p.maxIdleConnectionsPercent === undefined || p.maxIdleConnectionsPercent <= p.maxConnectionsPercent, {
    message: 'maxIdleConnectionsPercent must not exceed maxConnectionsPercent',
    path: ['maxIdleConnectionsPercent'],
  })
  .transform((p) => ({ ...p, maxIdleConnectionsPercent: p.maxIdleConnectionsPercent ?? Math.floor(p.maxConnectionsPercent / 2) }));

const configSchema = z
  .object({
    /** Address clients connect to. */
    listen: hostPort('listen', true).default('0.0.0.0:5432'),
    /** HTTP address for /healthz, /readyz, /metrics and /stats. */
    adminListen: hostPort('adminListen', true).default('0.0.0.0:9090'),
    /** Database endpoints; the writer among them is found by health checks. */
    targets: z.array(hostPort('target')).min(1, 'at least one target is required'),
    /** Database users clients may log in as; the same password authenticates the proxy to the database. */
    users: z.array(userSchema).min(1, 'at least one user is required'),
    clientAuth: z
      .object({
        /** Password method offered to clients. */
        method: z.enum(['scram-sha-256', 'md5']).default('scram-sha-256'),
        /** Delay before answering a failed login, the same for wrong passwords and unknown users. */
        failureDelay: duration('1s'),
      })
      .strict()
      .prefault({}),
    pool: poolSchema.prefault({}),
    healthCheck: z
      .object({
        /** How often each target is checked. */
        interval: duration('1s'),
        /** User for health checks and SHOW max_connections. Default: the first user. */
        user: z.string().optional(),
        /** Database for health checks. */
        database: z.string().default('postgres'),
      })
      .strict()
      .prefault({}),
    session: z
      .object({
        /**
         * Track SET/RESET of session parameters and replay them on whichever backend the client
         * borrows (default). false restores RDS Proxy's behaviour: any SET pins the session.
         */
        trackSettings: z.boolean().default(true),
        /** Parameters whose SET always pins, e.g. extension settings the proxy should not replay. */
        untrackedParameters: z.array(z.string().min(1)).default([]),
        /** Server-side prepared statements kept per backend connection (LRU); older ones are closed. */
        maxPreparedStatements: z.number().int().min(1).max(100000).default(200),
      })
      .strict()
      .prefault({}),
    /** Users allowed to run PAUSE, RESUME and RELOAD on the admin database "dbproxy" (SHOW is open to all users). */
    adminUsers: z.array(z.string()).default([]),
    /** 0-255, part of every cancel key so a cancel can be routed to the replica that issued it. */
    replicaId: z.number().int().min(0).max(255).default(0),
    /** On SIGTERM: how long transactions may run on before every connection is closed. */
    shutdownGracePeriod: duration('25s'),
    /** Largest client message accepted, in bytes (PostgreSQL's own limit is 1 GiB). */
    maxMessageBytes: z.number().int().min(1024).max(1 << 30).default(64 * 1024 * 1024),
    /** pino log level. */
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict()
  .superRefine((c, ctx) => {
    const names = new Set<string>();
    c.users.forEach((u, i) => {
      if (names.has(u.name)) ctx.addIssue({ code: 'custom', path: ['users', i, 'name'], message: `duplicate user ${u.name}` });
      names.add(u.name);
    });
    if (c.healthCheck.user !== undefined && !names.has(c.healthCheck.user)) {
      ctx.addIssue({ code: 'custom', path: ['healthCheck', 'user'], message: `unknown user ${c.healthCheck.user} (not in users)` });
    }
  });

export type ProxyConfigInput = z.input<typeof configSchema>;
export type ProxyConfig = z.output<typeof configSchema>;
export type UserConfig = ProxyConfig['users'][number];
export type PoolConfig = ProxyConfig['pool'];

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid config:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** Validates a config object, filling defaults; throws ConfigError naming every bad field. */
export function parseConfig(input: unknown): ProxyConfig {
  const r = configSchema.safeParse(input ?? {});
  if (r.success) return r.data;
  throw new ConfigError(
    r.error.issues.map((i) => {
      const path = i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
      return `${path || '(root)'}: ${i.message}`;
    }),
  );
}

export function parseConfigYaml(text: string): ProxyConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError([`(yaml): ${(e as Error).message}`]);
  }
  return parseConfig(doc);
}
