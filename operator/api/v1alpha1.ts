// dbproxy.io/v1alpha1 DatabaseProxy: the one source of truth for the API's TypeScript types and
// its OpenAPI schema (descriptions, defaults, validation). operator/crd/generate.ts turns this
// into the CustomResourceDefinition; the operator's builders read the types.
import { applyDefaults, s, type InputOf, type JSONSchemaProps, type OutputOf } from './schema.js';

export const GROUP = 'dbproxy.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'DatabaseProxy';
export const LIST_KIND = 'DatabaseProxyList';
export const PLURAL = 'databaseproxies';
export const SINGULAR = 'databaseproxy';
export const SHORT_NAMES = ['dbp'];
export const CATEGORIES = ['dbproxy'];

/** Replicas are capped so every pod that may exist at once (surge and terminating pods included) gets a distinct replicaId 0-255. */
export const MAX_REPLICAS = 100;

// --- shared patterns --------------------------------------------------------------------------

/** A DNS-1123 subdomain: names of Secrets, ServiceAccounts, PriorityClasses. */
const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';
/** A key inside a Secret's data. */
const SECRET_KEY = '^[-._a-zA-Z0-9]+$';
/** A DNS-1123 label: names of Namespaces. */
const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
/** A PostgreSQL user name as spec.users accepts it. */
const USER_NAME = '^[A-Za-z_][A-Za-z0-9_.@$-]*$';
/** An STS host for client IAM tokens: DNS labels or "*", optionally ":port". */
const STS_HOST = '^[A-Za-z0-9*]([-A-Za-z0-9.*]*[A-Za-z0-9*])?(:[0-9]{1,5})?$';
/** A duration the proxy understands: digits and one unit, e.g. "500ms", "120s", "30m", "1h". */
export const DURATION_PATTERN = '^[0-9]+(ms|s|m|h)$';
/** host:port, host being a DNS name, an IPv4 address, or an IPv6 address in brackets. */
const HOST_PORT = '^(\\[[0-9a-fA-F:.]+\\]|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?):[0-9]{1,5}$';
const HOST = '^([0-9a-fA-F:.]*:[0-9a-fA-F:.]*|[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?)$';
/** A resource.Quantity ("100m", "128Mi", "1.5", "2e3"). */
const QUANTITY = '^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$';

const secretName = (description: string) => s.string({ description, maxLength: 253, pattern: DNS_SUBDOMAIN });
const stringMap = (description: string) => s.map(s.string({ description: 'The value.', maxLength: 4096 }), { description, maxProperties: 64 });
/** A duration field in the proxy's syntax ("500ms", "30s", "5m", "1h"). */
const durationField = (description: string) => s.string({ description, maxLength: 16, pattern: DURATION_PATTERN });
/** A PostgreSQL run-time parameter name, e.g. "work_mem" or an extension's "pg_stat_statements.track". */
const GUC_NAME = '^[A-Za-z_][A-Za-z0-9_$]*(\\.[A-Za-z_][A-Za-z0-9_$]*)?$';
/** Environment variable names the operator sets itself (the downward API); a user's env may not replace them. */
export const RESERVED_ENV = ['POD_NAME', 'POD_NAMESPACE', 'POD_IP'] as const;
/** The longest spec.shutdownGracePeriod: it also sets the pods' grace period and the Deployment's minReadySeconds. */
export const MAX_SHUTDOWN_GRACE_SECONDS = 300;

const secretKeyRef = (description: string, defaultKey: string) =>
  s.object(
    {
      name: secretName('Name of the Secret, in the DatabaseProxy\'s namespace.').required(),
      key: s
        .string({ description: `Key inside the Secret. Default "${defaultKey}".`, maxLength: 253, pattern: SECRET_KEY })
        .default(defaultKey),
    },
    { description },
  );

// --- spec -------------------------------------------------------------------------------------

const target = s
  .object(
    {
      endpoints: s.array(s.string({ description: 'host:port of one database instance.', maxLength: 260, pattern: HOST_PORT }), {
        description:
          'Database instances as host:port, e.g. the instances of an Aurora cluster or a primary and its standbys. The proxy health-checks each one and sends traffic to the writer. Set either endpoints or host.',
        minItems: 1,
        maxItems: 16,
        listType: 'set',
      }),
      host: s.string({
        description: 'A single database host name, e.g. an RDS cluster endpoint; it is re-resolved on failover. Set either endpoints or host.',
        maxLength: 253,
        pattern: HOST,
      }),
      port: s.integer({ description: 'Port of host. Ignored with endpoints. Default 5432.', minimum: 1, maximum: 65535 }).default(5432),
      database: s
        .string({ description: 'Database the proxy uses for health checks and for reading max_connections. Default "postgres".', minLength: 1, maxLength: 63 })
        .default('postgres'),
    },
    { description: 'The PostgreSQL database the proxy connects to.' },
  )
  .rule('has(self.endpoints) != has(self.host)', 'set exactly one of target.endpoints or target.host');

const user = s.object(
  {
    name: s
      .string({
        description: 'PostgreSQL user name, as clients send it and as the proxy logs in to the database.',
        minLength: 1,
        maxLength: 63,
        pattern: USER_NAME,
      })
      .required(),
    passwordSecretRef: secretKeyRef(
      "Secret key holding this user's password. Clients authenticate with it, and (with backendAuth.password and no backendAuth.password.secretName) so does the proxy to the database. Mounted as a file, so a rotated Secret is picked up without a restart. Required, unless no password is ever used for this user: the database needs none (backendAuth.iam, or this user's backendCertificate) and neither do clients (this user's clientAuth cert, or clientAuth.iamAuth REQUIRED, tokens only).",
      'password',
    ),
    clientAuth: s
      .enum(['password', 'cert'] as const, {
        description:
          "How clients log in as this user. password: with the password (spec.clientAuth.method), or a token where spec.clientAuth.iamAuth allows it. cert: with a client certificate over TLS, verified against tls.clientCaSecretRef, whose subject CN equals the user name; no password is asked (like PostgreSQL's pg_hba method cert). cert needs tls.clientCaSecretRef. Default password.",
      })
      .default('password'),
    backendCertificate: s.object(
      {
        secretName: secretName(
          "kubernetes.io/tls Secret (tls.crt, tls.key) in the DatabaseProxy's namespace with a client certificate whose CN is the user name, e.g. one cert-manager issues from the database's client CA.",
        ).required(),
      },
      {
        description:
          "A client certificate the proxy presents to the database as this user instead of a password (PostgreSQL's pg_hba method cert, or clientcert with a password method); for this user it replaces spec.backendAuth. cert-manager friendly: mounted as files, reloaded when the Secret changes, no restart. Needs TLS to the database (tls.backend.mode require, verify-ca or verify-full).",
      },
    ),
    maxConnections: s.integer({
      description:
        "Most database connections this user's pools may hold on each proxy pod (PgBouncer's max_user_connections), so one busy application cannot take the whole budget; this user's clients then wait behind their own user only. Default: no cap beyond the pool budget.",
      minimum: 1,
      maximum: 100000,
    }),
  },
  { description: 'A database user that clients may log in as.' },
);

const backendAuth = s
  .object(
    {
      password: s.object(
        {
          secretName: secretName(
            'Optional Secret holding database passwords keyed by user name (one key per user in spec.users, e.g. {app: ..., report: ...}), for when they differ from the client-facing passwords: clients log in with passwordSecretRef, the proxy logs in to the database with this Secret\'s key. Mounted as a whole, so rotations are picked up without a restart; a user without a key cannot reach the database. User names must then be valid Secret keys (letters, digits, "-", "_", "."). When omitted, each user\'s passwordSecretRef is used on both sides (the usual case).',
          ),
        },
        { description: 'Log in to the database with passwords.' },
      ),
      iam: s.object(
        {
          region: s
            .string({ description: 'AWS region of the RDS or Aurora database, e.g. "eu-west-1".', minLength: 1, maxLength: 32, pattern: '^[a-z]{2}(-[a-z]+)+-[0-9]+$' })
            .required(),
        },
        { description: 'Log in to the database with RDS IAM authentication tokens, signed with the pod\'s AWS credentials (IRSA: set iam.roleArn). Needs TLS to the database (tls.backend.mode require, verify-ca or verify-full).' },
      ),
    },
    { description: 'How the proxy authenticates to the database: exactly one of password or iam. Default: password.' },
  )
  .rule('(has(self.password) ? 1 : 0) + (has(self.iam) ? 1 : 0) == 1', 'set exactly one of backendAuth.password or backendAuth.iam');

/** A database user name as spec.users declares it (mappings refer to those). */
const mappedUser = () =>
  s.string({ description: 'Database user this identity logs in as; one of spec.users.', minLength: 1, maxLength: 63, pattern: USER_NAME }).required();

const awsIam = s.object(
  {
    proxyId: s.string({
      description:
        'The id client tokens must be bound to (the signed x-dbproxy-id header; `dbproxy token --proxy-id ID`), so a token made for one proxy is useless at another. Default "<namespace>/<name>" of this DatabaseProxy.',
      minLength: 1,
      maxLength: 256,
    }),
    mappings: s
      .array(
        s.object(
          {
            arn: s
              .string({
                description:
                  'ARN of an IAM role (arn:aws:iam::<account>:role/<name>; any session of the role, e.g. a pod\'s IRSA role) or IAM user (arn:aws:iam::<account>:user/<name>).',
                maxLength: 2048,
                pattern: '^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$',
              })
              .required(),
            user: mappedUser(),
          },
          { description: 'An IAM identity and the database user it may log in as.' },
        ),
        { description: 'Which IAM role or user may log in as which database user. An ARN may appear with several users.', minItems: 1, maxItems: 64, listType: 'map', listMapKeys: ['arn', 'user'] },
      )
      .required(),
    stsHosts: s.array(
      s.string({ description: 'A host name, "*" standing for one DNS label, with ":port" for a port other than 443.', maxLength: 253, pattern: STS_HOST }),
      {
        description:
          'STS hosts a client token may name (where the proxy sends it to be verified), e.g. a VPC endpoint. Default: sts.amazonaws.com, sts.*.amazonaws.com and sts.*.amazonaws.com.cn.',
        minItems: 1,
        maxItems: 16,
        listType: 'set',
      },
    ),
  },
  {
    description:
      'Client logins with AWS IAM: the password is a presigned STS GetCallerIdentity request bound to this proxy (`dbproxy token`), which the proxy verifies by calling STS; no AWS credentials are needed on the proxy for this.',
  },
);

const serviceAccounts = s.object(
  {
    audience: s
      .string({
        description:
          'Audience the ServiceAccount token must be issued for (`kubectl create token <sa> --audience <audience>`, or a projected token volume). A proxy-specific value (e.g. "dbproxy:<namespace>/<name>") keeps a token given to one proxy from being replayed at another. Default "dbproxy".',
        minLength: 1,
        maxLength: 253,
      })
      .default('dbproxy'),
    mappings: s
      .array(
        s.object(
          {
            namespace: s.string({ description: 'Namespace of the client\'s ServiceAccount.', minLength: 1, maxLength: 63, pattern: DNS_LABEL }).required(),
            serviceAccount: s.string({ description: 'Name of the client\'s ServiceAccount.', minLength: 1, maxLength: 253, pattern: DNS_SUBDOMAIN }).required(),
            user: mappedUser(),
          },
          { description: 'A Kubernetes ServiceAccount and the database user it may log in as.' },
        ),
        {
          description: 'Which ServiceAccount may log in as which database user.',
          minItems: 1,
          maxItems: 64,
          listType: 'map',
          listMapKeys: ['namespace', 'serviceAccount', 'user'],
        },
      )
      .required(),
  },
  {
    description:
      'Client logins with Kubernetes ServiceAccount tokens, which the proxy verifies with a TokenReview against the API server. Needs spec.serviceAccountName: a ServiceAccount you create and bind to the ClusterRole system:auth-delegator (the operator creates no ClusterRoleBindings); the proxy pods then get a Kubernetes API token (automountServiceAccountToken).',
  },
);

const clientAuth = s
  .object(
    {
      method: s
        .enum(['scram-sha-256', 'md5'] as const, { description: 'Password method offered to clients. Default "scram-sha-256".' })
        .default('scram-sha-256'),
      iamAuth: s
        .enum(['DISABLED', 'OPTIONAL', 'REQUIRED'] as const, {
          description:
            'Token logins of clients (an AWS IAM token or a Kubernetes ServiceAccount token in place of the password), like RDS Proxy\'s IAMAuth: DISABLED, OPTIONAL (users named in a mapping may use a token or their password) or REQUIRED (tokens only). Tokens are accepted over TLS only: needs tls.secretName, and awsIam or serviceAccounts. Default DISABLED.',
        })
        .default('DISABLED'),
      awsIam,
      serviceAccounts,
    },
    { description: 'How clients authenticate to the proxy.' },
  )
  // has(): the API server also checks this rule on spec.clientAuth's default ({}), where the
  // nested iamAuth default is not filled in.
  .rule("!has(self.iamAuth) || self.iamAuth == 'DISABLED' || has(self.awsIam) || has(self.serviceAccounts)", 'clientAuth.iamAuth OPTIONAL or REQUIRED needs clientAuth.awsIam or clientAuth.serviceAccounts (who may log in with a token)', {
    fieldPath: '.iamAuth',
  });

const iam = s.object(
  {
    roleArn: s.string({
      description:
        'ARN of the IAM role the proxy pods assume through IRSA; the operator annotates the ServiceAccount it creates with eks.amazonaws.com/role-arn. Cannot be combined with serviceAccountName.',
      maxLength: 2048,
      pattern: '^arn:aws[a-zA-Z-]*:iam::[0-9]{12}:role/.+$',
    }),
  },
  { description: 'AWS IAM settings for the proxy pods.' },
);

const pool = s
  .object(
    {
      maxConnectionsPercent: s
        .integer({
          description:
            "Share of the database's max_connections that all replicas together may use, 1-100. Each pod's share is this budget divided by the number of pods that may exist at once, rolling updates included. Default 90.",
          minimum: 1,
          maximum: 100,
        })
        .default(90),
      maxIdleConnectionsPercent: s.integer({
        description: 'Share of max_connections kept open while idle, 0-100 and at most maxConnectionsPercent. Default: half of maxConnectionsPercent.',
        minimum: 0,
        maximum: 100,
      }),
      borrowTimeout: s
        .string({ description: 'How long a client waits for a database connection before it gets an error (SQLSTATE 53300), e.g. "120s". Default "120s".', maxLength: 16, pattern: DURATION_PATTERN })
        .default('120s'),
      idleClientTimeout: s
        .string({ description: 'A client connection idle this long outside a transaction is closed, e.g. "1800s". "0s" disables. Default "1800s".', maxLength: 16, pattern: DURATION_PATTERN })
        .default('1800s'),
      initQuery: s.string({ description: 'SQL run on every new database connection before it is lent to a client, e.g. "SET search_path TO app".', maxLength: 4096 }),
      maxConnectionLifetime: durationField(
        'Database connections are closed, when idle, once they are this old, e.g. "1h" (picks up rotated credentials, rebalances after DNS changes, bounds server-side memory growth). "0s" disables. Default "3600s".',
      ).default('3600s'),
      idleConnectionTimeout: durationField(
        'Idle database connections above the idle share (maxIdleConnectionsPercent) are closed after being idle this long, e.g. "60s". Default "60s".',
      ).default('60s'),
      maxClientConnections: s
        .integer({
          description: 'Client connections one proxy pod accepts; more are refused with SQLSTATE 53300 (too many connections). All pods together accept replicas times this. Default 10000.',
          minimum: 1,
          maximum: 1000000,
        })
        .default(10000),
      connectTimeout: durationField('How long opening a database connection (TCP, TLS, startup and authentication) may take before it counts as failed, e.g. "10s". Default "10s".')
        .default('10s'),
      idleTransactionTimeout: durationField(
        'A client idle inside a transaction this long is closed with FATAL 25P03 (PostgreSQL\'s idle-in-transaction wording) and its database connection discarded, so an application that forgets to commit cannot hold a connection forever, e.g. "60s". "0s" disables. Default "0s".',
      ).default('0s'),
      queryTimeout: durationField(
        'A request running longer than this on the database is cancelled there (the client gets SQLSTATE 57014 and keeps its connection), like PgBouncer\'s query_timeout, e.g. "30s". "0s" disables. Default "0s".',
      ).default('0s'),
    },
    { description: 'Connection pool settings, named like RDS Proxy\'s.' },
  )
  .rule('!has(self.maxIdleConnectionsPercent) || self.maxIdleConnectionsPercent <= self.maxConnectionsPercent', 'pool.maxIdleConnectionsPercent must not exceed pool.maxConnectionsPercent', {
    fieldPath: '.maxIdleConnectionsPercent',
  })
  .rule("!has(self.connectTimeout) || duration(self.connectTimeout) > duration('0s')", 'pool.connectTimeout must be more than 0s', { fieldPath: '.connectTimeout' });

const tls = s
  .object(
    {
      secretName: secretName(
        'kubernetes.io/tls Secret (tls.crt, tls.key) with the certificate the proxy presents to clients; cert-manager friendly, reloaded on change. Without it the proxy answers no to TLS requests.',
      ),
      requireTLS: s.boolean({ description: 'Refuse clients that do not use TLS. Needs secretName. Default false.' }).default(false),
      minVersion: s.enum(['TLSv1.2', 'TLSv1.3'] as const, {
        description: 'Lowest TLS version clients may use: TLSv1.2 or TLSv1.3. Needs secretName. Default TLSv1.2.',
      }),
      backend: s
        .object(
          {
            mode: s
              .enum(['disable', 'require', 'verify-ca', 'verify-full'] as const, {
                description:
                  'TLS to the database, as libpq\'s sslmode: disable, require (encrypt, no certificate check), verify-ca (check the certificate chain) or verify-full (check the chain and that the certificate names the database host). verify-ca and verify-full check against caSecretRef, or without it against the public CAs Node.js trusts (RDS and most private databases need their CA bundle in caSecretRef). Default "verify-full".',
              })
              .default('verify-full'),
            caSecretRef: secretKeyRef(
              'Secret key holding the CA bundle that signs the database certificates (e.g. the RDS global bundle). Used by verify-ca and verify-full; re-read when it changes.',
              'ca.crt',
            ),
          },
          { description: 'TLS between the proxy and the database. Without it (or with mode disable) the proxy connects in plaintext.' },
        )
        .rule("!has(self.caSecretRef) || self.mode == 'verify-ca' || self.mode == 'verify-full'", 'tls.backend.caSecretRef is only used by mode verify-ca or verify-full', {
          fieldPath: '.caSecretRef',
        }),
      clientCaSecretRef: secretKeyRef(
        "Secret key holding the CA bundle client certificates are checked against (like PostgreSQL's ssl_ca_file): clients are then asked for a certificate in the TLS handshake (it stays optional), one they present must chain to this bundle or the connection is refused, and users with clientAuth cert log in with it. Needs secretName. Re-read when it changes.",
        'ca.crt',
      ),
    },
    { description: 'TLS settings. Without them, neither side uses TLS.' },
  )
  .rule('!self.requireTLS || has(self.secretName)', 'tls.requireTLS needs tls.secretName', { fieldPath: '.requireTLS' })
  .rule('!has(self.clientCaSecretRef) || has(self.secretName)', 'tls.clientCaSecretRef needs tls.secretName: client certificates come over client-facing TLS', {
    fieldPath: '.clientCaSecretRef',
  })
  .rule('!has(self.minVersion) || has(self.secretName)', 'tls.minVersion is for client-facing TLS: it needs tls.secretName', { fieldPath: '.minVersion' });

const session = s.object(
  {
    trackSettings: s
      .boolean({
        description:
          'Track SET and RESET of session parameters and replay them on whichever database connection a client borrows next (default), so settings do not pin. false behaves like RDS Proxy: any SET pins the client to its connection. Default true.',
      })
      .default(true),
    untrackedParameters: s.array(s.string({ description: 'A parameter name, e.g. "pg_hint_plan.enable_hint"; matched case-insensitively.', maxLength: 128, pattern: GUC_NAME }), {
      description: 'Parameters whose SET always pins the client to its connection instead of being replayed, e.g. settings of an extension that must not be re-applied. Default: none.',
      maxItems: 64,
      listType: 'set',
    }),
    maxPreparedStatements: s
      .integer({
        description: 'Protocol-level prepared statements kept per database connection (least recently used ones are closed), like PgBouncer\'s max_prepared_statements. Default 200.',
        minimum: 1,
        maximum: 100000,
      })
      .default(200),
  },
  { description: 'How client session state (settings, prepared statements) is shared across pooled connections.' },
);

const healthCheck = s.object(
  {
    interval: durationField('How often each target endpoint is checked (pg_is_in_recovery(), max_connections), e.g. "1s"; at least 100ms. A failing writer is checked every 100 ms regardless. Default "1s".')
      .default('1s'),
    user: s.string({
      description: 'The user the health checks log in as; one of spec.users. Default: the first of spec.users. The database is target.database.',
      minLength: 1,
      maxLength: 63,
      pattern: USER_NAME,
    }),
  },
  { description: 'Health checks of the target endpoints, which find the writer and notice a failover.' },
).rule("!has(self.interval) || duration(self.interval) >= duration('100ms')", 'healthCheck.interval must be at least 100ms', { fieldPath: '.interval' });

const cancelRateLimit = s.object(
  {
    perSecond: s.integer({ description: 'CancelRequests accepted per second from one client address (an IPv6 /64 counts as one). Default 20.', minimum: 1, maximum: 1000000 }).default(20),
    burst: s.integer({ description: 'CancelRequests accepted at once from one client address. Default 100.', minimum: 1, maximum: 1000000 }).default(100),
    peerPerSecond: s
      .integer({ description: 'Cancels forwarded by one peer proxy pod per second (a peer forwards for all its clients). Default 200.', minimum: 1, maximum: 1000000 })
      .default(200),
    peerBurst: s.integer({ description: 'Cancels forwarded by one peer proxy pod at once. Default 1000.', minimum: 1, maximum: 1000000 }).default(1000),
  },
  {
    description:
      'Rate limits on cancel requests, the only bound on guessing cancel keys: requests over them are dropped and counted (dbproxy_cancel_requests_total{result="rate_limited"}).',
  },
);

/** A list of spec.users names with a role on the admin database. */
const adminUserList = (description: string) =>
  s.array(s.string({ description: 'A user name; one of spec.users.', minLength: 1, maxLength: 63, pattern: USER_NAME }), { description, maxItems: 64, listType: 'set' });

const service = s.object(
  {
    type: s.enum(['ClusterIP', 'LoadBalancer', 'NodePort'] as const, { description: 'Service type. Default ClusterIP.' }).default('ClusterIP'),
    port: s.integer({ description: 'Port applications connect to. Default 5432.', minimum: 1, maximum: 65535 }).default(5432),
    annotations: stringMap('Annotations added to the Service, e.g. for a cloud load balancer.'),
  },
  { description: 'The Service applications connect to; it is named like the DatabaseProxy.' },
);

const readers = s
  .object(
    {
      enabled: s
        .boolean({
          description:
            'Serve the read-only endpoint: each proxy pod also listens for read-only clients, and a second Service, <name>-ro, leads to that listener (same type, port and annotations as spec.service). Its clients log in exactly as on the main Service and are served, a transaction at a time, from pools to the standbys among the target endpoints that are healthy and within maxReplicationLag (one pool per standby, sized from its own max_connections and maxConnectionsPercent; no standby\'s connections count against the writer\'s budget). Each transaction goes to the standby with the most room. Writes get PostgreSQL\'s own error (SQLSTATE 25006). false removes the <name>-ro Service again and keeps the other settings.',
        })
        .required(),
      maxReplicationLag: durationField(
        'A standby further behind the writer than this leaves the rotation until it catches up, e.g. "10s". Lag is the time since the writer was at the position the standby has replayed to (measured by the health checks, so an idle writer never makes a standby look late); a read through this endpoint sees data at most about this old. At least twice healthCheck.interval (a standby streaming normally can look one interval behind). Default "30s".',
      ).default('30s'),
      fallbackToWriter: s
        .boolean({
          description:
            'With no standby in rotation: false (default) read-only clients wait up to pool.borrowTimeout for one, then get SQLSTATE 53300 saying why; true they are served by the writer\'s pool instead, in read-only transactions (writes still get 25006). Default false.',
        })
        .default(false),
    },
    {
      description:
        'The read-only endpoint, <name>-ro.<namespace>.svc: pooled, lag-aware connections to the standbys, balanced per transaction (like RDS Proxy\'s READ_ONLY proxy endpoints). Status: status.readers and the ReadersAvailable condition. Default: none.',
    },
  )
  .rule("!has(self.maxReplicationLag) || duration(self.maxReplicationLag) > duration('0s')", 'readers.maxReplicationLag must be more than 0s', { fieldPath: '.maxReplicationLag' });

const resourceList = (description: string) =>
  s.map(s.intOrString({ description: 'A quantity, e.g. "100m" or "128Mi".', pattern: QUANTITY }), { description, maxProperties: 16 });

const resources = s.object(
  {
    limits: resourceList('Maximum compute resources per proxy container, e.g. {cpu: "1", memory: "512Mi"}.'),
    requests: resourceList('Compute resources reserved per proxy container, e.g. {cpu: "250m", memory: "256Mi"}.'),
  },
  { description: 'Compute resources of the proxy container (core/v1 ResourceRequirements).' },
);

const pod = s.object(
  {
    affinity: s.preserved({ description: 'Pod affinity and anti-affinity (core/v1 Affinity).' }),
    tolerations: s.array(s.preserved({ description: 'A toleration (core/v1 Toleration).' }), {
      description: 'Tolerations of the proxy pods (core/v1 Toleration list).',
      maxItems: 64,
      listType: 'atomic',
    }),
    topologySpreadConstraints: s.array(s.preserved({ description: 'A topology spread constraint (core/v1 TopologySpreadConstraint).' }), {
      description:
        'How proxy pods spread over zones and nodes (core/v1 TopologySpreadConstraint list); replaces the default. The operator fills in labelSelector when it is omitted. Default: spread over nodes (kubernetes.io/hostname) and, when the cluster\'s nodes carry topology.kubernetes.io/zone, over zones, both with maxSkew 1 and whenUnsatisfiable ScheduleAnyway (never blocks scheduling).',
      maxItems: 16,
      listType: 'atomic',
    }),
    priorityClassName: s.string({ description: 'PriorityClass of the proxy pods.', maxLength: 253, pattern: DNS_SUBDOMAIN }),
    nodeSelector: stringMap('Node labels the proxy pods must run on, e.g. {"kubernetes.io/arch": "arm64"} (core/v1 PodSpec nodeSelector).'),
    imagePullSecrets: s.array(
      s.object({ name: secretName('Name of a kubernetes.io/dockerconfigjson Secret in the DatabaseProxy\'s namespace.').required() }, { description: 'A Secret with registry credentials.' }),
      { description: 'Secrets with credentials for pulling the proxy image from a private registry.', maxItems: 16, listType: 'map', listMapKeys: ['name'] },
    ),
    env: s.array(
      s
        .object(
          {
            name: s.string({ description: 'Name of the environment variable.', minLength: 1, maxLength: 253, pattern: '^[-._a-zA-Z][-._a-zA-Z0-9]*$' }).required(),
            value: s.string({ description: 'The value. Set value or valueFrom, not both.', maxLength: 32768 }),
            valueFrom: s.preserved({ description: 'Where the value comes from (core/v1 EnvVarSource: secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef).' }),
          },
          { description: 'An environment variable (core/v1 EnvVar).' },
        )
        .rule('!(has(self.value) && has(self.valueFrom))', 'set value or valueFrom, not both'),
      {
        description: `Extra environment variables of the proxy container, e.g. AWS_STS_REGIONAL_ENDPOINTS or HTTPS_PROXY. One named like a variable the operator sets (AWS_REGION) replaces it; ${RESERVED_ENV.join(', ')} are the operator's own and refused.`,
        maxItems: 64,
        listType: 'map',
        listMapKeys: ['name'],
      },
    ),
    labels: stringMap('Labels added to the proxy pods (the operator\'s own labels win on conflict).'),
    annotations: stringMap('Annotations added to the proxy pods.'),
  },
  { description: 'Overrides for the proxy pods.' },
).rule(
  `!has(self.env) || self.env.all(e, !(e.name in [${RESERVED_ENV.map((n) => `'${n}'`).join(', ')}]))`,
  `pod.env may not set ${RESERVED_ENV.join(', ')}: the operator sets them from the downward API`,
  { fieldPath: '.env' },
);

export const specSchema = s
  .object(
    {
      replicas: s
        .integer({ description: `Number of proxy pods, 1-${MAX_REPLICAS}. Default 2. Also settable through the scale subresource (kubectl scale, HorizontalPodAutoscaler).`, minimum: 1, maximum: MAX_REPLICAS })
        .default(2),
      image: s.string({ description: "Proxy container image. Default: the operator's own image.", minLength: 1, maxLength: 1024 }),
      target: target.required(),
      users: s
        .array(user, {
          description: 'Database users clients may log in as, each with its password Secret, or a client certificate (clientAuth cert) and a certificate for the database (backendCertificate) instead.',
          minItems: 1,
          maxItems: 64,
          listType: 'map',
          listMapKeys: ['name'],
        })
        .required(),
      backendAuth: backendAuth.default({ password: {} }),
      clientAuth: clientAuth.default({}),
      iam,
      serviceAccountName: s.string({
        description:
          'Run the proxy pods as this existing ServiceAccount instead of one the operator creates. Cannot be combined with iam.roleArn (annotate your ServiceAccount with eks.amazonaws.com/role-arn yourself for IRSA). Required with clientAuth.serviceAccounts: bind it to the ClusterRole system:auth-delegator (a ClusterRoleBinding you create), so the proxy may create TokenReviews.',
        maxLength: 253,
        pattern: DNS_SUBDOMAIN,
      }),
      pool: pool.default({}),
      session: session.default({}),
      healthCheck: healthCheck.default({}),
      cancelRateLimit: cancelRateLimit.default({}),
      adminUsers: adminUserList(
        'Users allowed everything on the admin database "dbproxy" (psql -d dbproxy): SHOW POOLS|CLIENTS|SERVERS|STATS|TARGETS|CONFIG, PAUSE, RESUME, RELOAD, like PgBouncer\'s admin_users. They log in with their own password. Default: none. PAUSE on the admin database reaches one pod only; to pause every pod, set spec.paused.',
      ),
      statsUsers: adminUserList(
        'Users allowed the SHOW commands on the admin database "dbproxy", like PgBouncer\'s stats_users. Users in neither list cannot log in to it. Default: none.',
      ),
      shutdownGracePeriod: durationField(
        `On SIGTERM (a pod deleted, rolled or evicted), how long transactions in flight may run before every remaining connection is closed, e.g. "20s"; at most ${MAX_SHUTDOWN_GRACE_SECONDS}s. The pods' terminationGracePeriodSeconds is this plus the preStop delay and a margin, and the Deployment's minReadySeconds follows it (the pool budget counts on old pods being gone before the next is replaced), so a long grace period slows rollouts. Default "20s".`,
      )
        .default('20s'),
      logLevel: s
        .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const, {
          description: 'Log level of the proxy pods (JSON logs). Applied in place, without restarting the pods. Default info.',
        })
        .default('info'),
      paused: s
        .boolean({
          description:
            'Pause every proxy pod: transactions in flight finish, new ones wait (like PgBouncer\'s PAUSE on every pod at once) until this is false again, or until pool.borrowTimeout, when the waiting client gets SQLSTATE 53300. Connections stay open. Applied in place through the config (no restart; pods started meanwhile start paused); status Ready=False, reason Paused, once every pod has paused. Default false.',
        })
        .default(false),
      tls,
      service: service.default({}),
      readers,
      resources,
      pod,
    },
    { description: 'Desired state of the proxy.' },
  )
  .rule('!(has(self.iam) && has(self.iam.roleArn) && has(self.serviceAccountName))', 'set iam.roleArn or serviceAccountName, not both')
  .rule(
    "!has(self.backendAuth.iam) || (has(self.tls) && has(self.tls.backend) && self.tls.backend.mode != 'disable')",
    'backendAuth.iam needs TLS to the database: set tls.backend.mode to require, verify-ca or verify-full',
    { fieldPath: '.backendAuth.iam' },
  )
  .rule(
    "self.clientAuth.iamAuth == 'DISABLED' || (has(self.tls) && has(self.tls.secretName))",
    'clientAuth.iamAuth OPTIONAL or REQUIRED needs tls.secretName: tokens are accepted over TLS only',
    { fieldPath: '.clientAuth.iamAuth' },
  )
  .rule(
    '!has(self.clientAuth.serviceAccounts) || has(self.serviceAccountName)',
    'clientAuth.serviceAccounts needs serviceAccountName: a ServiceAccount you create and bind to the ClusterRole system:auth-delegator, so the proxy may verify tokens with TokenReview (the operator creates no ClusterRoleBindings)',
    { fieldPath: '.serviceAccountName' },
  )
  .rule(
    '!has(self.clientAuth.awsIam) || self.clientAuth.awsIam.mappings.all(m, self.users.exists(u, u.name == m.user))',
    'every clientAuth.awsIam.mappings[].user must be one of spec.users',
    { fieldPath: '.clientAuth.awsIam.mappings' },
  )
  .rule(
    '!has(self.clientAuth.serviceAccounts) || self.clientAuth.serviceAccounts.mappings.all(m, self.users.exists(u, u.name == m.user))',
    'every clientAuth.serviceAccounts.mappings[].user must be one of spec.users',
    { fieldPath: '.clientAuth.serviceAccounts.mappings' },
  )
  .rule(
    // has(u.clientAuth): the API server fills in its default ("password") before rules run; the guard keeps the rule safe without it.
    "self.users.all(u, has(u.passwordSecretRef) || ((has(self.backendAuth.iam) || has(u.backendCertificate)) && ((has(u.clientAuth) && u.clientAuth == 'cert') || self.clientAuth.iamAuth == 'REQUIRED')))",
    'users[].passwordSecretRef may be left out only when no password is used for that user: the database needs none (backendAuth.iam, or the user\'s backendCertificate) and neither do clients (the user\'s clientAuth cert, or clientAuth.iamAuth REQUIRED)',
    { fieldPath: '.users' },
  )
  .rule(
    "!self.users.exists(u, has(u.clientAuth) && u.clientAuth == 'cert') || (has(self.tls) && has(self.tls.clientCaSecretRef))",
    'users[].clientAuth cert needs tls.clientCaSecretRef: the CA bundle client certificates are checked against',
    { fieldPath: '.users' },
  )
  .rule(
    "!self.users.exists(u, has(u.backendCertificate)) || (has(self.tls) && has(self.tls.backend) && self.tls.backend.mode != 'disable')",
    'users[].backendCertificate needs TLS to the database: set tls.backend.mode to require, verify-ca or verify-full',
    { fieldPath: '.users' },
  )
  .rule(`!has(self.shutdownGracePeriod) || duration(self.shutdownGracePeriod) <= duration('${MAX_SHUTDOWN_GRACE_SECONDS}s')`, `shutdownGracePeriod must be at most ${MAX_SHUTDOWN_GRACE_SECONDS}s`, {
    fieldPath: '.shutdownGracePeriod',
  })
  .rule('!has(self.adminUsers) || self.adminUsers.all(n, self.users.exists(u, u.name == n))', 'every adminUsers entry must be one of spec.users', { fieldPath: '.adminUsers' })
  .rule('!has(self.statsUsers) || self.statsUsers.all(n, self.users.exists(u, u.name == n))', 'every statsUsers entry must be one of spec.users', { fieldPath: '.statsUsers' })
  .rule(
    '!has(self.healthCheck) || !has(self.healthCheck.user) || self.users.exists(u, u.name == self.healthCheck.user)',
    'healthCheck.user must be one of spec.users',
    { fieldPath: '.healthCheck.user' },
  )
  .rule(
    // healthCheck.interval is always there after defaulting ("1s"); CEL has no duration * int.
    "!has(self.readers) || !has(self.readers.maxReplicationLag) || !has(self.healthCheck) || !has(self.healthCheck.interval) || duration(self.readers.maxReplicationLag) >= duration(self.healthCheck.interval) + duration(self.healthCheck.interval)",
    'readers.maxReplicationLag must be at least twice healthCheck.interval: lag is measured once per health check, so a standby streaming normally can look one interval behind',
    { fieldPath: '.readers.maxReplicationLag' },
  )
  .rule(
    "!has(self.backendAuth.password) || !has(self.backendAuth.password.secretName) || self.users.all(u, u.name.matches('^[-._a-zA-Z0-9]+$'))",
    'with backendAuth.password.secretName, user names must be valid Secret keys (letters, digits, "-", "_", "."): the Secret holds one key per user name',
    { fieldPath: '.backendAuth.password.secretName' },
  );

// --- status -----------------------------------------------------------------------------------

const CONDITION_TYPE = '^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$';

/** The standard metav1.Condition shape. */
export const conditionSchema = s.object(
  {
    type: s.string({ description: 'Type of condition in CamelCase: Ready, Available, Progressing, Degraded, TargetReachable, IAMReady, ReadersAvailable.', maxLength: 316, pattern: CONDITION_TYPE }).required(),
    status: s.enum(['True', 'False', 'Unknown'] as const, { description: 'Status of the condition: True, False or Unknown.' }).required(),
    observedGeneration: s.integer({ description: 'The .metadata.generation the condition was computed from.', minimum: 0, format: 'int64' }),
    lastTransitionTime: s.string({ description: 'When the condition last changed status.', format: 'date-time' }).required(),
    reason: s
      .string({ description: 'Machine-readable CamelCase reason for the condition\'s last transition.', minLength: 1, maxLength: 1024, pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$' })
      .required(),
    message: s.string({ description: 'Human-readable details.', maxLength: 32768 }).required(),
  },
  { description: 'A condition (metav1.Condition).' },
);

const count = (description: string) => s.integer({ description, minimum: 0, format: 'int64' });

export const statusSchema = s.object(
  {
    observedGeneration: s.integer({ description: 'The .metadata.generation the operator last acted on.', minimum: 0, format: 'int64' }),
    conditions: s.array(conditionSchema, {
      description:
        'Ready (summary; reason Paused while spec.paused holds every pod), Available, Progressing, Degraded, TargetReachable, IAMReady when the pods use AWS credentials (backendAuth.iam or iam.roleArn): the identity STS reports for them, or why there is none, and ReadersAvailable with spec.readers.enabled: whether every ready pod has a standby in rotation for the read-only endpoint.',
      maxItems: 16,
      listType: 'map',
      listMapKeys: ['type'],
    }),
    counts: s.object(
      {
        clientConnections: count('Client connections, summed over ready pods.'),
        databaseConnections: count('Database connections, summed over ready pods.'),
        borrowed: count('Database connections lent to a client (in a transaction or pinned), summed over ready pods.'),
        pinned: count('Database connections pinned to one client session, summed over ready pods.'),
        waiting: count('Clients waiting for a database connection, summed over ready pods.'),
        borrowTimeouts: count('Clients that gave up waiting for a database connection since their pod started, summed over ready pods.'),
      },
      { description: 'Connection counts from the pods\' /stats at the last status update; live numbers are in Prometheus.' },
    ),
    writer: s.string({ description: 'host:port of the database writer the proxies last reported.', maxLength: 260 }),
    targetMaxConnections: s.integer({ description: "The database's max_connections, as the proxies read it.", minimum: 0, format: 'int64' }),
    poolBudget: s.integer({ description: 'Database connections all proxy pods together may open: floor(max_connections x maxConnectionsPercent / 100).', minimum: 0, format: 'int64' }),
    poolDivisor: s.integer({ description: 'The number each pod divides the pool budget by: the most pods that may exist at once, rolling updates included.', minimum: 0, format: 'int64' }),
    endpoint: s.string({ description: 'Where applications connect inside the cluster: <name>.<namespace>.svc:<port>.', maxLength: 512 }),
    replicas: s.integer({ description: 'Proxy pods that exist (the scale subresource reads it).', minimum: 0, format: 'int32' }),
    readyReplicas: s.integer({ description: 'Proxy pods that are ready.', minimum: 0, format: 'int32' }),
    selector: s.string({ description: 'Label selector of the proxy pods, for the scale subresource.', maxLength: 1024 }),
    lastFailoverTime: s.string({ description: 'When the proxies last saw the writer move to another database instance.', format: 'date-time' }),
    lastFailoverDuration: s.string({ description: 'How long the last failover left the proxies without a writer, e.g. "12.5s".', maxLength: 32 }),
    readers: s.object(
      {
        endpoint: s.string({ description: 'Where read-only clients connect inside the cluster: <name>-ro.<namespace>.svc:<port>.', maxLength: 512 }),
        standbys: s.integer({ description: 'Standbys the ready pods know among the target endpoints (in recovery and answering).', minimum: 0, format: 'int32' }),
        available: s.integer({ description: 'Standbys in rotation (healthy and within spec.readers.maxReplicationLag) on every ready pod: what the read-only endpoint spreads reads over.', minimum: 0, format: 'int32' }),
        lag: s.string({ description: 'The largest replication lag among the standbys in rotation, in whole seconds, e.g. "2s": how old the data a read sees may be, at most.', maxLength: 32 }),
        databaseConnections: count("Connections the read-only endpoint's pools hold to the standbys, summed over ready pods."),
        borrowed: count('Of those, connections lent to read-only clients, summed over ready pods.'),
        waiting: count('Read-only clients waiting for a connection, summed over ready pods.'),
        targets: s.array(
          s.object(
            {
              endpoint: s.string({ description: 'host:port of the standby.', maxLength: 260 }).required(),
              available: s.boolean({ description: 'In rotation on every ready pod.' }).required(),
              reason: s.string({ description: 'Why not, as most pods report it: REPLICATION_LAG, or why the standby cannot be used (UNREACHABLE, ...).', maxLength: 64 }),
              lag: s.string({ description: 'Its replication lag, the largest any ready pod measured, in whole seconds, e.g. "0s".', maxLength: 32 }),
              lagBytes: s.integer({ description: 'WAL bytes the writer has that this standby has not replayed, the most any ready pod saw.', minimum: 0, format: 'int64' }),
            },
            { description: 'A standby of the read-only endpoint.' },
          ),
          { description: 'Each standby, as the ready pods see it.', maxItems: 16, listType: 'map', listMapKeys: ['endpoint'] },
        ),
      },
      { description: 'The read-only endpoint (spec.readers.enabled), merged over the ready pods\' /stats; absent without it.' },
    ),
  },
  { description: 'Observed state of the proxy, written by the operator.' },
);

/** The root schema: apiVersion, kind, metadata, spec, status. */
export const rootSchema = s
  .object(
    {
      apiVersion: s.string({ description: 'APIVersion defines the versioned schema of this representation of an object.' }),
      kind: s.string({ description: 'Kind is a string value representing the REST resource this object represents.' }),
      metadata: s.object(
        {
          name: s.string({
            description: 'Name of the DatabaseProxy: a DNS-1035 label of at most 56 characters, since it names the Service (<name>) and the ConfigMap (<name>-config).',
            maxLength: 56,
            pattern: '^[a-z]([-a-z0-9]*[a-z0-9])?$',
          }),
        },
        { description: 'Standard object metadata.' },
      ),
      spec: specSchema.required(),
      status: statusSchema,
    },
    {
      description:
        'DatabaseProxy runs a PostgreSQL connection-multiplexing proxy (like RDS Proxy) in front of a database: applications connect to <name>.<namespace>.svc as they would to the database.',
    },
  );

// --- TypeScript types, derived from the schema --------------------------------------------------

/** The spec as a user writes it. */
export type DatabaseProxySpecInput = InputOf<typeof specSchema>;
/** The spec after schema defaulting: what the API server stores and the operator reads. */
export type DatabaseProxySpec = OutputOf<typeof specSchema>;
export type DatabaseProxyStatus = OutputOf<typeof statusSchema>;
export type Condition = OutputOf<typeof conditionSchema>;
export type ConditionStatus = Condition['status'];
export type StatusCounts = NonNullable<DatabaseProxyStatus['counts']>;
export type UserSpec = DatabaseProxySpec['users'][number];
export type PoolSpec = DatabaseProxySpec['pool'];
export type ReadersSpec = NonNullable<DatabaseProxySpec['readers']>;
export type ReadersStatus = NonNullable<DatabaseProxyStatus['readers']>;

export interface ObjectMetaLite {
  name: string;
  namespace: string;
  uid: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  creationTimestamp?: string;
  resourceVersion?: string;
}

/** A DatabaseProxy as read from the API server (spec defaulted there, or by `withDefaults`). */
export interface DatabaseProxy {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMetaLite;
  spec: DatabaseProxySpec;
  status?: DatabaseProxyStatus;
}

/** A DatabaseProxy as a user writes it (defaults not yet applied). */
export interface DatabaseProxyInput {
  apiVersion: typeof API_VERSION;
  kind: typeof KIND;
  metadata: ObjectMetaLite;
  spec: DatabaseProxySpecInput;
  status?: DatabaseProxyStatus;
}

/** Fills in schema defaults exactly as the API server does, so builders never restate a default. */
export function withDefaults(dbp: DatabaseProxyInput | DatabaseProxy): DatabaseProxy {
  return { ...dbp, spec: applyDefaults(dbp.spec, specSchema.json) as DatabaseProxySpec } as DatabaseProxy;
}

/**
 * The JSON schema of the whole object (the CRD's openAPIV3Schema). The API server accepts nothing
 * on `metadata` but restrictions of name and generateName ("must not specify anything other than
 * name and generateName"), so its description is dropped here; kubectl explain describes metadata
 * from ObjectMeta anyway.
 */
export const openAPIV3Schema: JSONSchemaProps = (() => {
  const json = structuredClone(rootSchema.json);
  if (json.properties?.metadata) delete json.properties.metadata.description;
  return json;
})();
