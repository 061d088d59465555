import { parseConfigYaml } from '../../proxy/contract/config.js';
import { allFeatures, exampleProxy } from '../api/fixtures.js';
import type { DatabaseProxySpecInput } from '../api/v1alpha1.js';
import type { Deployment, PodSpec } from '../runtime/types.js';
import { buildConfigMap } from './configMap.js';
import { buildDeployment } from './deployment.js';

const facts = { defaultImage: 'ghcr.io/example/dbproxy:0.1.0', configHash: 'abc123' };
const build = (spec: Partial<DatabaseProxySpecInput> = {}, more: { replicas?: number; zoneSpread?: boolean } = {}): Deployment => buildDeployment(exampleProxy(spec), { ...facts, ...more });
const proxyContainer = (d: Deployment) => d.spec.template.spec.containers[0]!;

/** The checks of the "restricted" Pod Security Standard that apply to what the builder sets. */
function restrictedViolations(pod: PodSpec): string[] {
  const out: string[] = [];
  const allowedVolumes = ['configMap', 'csi', 'downwardAPI', 'emptyDir', 'ephemeral', 'persistentVolumeClaim', 'projected', 'secret'];
  for (const v of pod.volumes ?? []) for (const k of Object.keys(v)) if (k !== 'name' && !allowedVolumes.includes(k)) out.push(`volume ${v.name}: ${k}`);
  const podRunAsNonRoot = pod.securityContext?.runAsNonRoot;
  const podSeccomp = pod.securityContext?.seccompProfile?.type;
  for (const c of pod.containers) {
    const sc = c.securityContext ?? {};
    if (sc.privileged) out.push(`${c.name}: privileged`);
    if (sc.allowPrivilegeEscalation !== false) out.push(`${c.name}: allowPrivilegeEscalation`);
    if ((sc.runAsNonRoot ?? podRunAsNonRoot) !== true) out.push(`${c.name}: runAsNonRoot`);
    if ((sc.runAsUser ?? pod.securityContext?.runAsUser) === 0) out.push(`${c.name}: runAsUser 0`);
    if (!['RuntimeDefault', 'Localhost'].includes(sc.seccompProfile?.type ?? podSeccomp ?? '')) out.push(`${c.name}: seccompProfile`);
    if (!sc.capabilities?.drop?.includes('ALL')) out.push(`${c.name}: capabilities not dropped`);
    for (const cap of sc.capabilities?.add ?? []) if (cap !== 'NET_BIND_SERVICE') out.push(`${c.name}: adds ${cap}`);
  }
  return out;
}

describe('buildDeployment', () => {
  test.each<[string, Partial<DatabaseProxySpecInput>]>([
    ['defaults', {}],
    ['everything set', {
      tls: { secretName: 'orders-tls', requireTLS: true, backend: { mode: 'verify-full', caSecretRef: { name: 'rds-ca' } } },
      backendAuth: { password: { secretName: 'db-passwords' } },
      resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '512Mi' } },
      pod: { priorityClassName: 'high', tolerations: [{ key: 'dedicated', operator: 'Exists' }] },
    }],
    ['every feature, ServiceAccount tokens included', allFeatures],
  ])('restricted Pod Security, read-only root, non-root (%s)', (_name, spec) => {
    const d = build(spec);
    const pod = d.spec.template.spec;
    expect(restrictedViolations(pod)).toEqual([]);
    expect(proxyContainer(d).securityContext).toMatchObject({ readOnlyRootFilesystem: true, runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } });
    for (const m of proxyContainer(d).volumeMounts ?? []) if (m.name !== 'tmp') expect({ m: m.name, readOnly: m.readOnly }).toEqual({ m: m.name, readOnly: true });
  });

  test('command, ports, probes, drain', () => {
    const d = build();
    const c = proxyContainer(d);
    expect(c.image).toBe('ghcr.io/example/dbproxy:0.1.0');
    expect(c.args).toEqual(['proxy', '--config', '/etc/dbproxy/config.yaml']);
    expect(c.ports).toEqual([
      { name: 'postgres', containerPort: 5432, protocol: 'TCP' },
      { name: 'admin', containerPort: 9090, protocol: 'TCP' },
    ]);
    expect(c.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    expect(c.startupProbe?.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(c.lifecycle?.preStop?.sleep?.seconds).toBeGreaterThan(0);
    expect(d.spec.template.spec.terminationGracePeriodSeconds).toBe(30);
  });

  test.each<[string, Partial<DatabaseProxySpecInput>, string[]]>([
    ['no read-only endpoint', {}, ['postgres', 'admin']],
    ['readers disabled', { readers: { enabled: false } }, ['postgres', 'admin']],
    ['readers enabled: the read-only listener too', { readers: { enabled: true } }, ['postgres', 'postgres-ro', 'admin']],
  ])('container ports: %s', (_name, spec, names) => {
    const c = proxyContainer(build(spec));
    expect(c.ports?.map((p) => p.name)).toEqual(names);
    if (names.includes('postgres-ro')) expect(c.ports?.find((p) => p.name === 'postgres-ro')).toEqual({ name: 'postgres-ro', containerPort: 5433, protocol: 'TCP' });
    // Readiness stays the writer's: one probe per pod, both Services select the same pods.
    expect(c.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'admin' });
  });

  test.each<[string, string | undefined, number]>([
    ['default 20s', undefined, 30],
    ['0s: close at once', '0s', 10],
    ['1500ms rounds up', '1500ms', 12],
    ['5m, the most allowed', '5m', 310],
  ])('shutdownGracePeriod %s: the proxy drain fits in the pod grace period after preStop, and minReadySeconds covers it', (_what, grace, expected) => {
    const spec = grace === undefined ? {} : { shutdownGracePeriod: grace };
    const d = build(spec);
    const c = proxyContainer(d);
    const pod = d.spec.template.spec;
    const cfg = parseConfigYaml(buildConfigMap(exampleProxy(spec), { poolDivisor: 3 }).configMap.data['config.yaml']!);
    expect(pod.terminationGracePeriodSeconds).toBe(expected);
    expect(c.lifecycle!.preStop!.sleep!.seconds + cfg.shutdownGracePeriod / 1000).toBeLessThan(pod.terminationGracePeriodSeconds!);
    expect(d.spec.minReadySeconds).toBeGreaterThanOrEqual(pod.terminationGracePeriodSeconds!);
  });

  test('spec.image wins over the default image', () => {
    expect(proxyContainer(build({ image: 'registry.local/dbproxy:dev' })).image).toBe('registry.local/dbproxy:dev');
  });

  test.each([
    [{}, 2, { maxSurge: 0, maxUnavailable: 1 }],
    [{ replicas: 1 }, 1, { maxSurge: 1, maxUnavailable: 0 }],
    [{ replicas: 5 }, 5, { maxSurge: 0, maxUnavailable: 1 }],
  ])('replicas and rollout strategy: %j', (spec, replicas, rollingUpdate) => {
    const d = build(spec);
    expect(d.spec.replicas).toBe(replicas);
    expect(d.spec.strategy).toEqual({ type: 'RollingUpdate', rollingUpdate });
    expect(d.spec.minReadySeconds).toBe(30);
  });

  test.each<[string, Partial<DatabaseProxySpecInput>, { zoneSpread?: boolean }, Array<Record<string, unknown>>]>([
    ['no zones in the cluster: over nodes only', {}, {}, [{ maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway' }]],
    [
      'zones in the cluster: over zones and nodes',
      {},
      { zoneSpread: true },
      [
        { maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'ScheduleAnyway' },
        { maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway' },
      ],
    ],
    [
      "the user's constraints replace the default, labelSelector filled in",
      { pod: { topologySpreadConstraints: [{ maxSkew: 2, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'DoNotSchedule' }] } },
      { zoneSpread: true },
      [{ maxSkew: 2, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'DoNotSchedule' }],
    ],
  ])('topology spread: %s', (_what, spec, more, expected) => {
    const tsc = build(spec, more).spec.template.spec.topologySpreadConstraints!;
    expect(tsc).toEqual(expected.map((c) => ({ ...c, labelSelector: { matchLabels: { 'app.kubernetes.io/name': 'dbproxy', 'app.kubernetes.io/instance': 'orders' } } })));
  });

  test.each<[string, Partial<DatabaseProxySpecInput>, (pod: PodSpec) => void]>([
    ['nothing set: no nodeSelector, no pull secrets', {}, (pod) => {
      expect(pod.nodeSelector).toBeUndefined();
      expect(pod.imagePullSecrets).toBeUndefined();
    }],
    ['nodeSelector', { pod: { nodeSelector: { 'kubernetes.io/arch': 'arm64', pool: 'db-proxies' } } }, (pod) => expect(pod.nodeSelector).toEqual({ 'kubernetes.io/arch': 'arm64', pool: 'db-proxies' })],
    ['imagePullSecrets', { pod: { imagePullSecrets: [{ name: 'registry-a' }, { name: 'registry-b' }] } }, (pod) => expect(pod.imagePullSecrets).toEqual([{ name: 'registry-a' }, { name: 'registry-b' }])],
    ['priorityClassName', { pod: { priorityClassName: 'system-cluster-critical' } }, (pod) => expect(pod.priorityClassName).toBe('system-cluster-critical')],
    [
      "extra env after the operator's own, from values and sources",
      { pod: { env: [{ name: 'AWS_STS_REGIONAL_ENDPOINTS', value: 'regional' }, { name: 'HTTPS_PROXY', valueFrom: { configMapKeyRef: { name: 'egress', key: 'proxy' } } }] } },
      (pod) =>
        expect(pod.containers[0]!.env).toEqual([
          expect.objectContaining({ name: 'POD_NAME' }),
          expect.objectContaining({ name: 'POD_NAMESPACE' }),
          expect.objectContaining({ name: 'POD_IP' }),
          { name: 'AWS_STS_REGIONAL_ENDPOINTS', value: 'regional' },
          { name: 'HTTPS_PROXY', valueFrom: { configMapKeyRef: { name: 'egress', key: 'proxy' } } },
        ]),
    ],
    [
      "a user's AWS_REGION replaces the operator's (one entry: the API server refuses duplicate names)",
      { backendAuth: { iam: { region: 'eu-west-1' } }, tls: { backend: {} }, pod: { env: [{ name: 'AWS_REGION', value: 'eu-central-1' }] } },
      (pod) => expect(pod.containers[0]!.env!.filter((e) => e.name === 'AWS_REGION')).toEqual([{ name: 'AWS_REGION', value: 'eu-central-1' }]),
    ],
  ])('pod overrides: %s', (_what, spec, check) => {
    check(build(spec).spec.template.spec);
  });

  test('replicas held back by the scale-up gate', () => {
    const d = build({ replicas: 6 }, { replicas: 3 });
    expect(d.spec.replicas).toBe(3);
  });

  test('config hash on the pod template; pod labels and annotations merged, selector labels win', () => {
    const d = build({ pod: { labels: { team: 'orders', 'app.kubernetes.io/name': 'evil' }, annotations: { 'prometheus.io/scrape': 'true' } } });
    expect(d.spec.selector).toEqual({ matchLabels: { 'app.kubernetes.io/name': 'dbproxy', 'app.kubernetes.io/instance': 'orders' } });
    expect(d.spec.template.metadata.labels).toEqual({
      team: 'orders',
      'app.kubernetes.io/name': 'dbproxy',
      'app.kubernetes.io/instance': 'orders',
      'app.kubernetes.io/component': 'proxy',
      'app.kubernetes.io/managed-by': 'dbproxy-operator',
    });
    expect(d.spec.template.metadata.annotations).toEqual({ 'prometheus.io/scrape': 'true', 'dbproxy.io/config-hash': 'abc123' });
    expect(d.metadata.ownerReferences?.[0]).toMatchObject({ apiVersion: 'dbproxy.io/v1alpha1', kind: 'DatabaseProxy', controller: true, blockOwnerDeletion: true });
  });

  test('every passwordFile in the rendered config is a file the Deployment mounts (projected from the Secret key)', () => {
    const dbp = exampleProxy({
      users: [
        { name: 'app', passwordSecretRef: { name: 'orders-app' } },
        { name: 'batch', passwordSecretRef: { name: 'orders-app', key: 'batch' } },
        { name: 'report', passwordSecretRef: { name: 'orders-report', key: 'pw' } },
      ],
    });
    const cfg = parseConfigYaml(buildConfigMap(dbp, { poolDivisor: 3 }).configMap.data['config.yaml']!);
    const d = buildDeployment(dbp, facts);
    const pod = d.spec.template.spec;
    const mount = proxyContainer(d).volumeMounts!.find((m) => m.name === 'users')!;
    const vol = pod.volumes!.find((v) => v.name === 'users')!;
    const files = vol.projected!.sources.flatMap((s) => s.secret!.items!.map((i) => ({ file: `${mount.mountPath}/${i.path}`, secret: s.secret!.name, key: i.key })));
    expect(files).toEqual([
      { file: '/var/run/secrets/dbproxy/users/app/password', secret: 'orders-app', key: 'password' },
      { file: '/var/run/secrets/dbproxy/users/batch/password', secret: 'orders-app', key: 'batch' },
      { file: '/var/run/secrets/dbproxy/users/report/password', secret: 'orders-report', key: 'pw' },
    ]);
    expect(cfg.users.map((u) => u.passwordFile)).toEqual(files.map((f) => f.file));
    // the config file itself: a ConfigMap directory mount (not subPath), so kubelet refreshes it in place
    const cfgMount = proxyContainer(d).volumeMounts!.find((m) => m.name === 'config')!;
    expect(`${cfgMount.mountPath}/config.yaml`).toBe('/etc/dbproxy/config.yaml');
    expect(pod.volumes!.find((v) => v.name === 'config')!.configMap!.name).toBe('orders-config');
    expect(vol.projected!.defaultMode).toBe(0o440);
    expect(pod.securityContext?.fsGroup).toBe(pod.securityContext?.runAsGroup);
  });

  test.each<[string, Partial<DatabaseProxySpecInput>, string[]]>([
    ['no TLS', {}, ['config', 'users', 'tmp']],
    ['client TLS', { tls: { secretName: 'orders-tls' } }, ['config', 'users', 'tls', 'tmp']],
    ['backend CA', { tls: { backend: { caSecretRef: { name: 'rds-ca' } } } }, ['config', 'users', 'backend-ca', 'tmp']],
    ['separate database passwords', { backendAuth: { password: { secretName: 'db-pw' } } }, ['config', 'users', 'backend-passwords', 'tmp']],
  ])('volumes: %s', (_name, spec, names) => {
    const d = build(spec);
    expect(d.spec.template.spec.volumes!.map((v) => v.name)).toEqual(names);
    expect(proxyContainer(d).volumeMounts!.map((m) => m.name)).toEqual(names);
  });

  test.each<[string, Partial<DatabaseProxySpecInput>, string[]]>([
    ['backend TLS disabled: no CA mounted', { tls: { backend: { mode: 'disable' } } }, ['config', 'users', 'tmp']],
    ['tokens only, IAM to the database: no password volume', { users: [{ name: 'app' }], backendAuth: { iam: { region: 'eu-west-1' } } }, ['config', 'tmp']],
    ['every feature', allFeatures, ['config', 'users', 'tls', 'client-ca', 'backend-ca', 'backend-certs', 'backend-passwords', 'tmp']],
    ['client certificates: the client CA', { tls: { secretName: 'orders-tls', clientCaSecretRef: { name: 'client-ca' } } }, ['config', 'users', 'tls', 'client-ca', 'tmp']],
    // The CRD refuses it; the config renders no clientCaFile then, so nothing is mounted for it.
    ['a client CA without client-facing TLS: not mounted', { tls: { clientCaSecretRef: { name: 'client-ca' } } }, ['config', 'users', 'tmp']],
    [
      'a certificate for the database',
      { users: [{ name: 'app', passwordSecretRef: { name: 'a' }, backendCertificate: { secretName: 'app-db-cert' } }], tls: { backend: { mode: 'require' } } },
      ['config', 'users', 'backend-certs', 'tmp'],
    ],
    [
      'certificates on both sides, no password: no password volume',
      { users: [{ name: 'app', clientAuth: 'cert', backendCertificate: { secretName: 'app-db-cert' } }], tls: { secretName: 'orders-tls', clientCaSecretRef: { name: 'client-ca' }, backend: {} } },
      ['config', 'tls', 'client-ca', 'backend-certs', 'tmp'],
    ],
  ])('volumes: %s', (_name, spec, names) => {
    const d = build(spec);
    expect(d.spec.template.spec.volumes!.map((v) => v.name)).toEqual(names);
    expect(proxyContainer(d).volumeMounts!.map((m) => m.name)).toEqual(names);
  });

  test('every file the rendered config names lies under a volume mount that provides it (a spec using every feature)', () => {
    const dbp = exampleProxy(allFeatures);
    const cfg = parseConfigYaml(buildConfigMap(dbp, { poolDivisor: 3 }).configMap.data['config.yaml']!);
    const d = buildDeployment(dbp, facts);
    const pod = d.spec.template.spec;
    // Every string value under a key ending in "File", wherever it sits in the config.
    const files: string[] = [];
    const walk = (v: unknown, key = ''): void => {
      if (Array.isArray(v)) v.forEach((x) => walk(x));
      else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, k);
      else if (/File$/.test(key) && typeof v === 'string') files.push(v);
    };
    walk(cfg);
    expect(files.sort()).toEqual([
      '/var/run/secrets/dbproxy/backend-ca/ca.crt',
      '/var/run/secrets/dbproxy/backend-certs/batch/tls.crt',
      '/var/run/secrets/dbproxy/backend-certs/batch/tls.key',
      '/var/run/secrets/dbproxy/backend-passwords/app',
      '/var/run/secrets/dbproxy/backend-passwords/report',
      '/var/run/secrets/dbproxy/client-ca/ca.crt',
      '/var/run/secrets/dbproxy/tls/tls.crt',
      '/var/run/secrets/dbproxy/tls/tls.key',
      '/var/run/secrets/dbproxy/users/app/password',
      '/var/run/secrets/dbproxy/users/report/password',
    ]);
    // What each mounted volume puts at a path: listed items, or (a whole Secret) one file per key.
    const provided = (file: string): string | undefined => {
      const m = proxyContainer(d).volumeMounts!.find((x) => file.startsWith(`${x.mountPath}/`));
      if (!m) return undefined;
      const rel = file.slice(m.mountPath.length + 1);
      const v = pod.volumes!.find((x) => x.name === m.name)!;
      if (v.secret?.items) return v.secret.items.some((i) => i.path === rel) ? `${v.secret.secretName}:${v.secret.items.find((i) => i.path === rel)!.key}` : undefined;
      if (v.secret) return `${v.secret.secretName}:${rel}`;
      const src = v.projected?.sources.find((x) => x.secret?.items?.some((i) => i.path === rel));
      return src ? `${src.secret!.name}:${src.secret!.items!.find((i) => i.path === rel)!.key}` : undefined;
    };
    expect(Object.fromEntries(files.map((f) => [f, provided(f)]))).toEqual({
      '/var/run/secrets/dbproxy/backend-ca/ca.crt': 'rds-ca:global-bundle.pem',
      '/var/run/secrets/dbproxy/backend-certs/batch/tls.crt': 'orders-batch-cert:tls.crt',
      '/var/run/secrets/dbproxy/backend-certs/batch/tls.key': 'orders-batch-cert:tls.key',
      '/var/run/secrets/dbproxy/backend-passwords/app': 'db-passwords:app',
      '/var/run/secrets/dbproxy/backend-passwords/report': 'db-passwords:report',
      '/var/run/secrets/dbproxy/client-ca/ca.crt': 'client-ca:bundle.pem',
      '/var/run/secrets/dbproxy/tls/tls.crt': 'orders-tls:tls.crt',
      '/var/run/secrets/dbproxy/tls/tls.key': 'orders-tls:tls.key',
      '/var/run/secrets/dbproxy/users/app/password': 'orders-app:password',
      '/var/run/secrets/dbproxy/users/report/password': 'orders-report:pw',
    });
  });

  test.each<[string, Partial<DatabaseProxySpecInput>, boolean]>([
    ['defaults', {}, false],
    ['client TLS, backend TLS, separate passwords', { tls: { secretName: 'orders-tls', backend: {} }, backendAuth: { password: { secretName: 'db-pw' } } }, false],
    ['STS tokens only (verified by calling STS, not the Kubernetes API)', { tls: { secretName: 'orders-tls' }, clientAuth: { iamAuth: 'OPTIONAL', awsIam: { mappings: [{ arn: 'arn:aws:iam::123456789012:role/a', user: 'app' }] } } }, false],
    [
      'ServiceAccount mappings with iamAuth DISABLED (nothing verifies tokens)',
      { tls: { secretName: 'orders-tls' }, serviceAccountName: 'orders-proxy', clientAuth: { iamAuth: 'DISABLED', serviceAccounts: { mappings: [{ namespace: 'shop', serviceAccount: 'api', user: 'app' }] } } },
      false,
    ],
    ['ServiceAccount tokens (TokenReview needs the pod\'s API token)', allFeatures, true],
  ])('automountServiceAccountToken: %s', (_name, spec, automount) => {
    const pod = build(spec).spec.template.spec;
    expect(pod.automountServiceAccountToken).toBe(automount);
    const cfg = parseConfigYaml(buildConfigMap(exampleProxy(spec), { poolDivisor: 3 }).configMap.data['config.yaml']!);
    // The token is there exactly when the config asks the proxy to call TokenReview in-cluster.
    expect(cfg.serviceAccountAuth !== undefined && cfg.iamAuth !== 'DISABLED').toBe(automount);
    if (automount) expect(cfg.serviceAccountAuth!.kubeconfig).toBeUndefined();
  });

  test('client CA key is projected as ca.crt, read-only', () => {
    const d = build({ tls: { secretName: 'orders-tls', clientCaSecretRef: { name: 'client-ca', key: 'bundle.pem' } } });
    expect(d.spec.template.spec.volumes!.find((v) => v.name === 'client-ca')!.secret).toEqual({ secretName: 'client-ca', defaultMode: 0o440, items: [{ key: 'bundle.pem', path: 'ca.crt' }] });
    expect(proxyContainer(d).volumeMounts!.find((m) => m.name === 'client-ca')).toEqual({ name: 'client-ca', mountPath: '/var/run/secrets/dbproxy/client-ca', readOnly: true });
    // The default key.
    const byDefault = build({ tls: { secretName: 'orders-tls', clientCaSecretRef: { name: 'client-ca' } } });
    expect(byDefault.spec.template.spec.volumes!.find((v) => v.name === 'client-ca')!.secret!.items).toEqual([{ key: 'ca.crt', path: 'ca.crt' }]);
  });

  test('every backendAuth cert file in the rendered config is a file the Deployment mounts (one projected volume, one source per Secret)', () => {
    const dbp = exampleProxy({
      users: [
        { name: 'app', passwordSecretRef: { name: 'orders-app' } },
        { name: 'batch', passwordSecretRef: { name: 'orders-batch' }, backendCertificate: { secretName: 'batch-db-cert' } },
        { name: 'etl', clientAuth: 'cert', backendCertificate: { secretName: 'etl-db-cert' } },
      ],
      tls: { secretName: 'orders-tls', clientCaSecretRef: { name: 'client-ca' }, backend: { mode: 'verify-full' } },
    });
    const cfg = parseConfigYaml(buildConfigMap(dbp, { poolDivisor: 3 }).configMap.data['config.yaml']!);
    const d = buildDeployment(dbp, facts);
    const vol = d.spec.template.spec.volumes!.find((v) => v.name === 'backend-certs')!;
    const mount = proxyContainer(d).volumeMounts!.find((m) => m.name === 'backend-certs')!;
    expect(mount).toEqual({ name: 'backend-certs', mountPath: '/var/run/secrets/dbproxy/backend-certs', readOnly: true });
    expect(vol.projected).toEqual({
      defaultMode: 0o440,
      sources: [
        { secret: { name: 'batch-db-cert', items: [{ key: 'tls.crt', path: 'batch/tls.crt' }, { key: 'tls.key', path: 'batch/tls.key' }] } },
        { secret: { name: 'etl-db-cert', items: [{ key: 'tls.crt', path: 'etl/tls.crt' }, { key: 'tls.key', path: 'etl/tls.key' }] } },
      ],
    });
    const mounted = vol.projected!.sources.flatMap((s) => s.secret!.items!.map((i) => `${mount.mountPath}/${i.path}`));
    const named = cfg.users.flatMap((u) => (u.backendAuth.method === 'cert' ? [u.backendAuth.certFile!, u.backendAuth.keyFile!] : []));
    expect(named).toEqual(mounted);
    // No password for etl, so the users volume holds app's and batch's only.
    const users = d.spec.template.spec.volumes!.find((v) => v.name === 'users')!;
    expect(users.projected!.sources.map((s) => s.secret!.name)).toEqual(['orders-app', 'orders-batch']);
  });

  test('backend CA key is projected as ca.crt', () => {
    const d = build({ tls: { backend: { caSecretRef: { name: 'rds-ca', key: 'global-bundle.pem' } } } });
    expect(d.spec.template.spec.volumes!.find((v) => v.name === 'backend-ca')!.secret).toEqual({ secretName: 'rds-ca', defaultMode: 0o440, items: [{ key: 'global-bundle.pem', path: 'ca.crt' }] });
  });

  test('service account: the operator\'s, or the user\'s own', () => {
    expect(build().spec.template.spec.serviceAccountName).toBe('orders');
    expect(build({ serviceAccountName: 'shared' }).spec.template.spec.serviceAccountName).toBe('shared');
  });

  test('env: pod identity from the downward API; AWS_REGION for IAM backend auth', () => {
    expect(proxyContainer(build()).env!.map((e) => e.name)).toEqual(['POD_NAME', 'POD_NAMESPACE', 'POD_IP']);
    // Client token logins need nothing extra: STS is called at the URL in the token, TokenReview in-cluster.
    expect(proxyContainer(build(allFeatures)).env!.map((e) => e.name)).toEqual(['POD_NAME', 'POD_NAMESPACE', 'POD_IP']);
    const iamEnv = proxyContainer(build({ backendAuth: { iam: { region: 'eu-west-1' } } })).env!;
    expect(iamEnv.find((e) => e.name === 'AWS_REGION')).toEqual({ name: 'AWS_REGION', value: 'eu-west-1' });
  });

  test('resources and pod overrides pass through', () => {
    const affinity = { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [{ key: 'pool', operator: 'In', values: ['db'] }] }] } } };
    const d = build({
      resources: { requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '512Mi' } },
      pod: {
        affinity,
        tolerations: [{ key: 'dedicated', operator: 'Equal', value: 'db', effect: 'NoSchedule' }],
        topologySpreadConstraints: [{ maxSkew: 1, topologyKey: 'topology.kubernetes.io/zone', whenUnsatisfiable: 'DoNotSchedule' }],
        priorityClassName: 'system-cluster-critical',
      },
    });
    const pod = d.spec.template.spec;
    expect(proxyContainer(d).resources).toEqual({ requests: { cpu: '250m', memory: '256Mi' }, limits: { memory: '512Mi' } });
    expect(pod.affinity).toEqual(affinity);
    expect(pod.tolerations).toEqual([{ key: 'dedicated', operator: 'Equal', value: 'db', effect: 'NoSchedule' }]);
    expect(pod.topologySpreadConstraints).toEqual([
      {
        maxSkew: 1,
        topologyKey: 'topology.kubernetes.io/zone',
        whenUnsatisfiable: 'DoNotSchedule',
        labelSelector: { matchLabels: { 'app.kubernetes.io/name': 'dbproxy', 'app.kubernetes.io/instance': 'orders' } },
      },
    ]);
    expect(pod.priorityClassName).toBe('system-cluster-critical');
  });

  test('defaults: no resources, a soft spread over nodes', () => {
    const d = build();
    expect(proxyContainer(d).resources).toBeUndefined();
    expect(d.spec.template.spec.topologySpreadConstraints).toEqual([
      { maxSkew: 1, topologyKey: 'kubernetes.io/hostname', whenUnsatisfiable: 'ScheduleAnyway', labelSelector: { matchLabels: { 'app.kubernetes.io/name': 'dbproxy', 'app.kubernetes.io/instance': 'orders' } } },
    ]);
  });

  test('the builder does not share or modify the spec it reads', () => {
    const dbp = exampleProxy({ pod: { affinity: { a: { b: 1 } } } });
    const before = JSON.stringify(dbp);
    const d = buildDeployment(dbp, facts);
    (d.spec.template.spec.affinity as { a: { b: number } }).a.b = 2;
    expect(JSON.stringify(dbp)).toBe(before);
  });
});
