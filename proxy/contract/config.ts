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
    /**
     * Most backend connections this user's pools may hold together on this proxy (PgBouncer's
     * max_user_connections), so one busy application cannot take the whole budget; this user's
     * borrowers then wait behind their own user only. Default: no cap beyond the budget.
     */
    maxConnections: z.number().int().min(1).optional(),
    /** File holding the password alone (a mounted Kubernetes Secret key works as is). Re-read when it changes. */
    passwordFile: z.string().min(1).optional(),
    /** File holding an RDS-style JSON secret: {"username": ..., "password": ...}. Re-read when it changes. */
    secretFile: z.string().min(1).optional(),
    /**
     * How clients log in as this user. password (default): the password (clientAuth.method), or
     * a token where iamAuth allows it. cert: as PostgreSQL's pg_hba method cert, a client
     * certificate over TLS, verified against tls.clientCaFile, whose subject CN is the user name;
     * no password is asked (needs tls.clientCaFile).
     */
    clientAuth: z.enum(['password', 'cert']).default('password'),
    /**
     * How the proxy authenticates to the database as this user. Default {method: password}: the
     * password from passwordFile/secretFile. {method: iam, region}: an RDS IAM token from
     * @aws-sdk/rds-signer for every new backend connection (credentials from the AWS SDK's
     * default chain, e.g. IRSA), which needs backendTls.mode other than disable; a password file
     * is then optional and serves client logins only. {method: cert, certFile, keyFile}: the
     * proxy presents this client certificate to the database (pg_hba method cert, or clientcert
     * with a password method) and sends no password; needs backendTls.mode other than disable.
     */
    backendAuth: z
      .object({
        /** password (default), iam or cert. */
        method: z.enum(['password', 'iam', 'cert']).default('password'),
        /** AWS region of the database, e.g. us-east-1. Required for iam; no default. */
        region: z.string().min(1).optional(),
        /** Host name the token is signed for, when the target is an address or alias of the RDS endpoint. Default: the target's host. */
        signingHost: z.string().min(1).optional(),
        /**
         * method password only: file holding the password the proxy sends to the database, when it
         * differs from the client-facing one (passwordFile/secretFile), e.g. a key of a separate
         * Secret. Re-read when it changes. Default: unset, the client-facing password is used.
         */
        passwordFile: z.string().min(1).optional(),
        /**
         * method cert only: PEM client certificate (chain) the proxy presents to the database,
         * e.g. tls.crt of a cert-manager Secret whose CN is the user name. Re-read when it changes.
         */
        certFile: z.string().min(1).optional(),
        /** method cert only: its unencrypted PEM private key, e.g. tls.key. */
        keyFile: z.string().min(1).optional(),
      })
      .strict()
      .refine((a) => a.method === 'password' || a.passwordFile === undefined, { message: 'passwordFile is for method password only', path: ['passwordFile'] })
      .refine((a) => a.method !== 'cert' || (a.certFile !== undefined && a.keyFile !== undefined), { message: 'method cert needs certFile and keyFile', path: ['method'] })
      .refine((a) => a.method === 'cert' || (a.certFile === undefined && a.keyFile === undefined), { message: 'certFile and keyFile are for method cert only', path: ['certFile'] })
      .prefault({}),
  })
  .strict()
  .refine((u) => !(u.passwordFile !== undefined && u.secretFile !== undefined), {
    message: 'exactly one of passwordFile or secretFile may be set, not both',
  })
  .refine((u) => u.backendAuth.method !== 'iam' || u.backendAuth.region !== undefined, {
    message: 'backendAuth.region is required when backendAuth.method is iam',
    path: ['backendAuth', 'region'],
  });

/** STS hosts accepted in client IAM tokens by default: the global endpoint, every regional one (China's too), and the FIPS ones. */
export const DEFAULT_STS_HOSTS = ['sts.amazonaws.com', 'sts.*.amazonaws.com', 'sts.*.amazonaws.com.cn', 'sts-fips.*.amazonaws.com'];

const tlsSchema = z
  .object({
    /**
     * PEM certificate (chain) shown to clients, e.g. tls.crt of a cert-manager Secret. Default:
     * unset, no client-facing TLS (SSLRequest is answered 'N'). Re-read when the file changes.
     */
    certFile: z.string().min(1).optional(),
    /** PEM private key for certFile, e.g. tls.key. Required with certFile; default unset. */
    keyFile: z.string().min(1).optional(),
    /** Refuse clients that do not negotiate TLS (FATAL 28000). Default false. Needs certFile and keyFile. */
    requireTLS: z.boolean().default(false),
    /** The cert and key files are checked for changes (stat) on a handshake at most this often. Default 5s. */
    reloadInterval: duration('5s'),
    /** Lowest TLS version clients may use. Default TLSv1.2. */
    minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
    /**
     * PEM CA bundle for client certificates, as PostgreSQL's ssl_ca_file: clients are asked for a
     * certificate in the handshake (it stays optional), one they present must chain to this
     * bundle or the connection is refused (FATAL 28000), and users with clientAuth cert log in
     * with it. Default: unset, no certificate is asked for. Needs certFile. Re-read when it changes.
     */
    clientCaFile: z.string().min(1).optional(),
  })
  .strict()
  .refine((t) => t.clientCaFile === undefined || t.certFile !== undefined, { message: 'clientCaFile needs certFile and keyFile (client certificates come over TLS)', path: ['clientCaFile'] })
  .refine((t) => (t.certFile === undefined) === (t.keyFile === undefined), { message: 'certFile and keyFile go together' })
  .refine((t) => !t.requireTLS || t.certFile !== undefined, { message: 'requireTLS needs certFile and keyFile', path: ['requireTLS'] });

const backendTlsSchema = z
  .object({
    /**
     * TLS to the database. disable (default): plaintext. require: TLS, certificate not checked.
     * verify-ca: TLS, certificate chain checked against caFile. verify-full: verify-ca plus the
     * host name (or IP address) of the target checked against the certificate.
     */
    mode: z.enum(['disable', 'require', 'verify-ca', 'verify-full']).default('disable'),
    /** PEM CA bundle for verify-ca/verify-full, e.g. RDS's global-bundle.pem. Default: Node's built-in public CAs. Re-read when it changes. */
    caFile: z.string().min(1).optional(),
    /** Name checked against the certificate (and sent as SNI) instead of the target's host. Default: the target's host. */
    serverName: z.string().min(1).optional(),
  })
  .strict();

const iamSchema = z
  .object({
    /**
     * This proxy's identity, e.g. "<namespace>/<name>". Client tokens must carry it in the signed
     * x-dbproxy-id header, so a token made for one proxy is useless at another. Required.
     */
    proxyId: z.string().min(1).max(256),
    /**
     * STS hosts a client token may name, ":port" for a port other than 443. An exact name is taken
     * as given (e.g. a private STS endpoint). "*" stands for one AWS region name (eu-west-1,
     * us-gov-west-1, cn-north-1, ...), and a name matched through it must be an AWS STS endpoint
     * (global, regional, China, FIPS). A token's credential scope must be service sts, in the
     * region of an AWS STS host (us-east-1 for the global sts.amazonaws.com). Default:
     * sts.amazonaws.com, sts.*.amazonaws.com, sts.*.amazonaws.com.cn, sts-fips.*.amazonaws.com.
     */
    stsHosts: z.array(z.string().min(1)).min(1).default(DEFAULT_STS_HOSTS),
    /** IAM role or user ARNs (assumed-role ARNs are canonicalized to role ARNs) and the database user each may log in as. Default: none. */
    roleMappings: z.array(z.object({ arn: z.string().regex(/^arn:aws[a-z-]*:iam::\d{12}:(role|user)\/.+$/, 'must be an IAM role or user ARN'), user: z.string().min(1) }).strict()).default([]),
    /** Extra PEM CA bundle trusted when calling STS (private endpoints, tests). Default: Node's built-in public CAs. */
    stsCaFile: z.string().min(1).optional(),
    /** Timeout of the call to STS. Default 5s. */
    timeout: duration('5s'),
    /** How long a verified token is remembered (by its hash). Default 60s; never beyond the token's own expiry. */
    cacheTtl: duration('60s'),
  })
  .strict();

const serviceAccountAuthSchema = z
  .object({
    /** Audience the ServiceAccount token must be issued for. Default "dbproxy". */
    audience: z.string().min(1).default('dbproxy'),
    /** Which ServiceAccount may log in as which database user. Default: none. */
    mappings: z.array(z.object({ namespace: z.string().min(1), serviceAccount: z.string().min(1), user: z.string().min(1) }).strict()).default([]),
    /** Kubeconfig for the TokenReview calls. Default: the pod's own service account (in-cluster config). */
    kubeconfig: z.string().min(1).optional(),
    /** Timeout of a TokenReview call. Default 5s. */
    timeout: duration('5s'),
    /** How long a verified token is remembered (by its hash). Default 60s; never beyond the token's own expiry. */
    cacheTtl: duration('60s'),
  })
  .strict();

/** An IAM role ARN (the role IRSA makes the pods assume). */
export const ROLE_ARN_PATTERN = /^arn:aws[a-z-]*:iam::\d{12}:role\/.+$/;

const awsIdentitySchema = z
  .object({
    /**
     * Check the pod's AWS identity with STS GetCallerIdentity at start and every `interval`, and
     * report it in /stats (awsIdentity). Default true. It runs when this section is present or a
     * user has backendAuth.method iam.
     */
    enabled: z.boolean().default(true),
    /** The role the proxy must run as (IRSA's role); another identity is reported as WrongRole. Default: unset, any identity is accepted. */
    expectedRoleArn: z.string().regex(ROLE_ARN_PATTERN, 'must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)').optional(),
    /** How often the identity is checked again. Default 5m. */
    interval: duration('5m'),
    /** Timeout of one check (credentials and the STS call). Default 10s. */
    timeout: duration('10s'),
    /** Region of the STS endpoint. Default: the AWS SDK's (AWS_REGION, which IRSA sets), else the region of the first backendAuth iam user. */
    region: z.string().min(1).optional(),
  })
  .strict();

const poolSchema = z
  .object({
    /** Share of the target's max_connections this proxy (all replicas together) may use, 1-100. */
    maxConnectionsPercent: z.number().int().min(1).max(100).default(90),
    /** Share of max_connections kept open while idle; idle connections above it are closed. Default: half of maxConnectionsPercent. */
    maxIdleConnectionsPercent: z.number().int().min(0).max(100).optional(),
    /**
     * What this proxy divides the budget by. Not the replica count: the operator writes replicas
     * plus the pods a rolling update may add (surge) or still be draining, so the fleet stays
     * within the budget while old and new pods overlap. Formerly `pool.replicas` (still accepted).
     */
    divisor: z.number().int().min(1).default(1),
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
    /**
     * A client idle inside a transaction (ReadyForQuery status T or E) this long is closed with
     * FATAL 25P03, as PostgreSQL's idle_in_transaction_session_timeout does, and its backend
     * connection discarded. 0 (default) disables.
     */
    idleTransactionTimeout: duration('0s'),
    /**
     * A request running longer than this on the server is cancelled there (the client gets
     * 57014 and keeps its connection), like PgBouncer's query_timeout. 0 (default) disables.
     */
    queryTimeout: duration('0s'),
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
    /** Database users clients may log in as; the same password authenticates the proxy to the database unless backendAuth says otherwise. */
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
        untrackedParameters: z
          .array(z.string().min(1))
          .default([])
          // PostgreSQL folds parameter names to lower case, and so does the classifier that compares them.
          .transform((names) => names.map((n) => n.toLowerCase())),
        /** Server-side prepared statements kept per backend connection (LRU); older ones are closed. */
        maxPreparedStatements: z.number().int().min(1).max(100000).default(200),
      })
      .strict()
      .prefault({}),
    /**
     * Users allowed everything on the admin database "dbproxy": SHOW, PAUSE, RESUME, RELOAD.
     * Default: none. Users in neither adminUsers nor statsUsers cannot log in to it.
     */
    adminUsers: z.array(z.string()).default([]),
    /** Users allowed the SHOW commands on the admin database "dbproxy", like PgBouncer's stats_users. Default: none. */
    statsUsers: z.array(z.string()).default([]),
    peers: z
      .object({
        /** A name resolving to every replica (a headless Service): cancels this replica does not know go to them. */
        dns: z.string().min(1).optional(),
        /** Fixed peers' admin HTTP addresses (host:port). */
        static: z.array(hostPort('peer')).default([]),
        /** The admin HTTP port of peers found by DNS. */
        adminPort: z.number().int().min(1).max(65535).default(9090),
        /** How long a forwarded cancel may take per peer. */
        timeout: duration('2s'),
      })
      .strict()
      .prefault({}),
    /**
     * Cancel requests accepted per source address (IPv4 address, IPv6 /64), a token bucket: the
     * only bound on guessing cancel keys. Requests over it are dropped and counted
     * (dbproxy_cancel_requests_total{result="rate_limited"}).
     */
    cancelRateLimit: z
      .object({
        /** CancelRequests on the client port from one address, per second. Default 20. */
        perSecond: z.number().positive().default(20),
        /** ... and at once. Default 100. */
        burst: z.number().int().min(1).default(100),
        /** POST /cancel from one peer address, per second: a peer forwards for all its clients. Default 200. */
        peerPerSecond: z.number().positive().default(200),
        /** ... and at once. Default 1000. */
        peerBurst: z.number().int().min(1).default(1000),
      })
      .strict()
      .prefault({}),
    /**
     * Pause the proxy: transactions in flight finish, new ones wait (as after PAUSE on the admin
     * database) until this is false again or they reach pool.borrowTimeout. Applied on reload, so
     * an operator can pause a fleet through its ConfigMap. Default false.
     */
    paused: z.boolean().default(false),
    /** The AWS identity check (STS GetCallerIdentity). Default: unset; on anyway when a user has backendAuth.method iam. */
    awsIdentity: awsIdentitySchema.optional(),
    /**
     * The read-only endpoint: a second listener whose clients are served, a transaction at a time,
     * by pools to the healthy standbys among the targets (one pool per standby, sized from its own
     * max_connections). Default: unset, no read-only endpoint.
     */
    readers: z
      .object({
        /** Address read-only clients connect to, e.g. 0.0.0.0:5433. */
        listen: hostPort('readers.listen', true),
        /**
         * A standby further behind the writer than this (the time since the writer was where the
         * standby has replayed to) leaves the rotation until it catches up. Default 30s.
         */
        maxReplicationLag: duration('30s'),
        /**
         * With no usable standby: false (default) clients wait up to pool.borrowTimeout, then get
         * 53300 saying why; true they are served by the writer's pool, in read-only transactions.
         */
        fallbackToWriter: z.boolean().default(false),
      })
      .strict()
      .optional(),
    /** 0-255, part of every cancel key so a cancel can be routed to the replica that issued it. */
    replicaId: z.number().int().min(0).max(255).default(0),
    /** On SIGTERM: how long transactions may run on before every connection is closed. */
    shutdownGracePeriod: duration('25s'),
    /** Largest client message accepted, in bytes (PostgreSQL's own limit is 1 GiB). */
    maxMessageBytes: z.number().int().min(1024).max(1 << 30).default(64 * 1024 * 1024),
    /** pino log level. */
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Client-facing TLS. Default: none (certFile unset, requireTLS false). */
    tls: tlsSchema.prefault({}),
    /** TLS to the database. Default: mode disable. */
    backendTls: backendTlsSchema.prefault({}),
    /**
     * Token logins, like RDS Proxy's IAMAuth. DISABLED (default): passwords only. OPTIONAL: a user
     * that an iam.roleMappings or serviceAccountAuth.mappings entry names may log in with a token
     * or its password. REQUIRED: tokens only. Tokens are accepted as cleartext passwords over
     * TLS only, so anything but DISABLED needs tls.certFile.
     */
    iamAuth: z.enum(['DISABLED', 'OPTIONAL', 'REQUIRED']).default('DISABLED'),
    /** Client logins with presigned STS GetCallerIdentity tokens (`dbproxy token`). Default: unset, not accepted. */
    iam: iamSchema.optional(),
    /** Client logins with Kubernetes ServiceAccount tokens, verified with TokenReview. Default: unset, not accepted. */
    serviceAccountAuth: serviceAccountAuthSchema.optional(),
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
    c.users.forEach((u, i) => {
      // A password is needed unless the database gets a token (iam: clients may still use one
      // where iamAuth allows), or a certificate while clients use certificates or tokens only.
      const noPassword = u.backendAuth.method === 'iam' || (u.backendAuth.method === 'cert' && (u.clientAuth === 'cert' || c.iamAuth === 'REQUIRED'));
      if (!noPassword && u.passwordFile === undefined && u.secretFile === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['users', i],
          message: 'exactly one of passwordFile or secretFile must be set (unless backendAuth.method is iam, or cert with clientAuth cert or iamAuth REQUIRED)',
        });
      }
      if (u.backendAuth.method !== 'password' && c.backendTls.mode === 'disable') {
        ctx.addIssue({ code: 'custom', path: ['users', i, 'backendAuth'], message: `backendAuth ${u.backendAuth.method} needs TLS to the database: set backendTls.mode (require, verify-ca or verify-full)` });
      }
      if (u.clientAuth === 'cert' && c.tls.clientCaFile === undefined) {
        ctx.addIssue({ code: 'custom', path: ['users', i, 'clientAuth'], message: 'clientAuth cert needs tls.clientCaFile (the CA client certificates are checked against)' });
      }
    });
    if (c.iamAuth !== 'DISABLED') {
      if (c.tls.certFile === undefined) ctx.addIssue({ code: 'custom', path: ['iamAuth'], message: 'token logins are accepted over TLS only: set tls.certFile and tls.keyFile' });
      if (c.iam === undefined && c.serviceAccountAuth === undefined) ctx.addIssue({ code: 'custom', path: ['iamAuth'], message: 'iamAuth needs an iam or serviceAccountAuth section' });
    }
    c.iam?.roleMappings.forEach((m, i) => {
      if (!names.has(m.user)) ctx.addIssue({ code: 'custom', path: ['iam', 'roleMappings', i, 'user'], message: `unknown user ${m.user} (not in users)` });
    });
    c.serviceAccountAuth?.mappings.forEach((m, i) => {
      if (!names.has(m.user)) ctx.addIssue({ code: 'custom', path: ['serviceAccountAuth', 'mappings', i, 'user'], message: `unknown user ${m.user} (not in users)` });
    });
  });

export type ProxyConfigInput = z.input<typeof configSchema>;
export type ProxyConfig = z.output<typeof configSchema>;
export type UserConfig = ProxyConfig['users'][number];
export type PoolConfig = ProxyConfig['pool'];
export type TlsConfig = ProxyConfig['tls'];
export type BackendTlsConfig = ProxyConfig['backendTls'];
export type IamConfig = NonNullable<ProxyConfig['iam']>;
export type ServiceAccountAuthConfig = NonNullable<ProxyConfig['serviceAccountAuth']>;
export type AwsIdentityConfig = NonNullable<ProxyConfig['awsIdentity']>;

/**
 * The identity check in force: the awsIdentity section, or its defaults when a user logs in to the
 * database with IAM (that is when a broken identity shows up as failed logins); undefined: off.
 */
export function awsIdentityCheck(c: ProxyConfig): (AwsIdentityConfig & { fallbackRegion: string | undefined }) | undefined {
  const iamUser = c.users.find((u) => u.backendAuth.method === 'iam');
  if (!c.awsIdentity && !iamUser) return undefined;
  const section = c.awsIdentity ?? awsIdentitySchema.parse({});
  if (!section.enabled) return undefined;
  return { ...section, fallbackRegion: iamUser?.backendAuth.region };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid config:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** Keys still accepted under an old name, so a config file written for an older proxy keeps working. */
const RENAMED: ReadonlyArray<{ section: string; from: string; to: string }> = [
  // The operator always wrote the pool divisor here, which the old name hid.
  { section: 'pool', from: 'replicas', to: 'divisor' },
];

export interface ParseOptions {
  /** Told once per old key the input used (the caller logs it: this module has no logger). */
  onDeprecated?: (message: string) => void;
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The input with old keys under their new names (a copy; the input is not changed), and which new
 * names came from old ones, so problems name the key as the file spells it.
 */
function renameOldKeys(input: unknown, problems: string[], opts: ParseOptions): { doc: unknown; spelledAs: Map<string, string> } {
  const spelledAs = new Map<string, string>();
  if (!isRecord(input)) return { doc: input, spelledAs };
  let doc = input;
  for (const { section, from, to } of RENAMED) {
    const s = doc[section];
    if (!isRecord(s) || !(from in s)) continue;
    if (to in s) {
      problems.push(`${section}.${from}: is the old name of ${section}.${to}; set only ${section}.${to}`);
      continue;
    }
    const { [from]: value, ...rest } = s;
    doc = { ...doc, [section]: { ...rest, [to]: value } };
    spelledAs.set(`${section}.${to}`, `${section}.${from}`);
    opts.onDeprecated?.(`config key ${section}.${from} is deprecated: it is now ${section}.${to} (same meaning); rename it`);
  }
  return { doc, spelledAs };
}

/** Validates a config object, filling defaults; throws ConfigError naming every bad field. */
export function parseConfig(input: unknown, opts: ParseOptions = {}): ProxyConfig {
  const problems: string[] = [];
  const { doc, spelledAs } = renameOldKeys(input, problems, opts);
  const r = configSchema.safeParse(doc ?? {});
  if (r.success && problems.length === 0) return r.data;
  throw new ConfigError([
    ...problems,
    ...(r.success ? [] : r.error.issues).map((i) => {
      const path = i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '');
      return `${spelledAs.get(path) ?? (path || '(root)')}: ${i.message}`;
    }),
  ]);
}

export function parseConfigYaml(text: string, opts: ParseOptions = {}): ProxyConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError([`(yaml): ${(e as Error).message}`]);
  }
  return parseConfig(doc, opts);
}
