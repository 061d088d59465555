// The proxy process: wires the listener, the pool, the target monitor, the admin surfaces and
// the janitor together, and owns the lifecycle (start, reload, graceful shutdown). Per-connection
// behaviour lives in client/; this file only connects the actors.
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import net from 'node:net';
import type { Logger } from 'pino';
import { BackendAuthFailures } from './auth/backendAuthFailures.js';
import { CredentialStore } from './auth/credentialStore.js';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import type { AwsCredentialIdentityProvider } from '@smithy/types';
import { RdsTokenProvider } from './auth/rdsToken.js';
import { buildTokenAuth } from './auth/clientTokens.js';
import type { ClientTokenAuth } from './auth/tokenAuth.js';
import { StatementClassifier } from './classify/classifier.js';
import { awsIdentityCheck, type ProxyConfig, parseConfigYaml, splitHostPort } from './contract/config.js';
import { IdentityCheck, stsGetCallerIdentity, type GetCallerIdentity } from './iam/identityCheck.js';
import type { ProxyStats } from './contract/stats.js';
import { type AdminAccess, adminAccess, AdminSession, type AdminOperations, type ResultSet } from './admin/adminConsole.js';
import { PoolCounterRegistry } from './admin/poolCounters.js';
import { type AdminView, show, type ShowSubject } from './admin/showCommands.js';
import { startAdminHttp, type AdminHttp } from './admin/adminHttp.js';
import { ProxyMetrics } from './admin/metrics.js';
import { CancelRegistry } from './cancel/cancelRegistry.js';
import { PeerForwarder } from './cancel/peerForwarder.js';
import { SourceRateLimiter, sourceKey } from './cancel/rateLimiter.js';
import { handleClientConnection, type LoginContext } from './client/clientConnection.js';
import type { ClientSession } from './client/clientSession.js';
import { type CancelKey, Greeting, type SessionHost } from './client/greeting.js';
import type { SessionContext } from './client/sessionContext.js';
import { BackendPool, type PoolKey, type PoolSettings } from './pool/backendPool.js';
import { ReaderPools } from './pool/readerPools.js';
import { computeBudget } from './pool/budget.js';
import { SQLSTATE } from './protocol/sqlstate.js';
import { type Clock, systemClock } from './runtime/clock.js';
import { createLogger } from './runtime/logger.js';
import { type BackendConnection, type BackendEndpoint, openBackend, sendCancel, ServerError } from './backend/backendConnection.js';
import { type BackendTlsSettings, backendTlsSettings } from './tls/backendTls.js';
import { ServerTls } from './tls/serverTls.js';
import { BackendCertificates } from './tls/backendCertificates.js';
import { KnownStatements } from './session/preparedStatements.js';
import { TargetMonitor } from './target/targetMonitor.js';

export interface ProxyServerOptions {
  config: ProxyConfig;
  /** Signs backend IAM tokens; default: one with `awsCredentials`. */
  rdsTokens?: RdsTokenProvider;
  /** AWS credentials for RDS tokens and the identity check; default: the SDK's default chain (IRSA, env, ...), made once. */
  awsCredentials?: AwsCredentialIdentityProvider;
  /** The identity check's STS call; default: GetCallerIdentity with @aws-sdk/client-sts and `awsCredentials`. */
  getCallerIdentity?: GetCallerIdentity;
  /** Re-read on RELOAD, SIGHUP, and when the file changes (a mounted ConfigMap is updated in place). */
  configPath?: string;
  /** How often the config file is checked for changes. */
  configRecheckMs?: number;
  log?: Logger;
  clock?: Clock;
}

/** A server process: its server's address and its pid (pids of different servers may be equal). */
const serverProcessKey = (endpoint: BackendEndpoint, pid: number): string => `${endpoint.host}:${endpoint.port}:${pid}`;

/** Users with a password file: client password logins. */
const credentialStore = (c: ProxyConfig): CredentialStore => new CredentialStore(c.users.filter((u) => u.passwordFile !== undefined || u.secretFile !== undefined));

/**
 * Passwords the proxy logs in to the database with (users with backendAuth.method password):
 * backendAuth.passwordFile where set, so database passwords can live apart from the client-facing
 * ones; otherwise the client-facing file, the same password on both sides.
 */
export const backendCredentialStore = (c: ProxyConfig): CredentialStore =>
  new CredentialStore(
    c.users
      .filter((u) => u.backendAuth.method === 'password')
      .map((u) => (u.backendAuth.passwordFile !== undefined ? { name: u.name, passwordFile: u.backendAuth.passwordFile } : u)),
  );

const poolSettings = (c: ProxyConfig): PoolSettings => ({
  borrowTimeoutMs: c.pool.borrowTimeout,
  maxConnectionLifetimeMs: c.pool.maxConnectionLifetime,
  idleConnectionTimeoutMs: c.pool.idleConnectionTimeout,
  userLimits: new Map(c.users.filter((u) => u.maxConnections !== undefined).map((u) => [u.name, u.maxConnections!])),
});

export class ProxyServer implements LoginContext, SessionContext, SessionHost, AdminOperations {
  config: ProxyConfig;
  credentials: CredentialStore;
  /** Passwords for backend logins (backendCredentialStore). */
  private backendCredentials: CredentialStore;
  /** Client certificates for backend logins (users with backendAuth method cert). */
  private backendCertificates: BackendCertificates;
  readonly pool: BackendPool;
  readonly metrics: ProxyMetrics;
  readonly log: Logger;
  readonly clock: Clock;
  readonly authSecret = randomBytes(32);
  readonly knownStatements = new KnownStatements();
  readonly counters: PoolCounterRegistry;
  shuttingDown = false;
  readonly backendAuthFailures: BackendAuthFailures;
  /** Client-facing TLS, when tls.certFile is set. */
  readonly serverTls: ServerTls | undefined;
  private readonly backendTls: BackendTlsSettings | undefined;
  private readonly rdsTokens: RdsTokenProvider;
  /** STS GetCallerIdentity at start and periodically, when the config asks for it (awsIdentityCheck). */
  private readonly identity: IdentityCheck | undefined;
  private readonly tokenAuth: ClientTokenAuth | undefined;
  private readonly cancels: CancelRegistry<ClientSession>;
  private readonly sessions = new Set<ClientSession>();
  private readonly adminSockets = new Set<net.Socket>();
  private readonly monitor: TargetMonitor;
  /** The read-only endpoint's pools, one per usable standby (readers in the config). */
  readonly readerPools: ReaderPools | null;
  private readerListener: net.Server | null = null;
  /** The writer endpoint's sessions borrow from the writer's pool, through this object itself. */
  readonly endpoint: SessionContext = this;
  /** Greets logged-in clients of both endpoints and starts their sessions. */
  readonly greeting = new Greeting(this);
  /** What a client of the read-only endpoint may use (its sessions borrow from the standbys). */
  private readonly readOnlyContext: LoginContext | null;
  private listener: net.Server | null = null;
  private http: AdminHttp | null = null;
  private janitor: NodeJS.Timeout | null = null;
  private nextBackendId = 0;
  private targetMaxConnections: number | null = null;
  private stopped: Promise<void> | null = null;
  private readonly peers: PeerForwarder;
  private readonly cancelLimiter: SourceRateLimiter;
  private readonly peerCancelLimiter: SourceRateLimiter;
  private configWatch: NodeJS.Timeout | null = null;
  private configStamp = '';
  /** PAUSE on the admin console; the pool is paused while this or the config's `paused` holds. */
  private consolePaused = false;
  /** Client connections (by remote address and port) that logged in: their close is not a failed setup. */
  private readonly loggedIn_ = new Set<string>();
  /** Cancel-request connections whose close is still to come: not failed setups either. */
  private cancelClosesPending = 0;
  /** This proxy's open server connections by server process (serverProcessKey), for notifications' pids. */
  private readonly serverProcesses = new Map<string, BackendConnection>();

  private constructor(
    readonly classifier: StatementClassifier,
    private readonly opts: ProxyServerOptions,
  ) {
    this.config = opts.config;
    this.clock = opts.clock ?? systemClock;
    this.log = opts.log ?? createLogger(this.config.logLevel);
    this.credentials = credentialStore(this.config);
    this.backendCredentials = backendCredentialStore(this.config);
    this.backendCertificates = this.loadBackendCertificates(this.config);
    this.backendAuthFailures = new BackendAuthFailures(this.log);
    const tlsConf = this.config.tls;
    if (tlsConf.certFile && tlsConf.keyFile) {
      this.serverTls = new ServerTls({
        certFile: tlsConf.certFile,
        keyFile: tlsConf.keyFile,
        ...(tlsConf.clientCaFile !== undefined ? { clientCaFile: tlsConf.clientCaFile } : {}),
        minVersion: tlsConf.minVersion,
        recheckMs: tlsConf.reloadInterval,
        onError: (e) => this.log.error({ err: e.message }, 'client TLS certificate reload failed'),
        onReload: () => this.log.info({ certFile: tlsConf.certFile }, 'client TLS certificate reloaded'),
      });
      this.serverTls.load();
    }
    this.backendTls = backendTlsSettings(this.config.backendTls, { onError: (e) => this.log.error({ err: e.message }, 'backend CA bundle reload failed') });
    // One provider for RDS tokens and the identity check: one IRSA exchange, and the check sees the
    // very credentials backend logins use. Making it does no I/O.
    const awsCredentials = opts.awsCredentials ?? fromNodeProviderChain();
    this.rdsTokens = opts.rdsTokens ?? new RdsTokenProvider({ credentials: awsCredentials });
    const idc = awsIdentityCheck(this.config);
    this.identity = idc
      ? new IdentityCheck({
          getCallerIdentity: opts.getCallerIdentity ?? stsGetCallerIdentity({ credentials: awsCredentials, region: idc.region, fallbackRegion: idc.fallbackRegion }),
          ...(idc.expectedRoleArn ? { expectedRoleArn: idc.expectedRoleArn } : {}),
          intervalMs: idc.interval,
          timeoutMs: idc.timeout,
          clock: this.clock,
          log: this.log,
        })
      : undefined;
    this.tokenAuth = this.config.iamAuth === 'DISABLED' ? undefined : buildTokenAuth(this.config, this.log);
    this.cancels = new CancelRegistry(this.config.replicaId);
    this.cancelLimiter = new SourceRateLimiter(() => this.clock.now());
    this.peerCancelLimiter = new SourceRateLimiter(() => this.clock.now());
    this.peers = new PeerForwarder({
      config: { ...this.config.peers, timeoutMs: this.config.peers.timeout },
      self: () => `${splitHostPort(this.config.adminListen, true)!.host}:${this.http?.port ?? 0}`,
      log: this.log,
    });
    this.counters = new PoolCounterRegistry(() => this.clock.now());
    this.metrics = new ProxyMetrics({
      writer: () => this.monitor.currentWriter,
      targets: () => this.monitor.stats(),
      lastFailoverSeconds: () => (this.monitor.lastFailoverRecord ? this.monitor.lastFailoverRecord.durationMs / 1000 : null),
      clientConnections: () => this.sessions.size,
      pool: () => this.pool.stats(),
      users: () => this.pool.userStats(),
      readers: () => {
        const lag = new Map(this.monitor.stats().map((t) => [t.endpoint, t.reader]));
        return (this.readerPools?.stats() ?? []).map((r) => ({ ...r, lagMs: lag.get(r.endpoint)?.lagMs ?? null, lagBytes: lag.get(r.endpoint)?.lagBytes ?? null }));
      },
      budget: () => this.pool.currentLimits?.budget ?? null,
      targetMaxConnections: () => this.targetMaxConnections,
      counters: () => this.counters.all(),
      sessions: () => {
        let inTransaction = 0;
        let tls = 0;
        for (const s of this.sessions) {
          if (s.inTransaction) inTransaction++;
          if (s.connection.tls !== '') tls++;
        }
        return { inTransaction, tls, noTls: this.sessions.size - tls };
      },
      databaseConnectionsTls: () => this.pool.backends().filter((b) => b.backend.encrypted).length,
    });
    this.pool = new BackendPool(poolSettings(this.config), {
      open: (key, endpoint) => this.openWriterBackend(key, endpoint),
      clock: this.clock,
      log: this.log,
      onBorrowed: (ms) => this.metrics.borrowLatency.observe(ms / 1000),
      onBorrowTimeout: () => this.metrics.borrowTimeouts.inc(),
    });
    this.applyPause();
    const healthUser = this.config.healthCheck.user ?? this.config.users[0]!.name;
    this.monitor = new TargetMonitor(
      this.config.targets.map((t) => splitHostPort(t)!),
      {
        open: (endpoint) => this.openBackend({ user: healthUser, database: this.config.healthCheck.database }, endpoint, '', 'dbproxy health check'),
        clock: this.clock,
        log: this.log,
        intervalMs: this.config.healthCheck.interval,
        onChange: (writer, maxConnections) => this.onTargetChange(writer, maxConnections),
        onSuspect: (suspect) => this.pool.setHeld(suspect),
        onFailover: () => this.metrics.failovers.inc(),
        onReaders: (readers) => this.readerPools?.update(readers),
        ...(this.config.readers ? { maxReplicationLagMs: this.config.readers.maxReplicationLag } : {}),
      },
    );
    this.readerPools = this.config.readers
      ? new ReaderPools({
          open: (key, endpoint) => this.openReaderBackend(key, endpoint),
          clock: this.clock,
          log: this.log,
          settings: () => poolSettings(this.config),
          budget: () => ({ maxConnectionsPercent: this.config.pool.maxConnectionsPercent, maxIdleConnectionsPercent: this.config.pool.maxIdleConnectionsPercent, divisor: this.config.pool.divisor }),
          fallback: () => (this.config.readers?.fallbackToWriter ? this.pool : null),
          onBorrowed: (ms) => this.metrics.borrowLatency.observe(ms / 1000),
          onBorrowTimeout: () => this.metrics.borrowTimeouts.inc(),
        })
      : null;
    this.readOnlyContext = this.readerPools ? this.endpointContext(this.readerPools) : null;
  }

  /**
   * The read-only endpoint's view of the proxy: the same users, credentials and registries, its
   * own pools, and sessions that must not write (also when the writer serves them, as the
   * fallback).
   */
  private endpointContext(readers: ReaderPools): LoginContext {
    const server = this;
    const endpoint: SessionContext = {
      get config() {
        return server.config;
      },
      pool: readers,
      readOnly: { onWriter: (b) => readers.isWriterConnection(b) },
      classifier: this.classifier,
      metrics: this.metrics,
      counters: this.counters,
      log: this.log,
      clock: this.clock,
      knownStatements: this.knownStatements,
    };
    return {
      get config() {
        return server.config;
      },
      get credentials() {
        return server.credentials;
      },
      metrics: this.metrics,
      log: this.log,
      clock: this.clock,
      authSecret: this.authSecret,
      get shuttingDown() {
        return server.shuttingDown;
      },
      clientCount: () => server.clientCount(),
      cancel: (pid, secret, source) => server.cancel(pid, secret, source),
      startAdminSession: (socket, user, leftover) => server.startAdminSession(socket, user, leftover),
      greeting: this.greeting,
      endpoint,
    };
  }

  /** A pool connection to a standby: refused if the server is not in recovery, whatever the last check said. */
  private async openReaderBackend(key: PoolKey, endpoint: BackendEndpoint): Promise<BackendConnection> {
    const b = await this.openBackend(key, endpoint, this.config.pool.initQuery, '');
    if (b.serverParams.get('in_hot_standby') !== 'on') {
      b.close();
      void this.monitor.checkNow();
      throw new Error(`${endpoint.host}:${endpoint.port} is not in recovery; not lending it as a reader`);
    }
    return b;
  }

  static async create(opts: ProxyServerOptions): Promise<ProxyServer> {
    return new ProxyServer(await StatementClassifier.create(), opts);
  }

  /** Starts listening; resolves with the bound ports (useful when the config says port 0). */
  async start(): Promise<{ port: number; adminPort: number; readersPort?: number }> {
    const listen = splitHostPort(this.config.listen, true)!;
    const adminListen = splitHostPort(this.config.adminListen, true)!;
    this.listener = net.createServer({ noDelay: true }, (socket) => {
      this.metrics.clientConnectionsTotal.inc();
      const peer = `${socket.remoteAddress}:${socket.remotePort}`;
      socket.once('close', () => {
        this.metrics.clientConnectionsClosed.inc();
        if (this.loggedIn_.delete(peer)) return;
        if (this.cancelClosesPending > 0) this.cancelClosesPending--;
        else this.metrics.clientSetupFailed.inc();
      });
      void handleClientConnection(socket, this, { tls: this.serverTls, tokens: this.tokenAuth });
    });
    this.listener.maxConnections = this.config.pool.maxClientConnections + 100;
    await new Promise<void>((resolve, reject) => {
      this.listener!.once('error', reject);
      this.listener!.listen({ host: listen.host, port: listen.port, backlog: 4096 }, () => resolve());
    });
    this.http = await startAdminHttp(adminListen, {
      ready: () => this.isReady(),
      stats: () => this.stats(),
      metrics: () => this.metrics.registry.metrics(),
      metricsContentType: this.metrics.registry.contentType,
      forwardedCancel: (pid, secret, source) => this.forwardedCancel(pid, secret, source),
      releaseDatabase: (database, source) => this.releaseDatabase(database, source),
    });
    if (this.config.readers && this.readOnlyContext) {
      const ro = splitHostPort(this.config.readers.listen, true)!;
      const ctx = this.readOnlyContext;
      this.readerListener = net.createServer({ noDelay: true }, (socket) => {
        this.metrics.clientConnectionsTotal.inc();
        void handleClientConnection(socket, ctx, { tls: this.serverTls, tokens: this.tokenAuth });
      });
      this.readerListener.maxConnections = this.config.pool.maxClientConnections + 100;
      await new Promise<void>((resolve, reject) => {
        this.readerListener!.once('error', reject);
        this.readerListener!.listen({ host: ro.host, port: ro.port, backlog: 4096 }, () => resolve());
      });
    }
    void this.monitor.start();
    void this.identity?.start();
    this.startJanitor();
    if (this.opts.configPath) {
      this.configStamp = await this.configFileStamp();
      this.configWatch = setInterval(() => void this.reloadIfChanged(), this.opts.configRecheckMs ?? 2000);
      this.configWatch.unref();
    }
    const port = (this.listener.address() as net.AddressInfo).port;
    const readersPort = this.readerListener ? (this.readerListener.address() as net.AddressInfo).port : undefined;
    this.log.info({ listen: `${listen.host}:${port}`, admin: `${adminListen.host}:${this.http.port}`, targets: this.config.targets, ...(readersPort ? { readersListen: readersPort } : {}) }, 'dbproxy listening');
    return { port, adminPort: this.http.port, ...(readersPort !== undefined ? { readersPort } : {}) };
  }

  isReady(): boolean {
    return !this.shuttingDown && this.pool.writer !== null && this.pool.currentLimits !== null;
  }

  /** Resolves once a writer is known and the budget is set. */
  async whenReady(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.isReady()) {
      if (Date.now() > deadline) throw new Error('proxy not ready: no writer found');
      await this.monitor.checkNow();
      if (!this.isReady()) await new Promise((r) => setTimeout(r, 50));
    }
  }

  private onTargetChange(writer: BackendEndpoint | null, maxConnections: number | null): void {
    this.targetMaxConnections = maxConnections;
    this.applyLimits();
    this.pool.noWriterReason = this.monitor.writerProblem;
    this.pool.setEndpoint(writer);
  }

  /** A pool connection: refused if the server turns out to be in recovery, whatever the last health check said. */
  private async openWriterBackend(key: PoolKey, endpoint: BackendEndpoint): Promise<BackendConnection> {
    // No application_name of its own: a client that sends none sees the server's default, as it
    // would connecting directly (the proxy's own health-check connection is named).
    const where = `${endpoint.host}:${endpoint.port}`;
    this.metrics.databaseConnectionRequests.inc({ endpoint: where });
    let b: BackendConnection;
    try {
      b = await this.openBackend(key, endpoint, this.config.pool.initQuery, '');
    } catch (e) {
      this.metrics.databaseSetupFailed.inc({ endpoint: where });
      throw e;
    }
    this.metrics.databaseSetupSucceeded.inc({ endpoint: where });
    if (b.serverParams.get('in_hot_standby') === 'on') {
      b.close();
      void this.monitor.checkNow();
      throw new Error(`${endpoint.host}:${endpoint.port} is in recovery (read-only); not lending it as the writer`);
    }
    return b;
  }

  private applyLimits(): void {
    const max = this.targetMaxConnections;
    const p = this.config.pool;
    this.pool.setLimits(
      max === null
        ? null
        : computeBudget({ targetMaxConnections: max, maxConnectionsPercent: p.maxConnectionsPercent, maxIdleConnectionsPercent: p.maxIdleConnectionsPercent, divisor: p.divisor }),
    );
  }

  private loadBackendCertificates(config: ProxyConfig): BackendCertificates {
    return new BackendCertificates(config.users, {
      recheckMs: config.tls.reloadInterval,
      onError: (user, e) => this.log.error({ user, err: e.message }, 'backend client certificate reload failed; the previous one stays in use'),
    });
  }

  private async openBackend(key: PoolKey, endpoint: BackendEndpoint, initQuery: string, applicationName: string): Promise<BackendConnection> {
    const auth = this.config.users.find((u) => u.name === key.user)?.backendAuth;
    const iam = auth?.method === 'iam' ? auth : undefined;
    const certificate = auth?.method === 'cert' ? this.backendCertificates.get(key.user) : undefined;
    const password = iam
      ? () => this.rdsTokens.token({ hostname: iam.signingHost ?? endpoint.host, port: endpoint.port, username: key.user, region: iam.region! })
      : certificate
        ? (): never => {
            throw new Error(`the database asked for a password for user "${key.user}", whose backendAuth is cert: the proxy has none to send (the server's pg_hba.conf should use cert for this user)`);
          }
        : () => this.backendCredentials.password(key.user);
    try {
      const b = await openBackend({
        endpoint,
        user: key.user,
        database: key.database,
        password,
        tls: certificate && this.backendTls ? { ...this.backendTls, clientCertificate: certificate } : this.backendTls,
        connectTimeoutMs: this.config.pool.connectTimeout,
        applicationName,
        initQuery,
        id: ++this.nextBackendId,
        now: () => this.clock.now(),
      });
      this.backendAuthFailures.succeeded(key.user);
      const processKey = serverProcessKey(b.endpoint, b.pid);
      this.serverProcesses.set(processKey, b);
      b.socket.once('close', () => {
        if (this.serverProcesses.get(processKey) === b) this.serverProcesses.delete(processKey);
      });
      return b;
    } catch (e) {
      if (e instanceof ServerError && e.code.startsWith('28')) {
        this.backendAuthFailures.record(key.user, key.database, e.code, e.message, auth?.method ?? 'password');
      }
      throw e;
    }
  }

  // ---- SessionContext ----

  closeIdleConnections(database: string): number {
    // Other replicas' idle connections count as other sessions too. PostgreSQL waits up to 5 s
    // for them to leave, so the statement need not wait for the peers' answers.
    if (this.peers.enabled) {
      void this.peers.releaseDatabase(database).then((n) => this.log.info({ database, peers: n }, 'asked peer replicas to close their idle connections to a database about to be dropped, renamed or copied'));
    }
    return this.pool.closeIdle(database);
  }

  /** A peer's POST /release-database: the same, for this replica's connections. */
  async releaseDatabase(database: string, source: string | undefined): Promise<'accepted' | 'forbidden' | 'rate_limited'> {
    if (!this.peerWithinLimit(source)) return 'rate_limited';
    if (!(await this.peers.isPeer(source))) {
      this.log.warn({ source, database }, 'refused a database release from an address that is not a peer replica');
      return 'forbidden';
    }
    const closed = this.pool.closeIdle(database);
    this.log.info({ database, closed, peer: source }, 'closed idle server connections to a database a peer replica is about to drop, rename or copy');
    return 'accepted';
  }

  clientPidOf(endpoint: BackendEndpoint, serverPid: number): number | undefined {
    return this.serverProcesses.get(serverProcessKey(endpoint, serverPid))?.lastClientPid;
  }

  // ---- LoginContext ----

  clientCount(): number {
    return this.sessions.size + this.adminSockets.size;
  }

  async cancel(pid: number, secret: number, source: string | undefined): Promise<void> {
    this.cancelClosesPending++;
    const limit = this.config.cancelRateLimit;
    if (!this.cancelLimiter.take(sourceKey(source), { perSecond: limit.perSecond, burst: limit.burst })) {
      this.metrics.cancelRequests.inc({ via: 'client', result: 'rate_limited' });
      this.log.debug({ source }, 'cancel request dropped: source over cancelRateLimit');
      return;
    }
    this.metrics.cancelRequests.inc({ via: 'client', result: 'processed' });
    if (await this.cancelLocal(pid, secret)) return;
    if (!this.peers.enabled) {
      if (!this.cancels.isLocal(pid)) this.log.info({ pid }, 'cancel request names another replica; no peers configured');
      return;
    }
    const peers = await this.peers.forward(pid, secret);
    this.log.info({ pid, peers }, 'cancel request forwarded to peers');
  }

  /** Requests from peer replicas (forwarded cancels, database releases) share cancelRateLimit's peer bucket. */
  private peerWithinLimit(source: string | undefined): boolean {
    const limit = this.config.cancelRateLimit;
    return this.peerCancelLimiter.take(sourceKey(source), { perSecond: limit.peerPerSecond, burst: limit.peerBurst });
  }

  /** POST /cancel from a peer: rate-limited per source, then looked up here only (never forwarded again). */
  forwardedCancel(pid: number, secret: number, source: string | undefined): boolean {
    if (!this.peerWithinLimit(source)) {
      this.metrics.cancelRequests.inc({ via: 'peer', result: 'rate_limited' });
      this.log.debug({ source }, 'forwarded cancel dropped: source over cancelRateLimit');
      return false;
    }
    this.metrics.cancelRequests.inc({ via: 'peer', result: 'processed' });
    this.cancelLocal(pid, secret).catch((e: Error) => this.log.warn({ err: e.message }, 'forwarded cancel could not be sent to the server'));
    return true;
  }

  /** Cancels the query of a session of this replica; false when no session here has that key. */
  async cancelLocal(pid: number, secret: number): Promise<boolean> {
    const session = this.cancels.lookup(pid, secret);
    if (!session) return false;
    const b = session.currentBackend;
    // Nothing runs for a client that holds no backend: PostgreSQL also ignores such cancels.
    if (b) {
      this.log.info({ client: session.id, backend: b.label }, 'sending cancel request to the server');
      await sendCancel(b.endpoint, b.pid, b.secretKey);
    }
    return true;
  }

  /** A client connection got through its login: counted as set up, and its close is not a failure. */
  private loggedIn(socket: net.Socket): void {
    this.loggedIn_.add(`${socket.remoteAddress}:${socket.remotePort}`);
    this.metrics.clientSetupSucceeded.inc();
  }

  startAdminSession(socket: net.Socket, user: string, leftover: Buffer): void {
    this.loggedIn(socket);
    this.adminSockets.add(socket);
    socket.on('close', () => this.adminSockets.delete(socket));
    new AdminSession(socket, user, this).start(leftover);
  }

  // ---- SessionHost ----

  admit(session: ClientSession, socket: net.Socket): CancelKey {
    this.loggedIn(socket);
    const ck = this.cancels.register(session);
    this.sessions.add(session);
    return ck;
  }

  closed(session: ClientSession): void {
    this.sessions.delete(session);
    this.cancels.unregister(session.cancelPid);
  }

  // ---- periodic work ----

  /**
   * The janitor's round: every second, or more often when a timeout is short enough to need it
   * (a quarter of the shortest, at least every 50 ms).
   */
  private startJanitor(): void {
    if (this.janitor) clearInterval(this.janitor);
    const p = this.config.pool;
    const timeouts = [p.idleTransactionTimeout, p.queryTimeout].filter((t) => t > 0);
    const every = Math.max(50, Math.min(1000, ...timeouts.map((t) => t / 4)));
    this.janitor = setInterval(() => this.sweep(), every);
    this.janitor.unref();
  }

  private sweep(): void {
    const now = this.clock.now();
    if (now - this.lastTrim >= 1000) {
      this.lastTrim = now;
      this.pool.trim();
      this.readerPools?.trim();
      this.counters.tick();
    }
    const { idleClientTimeout, idleTransactionTimeout, queryTimeout } = this.config.pool;
    if (idleClientTimeout <= 0 && idleTransactionTimeout <= 0 && queryTimeout <= 0) return;
    for (const s of this.sessions) {
      if (idleClientTimeout > 0 && s.isIdle && now - s.lastActivity >= idleClientTimeout) {
        this.metrics.clientRejections.inc({ reason: 'idle_timeout' });
        s.terminate({ code: SQLSTATE.idleSessionTimeout, message: `terminating connection due to idle-session timeout (idleClientTimeout ${idleClientTimeout / 1000} s)` });
      } else if (idleTransactionTimeout > 0 && s.idleInTransaction && now - s.lastActivity >= idleTransactionTimeout) {
        // PostgreSQL's own words for idle_in_transaction_session_timeout; the log says which setting.
        this.metrics.clientRejections.inc({ reason: 'idle_transaction_timeout' });
        this.log.info({ client: s.id, user: s.key.user, idleTransactionTimeout }, 'closing a client idle in a transaction (idleTransactionTimeout)');
        s.terminate({ code: SQLSTATE.idleInTransactionTimeout, message: 'terminating connection due to idle-in-transaction timeout' });
      } else if (queryTimeout > 0) {
        const since = s.runningSince;
        const b = s.currentBackend;
        if (since > 0 && b && now - since >= queryTimeout && this.cancelledRequests.get(s) !== since) {
          this.cancelledRequests.set(s, since);
          this.log.info({ client: s.id, backend: b.label, queryTimeout }, 'cancelling a request that ran longer than queryTimeout');
          void sendCancel(b.endpoint, b.pid, b.secretKey).catch((e: Error) => this.log.warn({ backend: b.label, err: e.message }, 'queryTimeout: cancel request failed'));
        }
      }
    }
  }

  private lastTrim = 0;
  /** The request of each session already cancelled for queryTimeout (by its start time): one cancel per request. */
  private readonly cancelledRequests = new WeakMap<ClientSession, number>();

  private async configFileStamp(): Promise<string> {
    try {
      // stat follows the symlinks Kubernetes swaps when it updates a ConfigMap volume.
      const st = await stat(this.opts.configPath!);
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return '';
    }
  }

  private async reloadIfChanged(): Promise<void> {
    const stamp = await this.configFileStamp();
    if (stamp === '' || stamp === this.configStamp) return;
    this.configStamp = stamp;
    try {
      const notes = await this.reload();
      this.log.info({ notes }, 'config file changed: reloaded');
    } catch (e) {
      // A half-written or invalid file: keep running on the last good config.
      this.log.error({ err: (e as Error).message }, 'config file changed but is not valid; keeping the previous config');
    }
  }

  // ---- AdminOperations ----

  access(user: string): AdminAccess {
    return adminAccess(this.config, user);
  }

  /** Pauses or resumes the pool from the config's `paused` and the console's PAUSE, logging each change. */
  private applyPause(): void {
    const paused = this.config.paused || this.consolePaused;
    if (paused === this.pool.isPaused) return;
    if (paused) this.pool.pause();
    else this.pool.resume();
    const by = [this.config.paused ? 'config' : '', this.consolePaused ? 'admin console' : ''].filter(Boolean);
    this.log.info({ paused, ...(paused ? { by } : {}) }, paused ? 'paused: new transactions wait' : 'resumed');
  }

  async pause(): Promise<void> {
    this.consolePaused = true;
    this.applyPause();
    // Like PgBouncer's PAUSE: returns once transactions in flight have finished.
    const deadline = this.clock.now() + this.config.pool.borrowTimeout;
    while (this.pool.activeTransactions > 0 && this.clock.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }

  resume(): string {
    this.consolePaused = false;
    this.applyPause();
    return this.config.paused ? 'still paused: the config file says paused: true (a DatabaseProxy\'s spec.paused); RESUME lifts only a PAUSE from this console' : '';
  }

  async reload(): Promise<string> {
    if (!this.opts.configPath) return 'no config file to reload';
    const next = parseConfigYaml(await readFile(this.opts.configPath, 'utf8'), { onDeprecated: (m) => this.log.warn({ configPath: this.opts.configPath }, m) });
    // Before anything changes: an unusable certificate fails the reload, the running config stays.
    const backendCertificates = this.loadBackendCertificates(next);
    const notes: string[] = [];
    for (const field of ['listen', 'adminListen', 'replicaId'] as const) {
      if (JSON.stringify(next[field]) !== JSON.stringify(this.config[field])) notes.push(`${field} changes need a restart`);
    }
    if (JSON.stringify(next.targets) !== JSON.stringify(this.config.targets)) notes.push('targets changes need a restart');
    for (const field of ['tls', 'backendTls', 'iamAuth', 'iam', 'serviceAccountAuth', 'awsIdentity'] as const) {
      if (JSON.stringify(next[field]) !== JSON.stringify(this.config[field])) notes.push(`${field} changes need a restart`);
    }
    this.config = {
      ...next,
      listen: this.config.listen,
      adminListen: this.config.adminListen,
      replicaId: this.config.replicaId,
      targets: this.config.targets,
      tls: this.config.tls,
      backendTls: this.config.backendTls,
      iamAuth: this.config.iamAuth,
      iam: this.config.iam,
      serviceAccountAuth: this.config.serviceAccountAuth,
      awsIdentity: this.config.awsIdentity,
    };
    this.credentials = credentialStore(this.config);
    this.backendCredentials = backendCredentialStore(this.config);
    this.backendCertificates = backendCertificates;
    this.log.level = this.config.logLevel;
    this.pool.updateSettings(poolSettings(this.config));
    this.applyLimits();
    this.startJanitor();
    this.applyPause();
    this.log.info({ notes }, 'configuration reloaded');
    return notes.join('; ');
  }

  show(what: ShowSubject): ResultSet {
    return show(this.adminView, what);
  }

  /** What the admin console reads (showCommands.ts renders it). */
  private readonly adminView: AdminView = {
    now: () => this.clock.now(),
    config: () => this.config,
    sessions: () => this.sessions,
    poolKeys: () => this.pool.keyStats(),
    backends: () => this.pool.backends(),
    limits: () => this.pool.currentLimits,
    paused: () => this.pool.isPaused,
    writer: () => ((w) => (w ? `${w.host}:${w.port}` : null))(this.pool.writer),
    targets: () => this.monitor.stats(),
    counters: () => this.counters,
    stats: () => this.stats(),
  };

  stats(): ProxyStats {
    const p = this.pool.stats();
    const limits = this.pool.currentLimits;
    const pinsByReason: Record<string, number> = {};
    for (const s of this.sessions) for (const r of s.pinnedReasons) pinsByReason[r] = (pinsByReason[r] ?? 0) + 1;
    const writer = this.pool.writer;
    return {
      version: 1,
      replicaId: this.config.replicaId,
      ready: this.isReady(),
      paused: this.pool.isPaused,
      pause: { config: this.config.paused, admin: this.consolePaused },
      shuttingDown: this.shuttingDown,
      clientConnections: this.sessions.size,
      databaseConnections: p.databaseConnections,
      borrowed: p.borrowed,
      pinned: p.pinned,
      idle: p.idle,
      waiting: p.waiting,
      borrowTimeouts: p.borrowTimeouts,
      pinsByReason,
      pool: {
        budget: limits?.budget ?? null,
        maxDatabaseConnections: limits?.maxDatabaseConnections ?? null,
        targetMaxConnections: this.targetMaxConnections,
        maxConnectionsPercent: this.config.pool.maxConnectionsPercent,
        maxIdleConnectionsPercent: this.config.pool.maxIdleConnectionsPercent,
        replicas: this.config.pool.divisor,
        users: this.pool.userStats(),
      },
      writer: writer ? `${writer.host}:${writer.port}` : null,
      ...(this.monitor.writerProblem ? { writerProblem: this.monitor.writerProblem } : {}),
      targets: this.monitor.stats(),
      failovers: this.monitor.failoverCount,
      lastFailover: ((f) => (f ? { at: new Date(f.startedAt).toISOString(), durationMs: f.durationMs, from: f.from, to: f.to } : null))(this.monitor.lastFailoverRecord),
      ...((f) => (f ? { backendAuthFailures: f } : {}))(this.backendAuthFailures.stats()),
      ...(this.readerPools && this.config.readers
        ? {
            readers: {
              maxReplicationLagMs: this.config.readers.maxReplicationLag,
              fallbackToWriter: this.config.readers.fallbackToWriter,
              ...this.readerPools.totals(),
              pools: this.readerPools.stats().map((r) => ({
                endpoint: r.endpoint,
                usable: r.usable,
                ...(r.reason ? { reason: r.reason } : {}),
                maxDatabaseConnections: r.maxDatabaseConnections,
                databaseConnections: r.databaseConnections,
                borrowed: r.borrowed,
                pinned: r.pinned,
                idle: r.idle,
                waiting: r.waiting,
              })),
            },
          }
        : {}),
      ...(this.identity ? { awsIdentity: this.identity.stats() } : {}),
    };
  }

  // ---- shutdown ----

  /**
   * Graceful stop: refuse new connections, close idle clients now and busy ones when their
   * transaction ends, and after the grace period close whatever is left.
   */
  shutdown(graceMs = this.config.shutdownGracePeriod): Promise<void> {
    if (this.stopped) return this.stopped;
    this.stopped = (async () => {
      this.shuttingDown = true;
      this.log.info({ clients: this.sessions.size, graceMs }, 'shutting down');
      const closed = new Promise<void>((r) => (this.listener ? this.listener.close(() => r()) : r()));
      const readersClosed = new Promise<void>((r) => (this.readerListener ? this.readerListener.close(() => r()) : r()));
      for (const s of [...this.sessions]) s.drain();
      for (const sock of this.adminSockets) sock.end();
      const deadline = Date.now() + graceMs;
      while (this.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      for (const s of [...this.sessions]) s.terminate({ code: SQLSTATE.adminShutdown, message: 'terminating connection due to administrator command (grace period over)' });
      if (this.janitor) clearInterval(this.janitor);
      if (this.configWatch) clearInterval(this.configWatch);
      this.identity?.stop();
      this.monitor.stop();
      this.pool.close();
      this.readerPools?.close();
      await this.http?.close();
      for (const sock of this.adminSockets) sock.destroy();
      await closed;
      await readersClosed;
      this.log.info('stopped');
    })();
    return this.stopped;
  }
}
