// Kubernetes ServiceAccount token logins: the client sends a projected token issued for the
// audience "dbproxy" (`kubectl create token <sa> --audience dbproxy`, or a projected volume) as
// its password. The proxy asks the API server with a TokenReview (authentication.k8s.io/v1),
// which checks signature, expiry, audience and that the ServiceAccount (and, for bound tokens,
// the pod) still exists. The proxy's own identity needs RBAC to create tokenreviews (e.g. the
// system:auth-delegator ClusterRole).
import https from 'node:https';
// Only the type at load time: the library is large (tens of MB of resident memory), and only a
// proxy configured for ServiceAccount logins needs it, so it is loaded on first use.
import type { KubeConfig } from '@kubernetes/client-node';
import { TokenRefused, type TokenVerifier, type VerifiedIdentity } from './tokenAuth.js';

export interface ServiceAccountVerifierOptions {
  audience: string;
  mappings: ReadonlyArray<{ namespace: string; serviceAccount: string; user: string }>;
  /** Kubeconfig file; default: in-cluster (the pod's service account). */
  kubeconfig?: string;
  timeoutMs: number;
  now?: () => number;
}

const JWT = /^eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const MAX_RESPONSE_BYTES = 256 * 1024;

/** The token's `exp`, unverified: only ever used to shorten how long a verified result is cached. */
function jwtExpiry(token: string): number | undefined {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { exp?: unknown };
    return typeof payload.exp === 'number' ? payload.exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

export class ServiceAccountVerifier implements TokenVerifier {
  readonly kind = 'serviceaccount' as const;
  private kc: KubeConfig | undefined;
  private readonly now: () => number;

  constructor(private readonly opts: ServiceAccountVerifierOptions) {
    this.now = opts.now ?? Date.now;
  }

  recognizes(token: string): boolean {
    return JWT.test(token);
  }

  mapsUser(user: string): boolean {
    return this.opts.mappings.some((m) => m.user === user);
  }

  private async kubeConfig(): Promise<KubeConfig> {
    if (!this.kc) {
      const { KubeConfig } = await import('@kubernetes/client-node');
      const kc = new KubeConfig();
      if (this.opts.kubeconfig) kc.loadFromFile(this.opts.kubeconfig);
      else kc.loadFromCluster();
      this.kc = kc;
    }
    return this.kc;
  }

  async verify(token: string): Promise<{ identity: VerifiedIdentity; expiresAt: number }> {
    const review = await this.tokenReview(token);
    const status = review.status ?? {};
    if (status.authenticated !== true) {
      // The API server's reason names the problem (expired, invalid, wrong audience), not the token.
      const why = typeof status.error === 'string' ? status.error.replace(/[^\x20-\x7e]/g, '').slice(0, 200) : 'not authenticated';
      throw new TokenRefused('serviceaccount', `the Kubernetes API did not accept the ServiceAccount token: ${why}`);
    }
    if (!(status.audiences ?? []).includes(this.opts.audience)) {
      throw new TokenRefused('audience', `the ServiceAccount token is not for audience "${this.opts.audience}"`);
    }
    const username = status.user?.username ?? '';
    const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(username);
    if (!m) throw new TokenRefused('identity', `identity ${username.slice(0, 100)} is not a ServiceAccount`);
    const [, namespace, name] = m;
    const users = this.opts.mappings.filter((x) => x.namespace === namespace && x.serviceAccount === name).map((x) => x.user);
    if (users.length === 0) throw new TokenRefused('unmapped', `ServiceAccount ${namespace}/${name} is not mapped to any database user (serviceAccountAuth.mappings)`);
    return { identity: { kind: 'serviceaccount', identity: username, users }, expiresAt: jwtExpiry(token) ?? Infinity };
  }

  private async tokenReview(token: string): Promise<{ status?: { authenticated?: boolean; error?: string; audiences?: string[]; user?: { username?: string } } }> {
    let kc: KubeConfig;
    const options: https.RequestOptions = {};
    let server: string;
    try {
      kc = await this.kubeConfig();
      const cluster = kc.getCurrentCluster();
      if (!cluster) throw new Error('no current cluster in the kubeconfig');
      server = cluster.server;
      await kc.applyToHTTPSOptions(options);
    } catch (e) {
      throw new TokenRefused('serviceaccount_unavailable', `cannot reach the Kubernetes API for TokenReview: ${(e as Error).message}`);
    }
    const body = JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [this.opts.audience] } });
    const url = new URL('/apis/authentication.k8s.io/v1/tokenreviews', server);
    return new Promise((resolve, reject) => {
      const req = https.request(
        url,
        {
          ...options,
          method: 'POST',
          headers: { ...(options.headers ?? {}), 'content-type': 'application/json', accept: 'application/json', 'content-length': Buffer.byteLength(body) },
          timeout: this.opts.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_RESPONSE_BYTES) req.destroy(new Error('answer too large'));
            else chunks.push(c);
          });
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status !== 200 && status !== 201) {
              return reject(new TokenRefused('serviceaccount_unavailable', `TokenReview failed with HTTP ${status} (does the proxy's identity may create tokenreviews?)`));
            }
            try {
              resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
            } catch {
              reject(new TokenRefused('serviceaccount_unavailable', 'TokenReview answer is not JSON'));
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.opts.timeoutMs} ms`)));
      req.on('error', (e) => reject(new TokenRefused('serviceaccount_unavailable', `TokenReview call failed: ${e.message}`)));
      req.end(body);
    });
  }
}
