// Token logins (iamAuth OPTIONAL or REQUIRED): a client's "password" is a presigned STS
// GetCallerIdentity request (`dbproxy token`) or a Kubernetes ServiceAccount token. Each kind has
// its verifier; this module routes a token to the right one, caches verified identities briefly
// by the token's hash (never the token itself), and maps identities to database users.
import { createHash } from 'node:crypto';

export interface VerifiedIdentity {
  kind: 'sts' | 'serviceaccount';
  /** Canonical IAM ARN, or system:serviceaccount:<namespace>:<name>. */
  identity: string;
  /** Database users this identity may log in as. */
  users: string[];
}

/** A token that failed a check. The message says which, and never contains the token. */
export class TokenRefused extends Error {
  constructor(
    /** Short name of the failed check, for metrics: expired, host, query, binding, sts, ... */
    readonly check: string,
    message: string,
  ) {
    super(message);
    this.name = 'TokenRefused';
  }
}

export interface ClientTokenAuth {
  /** Whether some mapping names this database user (so its logins ask for a cleartext token over TLS). */
  mapsUser(user: string): boolean;
  /** Whether the secret has the shape of a token this proxy accepts (else it is a password). */
  looksLikeToken(secret: string): boolean;
  /** Verifies the token; throws TokenRefused. */
  verify(token: string): Promise<VerifiedIdentity>;
}

/** One kind of token. */
export interface TokenVerifier {
  readonly kind: VerifiedIdentity['kind'];
  recognizes(token: string): boolean;
  mapsUser(user: string): boolean;
  /** Verifies and maps; `expiresAt` bounds how long the result may be cached. */
  verify(token: string): Promise<{ identity: VerifiedIdentity; expiresAt: number }>;
}

export interface TokenAuthOptions {
  verifiers: TokenVerifier[];
  /** Largest accepted token, in characters. */
  maxTokenLength?: number;
  cacheTtlMs: (kind: VerifiedIdentity['kind']) => number;
  now?: () => number;
  /** Bound on remembered tokens. */
  maxCacheEntries?: number;
}

export const MAX_TOKEN_LENGTH = 8192;

export class TokenAuth implements ClientTokenAuth {
  private readonly cache = new Map<string, { identity: VerifiedIdentity; until: number }>();
  private readonly now: () => number;

  constructor(private readonly opts: TokenAuthOptions) {
    this.now = opts.now ?? Date.now;
  }

  mapsUser(user: string): boolean {
    return this.opts.verifiers.some((v) => v.mapsUser(user));
  }

  looksLikeToken(secret: string): boolean {
    return this.opts.verifiers.some((v) => v.recognizes(secret));
  }

  async verify(token: string): Promise<VerifiedIdentity> {
    if (token.length > (this.opts.maxTokenLength ?? MAX_TOKEN_LENGTH)) {
      throw new TokenRefused('oversized', `token is too long (${token.length} characters; at most ${this.opts.maxTokenLength ?? MAX_TOKEN_LENGTH})`);
    }
    const verifier = this.opts.verifiers.find((v) => v.recognizes(token));
    if (!verifier) throw new TokenRefused('format', 'not a token this proxy accepts');
    const key = createHash('sha256').update(token).digest('base64');
    const now = this.now();
    const hit = this.cache.get(key);
    if (hit && hit.until > now) return hit.identity;
    if (hit) this.cache.delete(key);
    const { identity, expiresAt } = await verifier.verify(token);
    const until = Math.min(expiresAt, this.now() + this.opts.cacheTtlMs(verifier.kind));
    if (until > this.now()) {
      if (this.cache.size >= (this.opts.maxCacheEntries ?? 10_000)) this.evict();
      this.cache.set(key, { identity, until });
    }
    return identity;
  }

  private evict(): void {
    const now = this.now();
    for (const [k, v] of this.cache) if (v.until <= now) this.cache.delete(k);
    // Still full: drop the oldest half (Map keeps insertion order).
    if (this.cache.size >= (this.opts.maxCacheEntries ?? 10_000)) {
      let n = Math.ceil(this.cache.size / 2);
      for (const k of this.cache.keys()) {
        if (n-- <= 0) break;
        this.cache.delete(k);
      }
    }
  }
}
