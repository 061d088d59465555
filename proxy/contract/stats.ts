// The proxy's /stats JSON: the other half of the proxy/operator seam (see config.ts). The operator
// sums these over ready pods into the DatabaseProxy status; live numbers belong in /metrics.

export type TargetState = 'AVAILABLE' | 'UNAVAILABLE' | 'UNKNOWN';
export type TargetRole = 'writer' | 'reader' | 'unknown';

export interface TargetStats {
  endpoint: string;
  state: TargetState;
  /** Why it is UNAVAILABLE: UNREACHABLE, CONNECTION_FAILED, AUTH_FAILURE, ... */
  reason?: string;
  role: TargetRole;
  maxConnections: number | null;
  /**
   * A standby, as a read-only target: AVAILABLE when it is in recovery, answers and is within
   * readers.maxReplicationLag; its lag behind the writer in time and WAL bytes (null before the
   * writer's position is known).
   */
  reader?: { state: TargetState; reason?: string; lagMs: number | null; lagBytes: number | null; replayPaused: boolean };
}

/** The proxy's own AWS identity as STS GetCallerIdentity reports it (proxy/iam/identityCheck.ts). */
export interface AwsIdentityStats {
  /** PENDING until the first check has answered. */
  state: 'VERIFIED' | 'FAILED' | 'PENDING';
  /** The caller ARN STS reported, e.g. arn:aws:sts::123456789012:assumed-role/orders-proxy/<session>. */
  arn?: string;
  /** The same as a role (or user) ARN: arn:aws:iam::123456789012:role/orders-proxy. */
  roleArn?: string;
  account?: string;
  /** The role the config expects (a DatabaseProxy's iam.roleArn). */
  expectedRoleArn?: string;
  /** FAILED: NoWebIdentityToken, InvalidWebIdentityToken, ExpiredToken, AccessDenied, InvalidCredentials, WrongRole, NoCredentials, NoRegion, StsUnreachable, StsError. */
  reason?: string;
  message?: string;
  /** When the last check finished, and when one last succeeded (ISO 8601). */
  checkedAt?: string;
  lastVerifiedAt?: string;
}

export interface ProxyStats {
  version: 1;
  replicaId: number;
  ready: boolean;
  /** New transactions wait: the config says paused, or PAUSE on the admin console. */
  paused: boolean;
  /** Why: the config file's `paused` (a DatabaseProxy's spec.paused), PAUSE on the admin console. Absent from older proxies. */
  pause?: { config: boolean; admin: boolean };
  shuttingDown: boolean;
  clientConnections: number;
  databaseConnections: number;
  /** Backends currently lent to a client (in a transaction or pinned). */
  borrowed: number;
  /** Backends pinned to one client for the rest of its session. */
  pinned: number;
  idle: number;
  /** Clients queued for a backend. */
  waiting: number;
  borrowTimeouts: number;
  pinsByReason: Record<string, number>;
  pool: {
    /** floor(targetMaxConnections * maxConnectionsPercent / 100 / replicas), or null before the target was read; `replicas` is the divisor. */
    budget: number | null;
    /** Backends this process may open: the budget less the health-check connection. */
    maxDatabaseConnections: number | null;
    targetMaxConnections: number | null;
    maxConnectionsPercent: number;
    maxIdleConnectionsPercent: number;
    /**
     * The divisor in force (config pool.divisor). Keeps its old name here: the operator reads it
     * from pods of every version during a rollout.
     */
    replicas: number;
    /**
     * Per user: backend connections its pools hold (lent, idle and opening), how many of them are
     * lent, clients waiting, and its cap (users[].maxConnections; null: none). Absent in older proxies.
     */
    users?: Array<{ user: string; connections: number; borrowed: number; waiting: number; maxConnections: number | null }>;
  };
  writer: string | null;
  /** Why there is no writer (NO_WRITER, MULTIPLE_WRITERS: ...), when there is none. */
  writerProblem?: string;
  targets: TargetStats[];
  failovers: number;
  /** The last change to a new writer: when the old one was first seen failing, and how long until the new one took over. */
  lastFailover: { at: string; durationMs: number; from: string | null; to: string } | null;
  /**
   * Backend logins the database refused (a rotated password not yet matching, a bad IAM token):
   * how many since start, and the last one. Absent while there have been none.
   */
  backendAuthFailures?: { total: number; last: { at: string; user: string; database: string; code: string; message: string } };
  /**
   * The read-only endpoint (readers in the config), absent without one: totals over the standbys'
   * pools, and each standby's pool (usable: in rotation; reason: why not).
   */
  readers?: {
    maxReplicationLagMs: number;
    fallbackToWriter: boolean;
    databaseConnections: number;
    borrowed: number;
    pinned: number;
    idle: number;
    waiting: number;
    pools: Array<{ endpoint: string; usable: boolean; reason?: string; maxDatabaseConnections: number | null; databaseConnections: number; borrowed: number; pinned: number; idle: number; waiting: number }>;
  };
  /** The proxy's AWS identity, when it checks one (backendAuth iam, or an awsIdentity section in the config). */
  awsIdentity?: AwsIdentityStats;
}
