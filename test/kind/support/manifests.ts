// What the kind end-to-end tests deploy next to the operator: PostgreSQL 15 as a primary and a
// streaming standby (the postgres:15 image: Docker Hub's with Docker, the local stand-in without),
// and the client pod the tests drive (clientDriver.ts). Every pod satisfies restricted Pod
// Security, so all of it runs in a namespace that enforces it.
import { CLIENT_IMAGE, restrictedContainer } from './kindCluster.js';

export const DB_USER = 'app';
export const DB_NAME = 'app';
export const DB_SECRET = 'db-app';
const PGDATA = '/var/lib/postgresql/data/pgdata';
const TLS_DIR = '/etc/postgresql-tls';

/**
 * TLS for PostgreSQL from a kubernetes.io/tls Secret. The kubelet writes the key root-owned with the
 * pod's fsGroup (999) able to read it (mode 0640), which PostgreSQL accepts for a root-owned key.
 */
export interface PostgresTls {
  secretName: string;
}
const tlsArgs = ['-c', 'ssl=on', '-c', `ssl_cert_file=${TLS_DIR}/tls.crt`, '-c', `ssl_key_file=${TLS_DIR}/tls.key`];
const tlsVolume = (t: PostgresTls) => ({ name: 'tls', secret: { secretName: t.secretName, defaultMode: 0o600 } });
const tlsMount = { name: 'tls', mountPath: TLS_DIR, readOnly: true };

/** uid/gid 999: the postgres user of the postgres image (and of the stand-in). */
const postgresPodSecurity = { runAsNonRoot: true, runAsUser: 999, runAsGroup: 999, fsGroup: 999, seccompProfile: { type: 'RuntimeDefault' } };

const passwordEnv = (name: string) => ({ name, valueFrom: { secretKeyRef: { name: DB_SECRET, key: 'password' } } });

function postgresDeployment(namespace: string, role: 'primary' | 'standby', container: Record<string, unknown>, volumes: unknown[] = []): unknown {
  const labels = { 'app.kubernetes.io/name': 'postgres', 'app.kubernetes.io/component': role };
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: `pg-${role}`, namespace, labels },
    spec: {
      replicas: 1,
      strategy: { type: 'Recreate' },
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          securityContext: postgresPodSecurity,
          terminationGracePeriodSeconds: 10,
          containers: [
            {
              name: 'postgres',
              image: 'postgres:15',
              imagePullPolicy: 'IfNotPresent',
              ports: [{ name: 'postgres', containerPort: 5432 }],
              readinessProbe: { exec: { command: ['pg_isready', '-h', '127.0.0.1', '-U', DB_USER, '-d', DB_NAME] }, periodSeconds: 1, failureThreshold: 3 },
              volumeMounts: [{ name: 'data', mountPath: '/var/lib/postgresql/data' }],
              securityContext: restrictedContainer(),
              ...container,
            },
          ],
          volumes: [{ name: 'data', emptyDir: {} }, ...volumes],
        },
      },
    },
  };
}

function service(namespace: string, role: string): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: `pg-${role}`, namespace },
    spec: { selector: { 'app.kubernetes.io/name': 'postgres', 'app.kubernetes.io/component': role }, ports: [{ name: 'postgres', port: 5432, targetPort: 'postgres' }] },
  };
}

/** The password Secret (PostgreSQL's, the proxy's and the clients'), and the primary with its Service. */
export function primaryManifests(namespace: string, o: { password: string; maxConnections: number; tls: PostgresTls }): unknown[] {
  return [
    { apiVersion: 'v1', kind: 'Secret', metadata: { name: DB_SECRET, namespace }, type: 'Opaque', stringData: { password: o.password } },
    {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'pg-init', namespace },
      // Run by the image's entrypoint after initdb: streaming replication for the standby.
      data: { '10-replication.sh': 'echo "host replication all all scram-sha-256" >>"$PGDATA/pg_hba.conf"\n' },
    },
    postgresDeployment(namespace, 'primary', {
      args: ['-c', `max_connections=${o.maxConnections}`, ...tlsArgs],
      env: [{ name: 'POSTGRES_USER', value: DB_USER }, { name: 'POSTGRES_DB', value: DB_NAME }, passwordEnv('POSTGRES_PASSWORD'), { name: 'PGDATA', value: PGDATA }],
      volumeMounts: [
        { name: 'data', mountPath: '/var/lib/postgresql/data' },
        { name: 'init', mountPath: '/docker-entrypoint-initdb.d', readOnly: true },
        tlsMount,
      ],
    }, [{ name: 'init', configMap: { name: 'pg-init' } }, tlsVolume(o.tls)]),
    service(namespace, 'primary'),
  ];
}

/** A hot standby streaming from the primary (pg_basebackup -R on first start), and its Service. */
export function standbyManifests(namespace: string, o: { maxConnections: number; tls: PostgresTls }): unknown[] {
  const script = [
    'set -eu',
    'if [ ! -s "$PGDATA/PG_VERSION" ]; then',
    '  pg_basebackup -h pg-primary -U "$PGUSER" -D "$PGDATA" -R -X stream -c fast',
    'fi',
    `exec postgres -c max_connections=${o.maxConnections} ${tlsArgs.join(' ')}`,
  ].join('\n');
  return [
    postgresDeployment(namespace, 'standby', {
      command: ['bash', '-c', script],
      env: [{ name: 'PGUSER', value: DB_USER }, passwordEnv('PGPASSWORD'), { name: 'PGDATA', value: PGDATA }],
      volumeMounts: [{ name: 'data', mountPath: '/var/lib/postgresql/data' }, tlsMount],
    }, [tlsVolume(o.tls)]),
    service(namespace, 'standby'),
  ];
}

export const CLIENT_POD = 'clients';
export const CLIENT_PORT = 8080;

/** The application: clientDriver.ts in the Dockerfile's build stage, as uid 1000 (node). */
export function clientPod(namespace: string): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: CLIENT_POD, namespace, labels: { 'app.kubernetes.io/name': 'clients' } },
    spec: {
      securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } },
      terminationGracePeriodSeconds: 5,
      containers: [
        {
          name: 'clients',
          image: CLIENT_IMAGE,
          // Built from the Dockerfile and loaded into the node by hack/kind/cluster.sh; never pulled.
          imagePullPolicy: 'Never',
          workingDir: '/src',
          command: ['node', 'dist/test/kind/support/clientDriver.js'],
          env: [{ name: 'PGUSER', value: DB_USER }, { name: 'PGDATABASE', value: DB_NAME }, passwordEnv('PGPASSWORD'), { name: 'PORT', value: String(CLIENT_PORT) }],
          ports: [{ name: 'http', containerPort: CLIENT_PORT }],
          readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 1 },
          securityContext: { ...restrictedContainer(), readOnlyRootFilesystem: true },
        },
      ],
    },
  };
}
