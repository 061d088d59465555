// Backend logins the database refused: a rotated password that does not match the server yet, an
// IAM token or a client certificate the server rejects. Counted and remembered for /stats, and
// logged once per change of reason (not once per attempt), so a persistent mismatch is visible
// without flooding the logs.
import type { Logger } from 'pino';

export interface BackendAuthFailure {
  at: string;
  user: string;
  database: string;
  code: string;
  message: string;
}

export class BackendAuthFailures {
  total = 0;
  last: BackendAuthFailure | undefined;
  private readonly lastLogged = new Map<string, { message: string; at: number }>();

  constructor(
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    /** A repeated failure with the same message is logged again after this long. */
    private readonly relogMs = 60_000,
  ) {}

  record(user: string, database: string, code: string, message: string, method: 'password' | 'iam' | 'cert'): void {
    this.total++;
    const now = this.now();
    this.last = { at: new Date(now).toISOString(), user, database, code, message };
    const prev = this.lastLogged.get(user);
    if (!prev || prev.message !== message || now - prev.at >= this.relogMs) {
      this.lastLogged.set(user, { message, at: now });
      this.log.error(
        { user, database, code, err: message, method, total: this.total },
        method === 'iam'
          ? 'the database refused the RDS IAM token; check the IAM policy (rds-db:connect) and that the database user has the rds_iam role'
          : method === 'cert'
            ? "the database refused the proxy's client certificate; check that its CN is the user name and that it chains to the server's ssl_ca_file"
            : 'the database refused the configured password; the Secret may have been rotated on one side only',
      );
    }
  }

  /** Called after a successful login, so the next failure for the user is logged at once. */
  succeeded(user: string): void {
    this.lastLogged.delete(user);
  }

  stats(): { total: number; last: BackendAuthFailure } | undefined {
    return this.last ? { total: this.total, last: this.last } : undefined;
  }
}
