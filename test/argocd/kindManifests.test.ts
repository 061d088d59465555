// The manifests of `make e2e-kind` (hack/kind/e2e.sh, which runs on kind: with Docker, or here
// with podman) checked in a second: the DatabaseProxy against the CRD's own schema and the
// operator's pure builders (a spec the operator would refuse would never become Ready), and the
// names that tie the manifests, the script and the chart together, so that a broken manifest shows
// up in the unit tests and not only minutes into a kind run.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { applyDefaults, validate } from '../../operator/api/schema.js';
import { API_VERSION, KIND, specSchema, withDefaults, type DatabaseProxy } from '../../operator/api/v1alpha1.js';
import { paths } from '../../operator/desired/common.js';
import { desiredChildren } from '../../operator/desired/index.js';
import { parseConfigYaml } from '../../proxy/contract/config.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const read = (rel: string) => readFileSync(join(ROOT, rel), 'utf8');
type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: any };
const docs = (rel: string): Obj[] => parseAllDocuments(read(rel)).map((d) => d.toJS() as Obj);

const [dbpInput] = docs('hack/kind/databaseproxy.yaml');
const postgres = docs('hack/kind/postgres.yaml');
const [psqlPod] = docs('hack/kind/psql-pod.yaml');
const script = read('hack/kind/e2e.sh');
const find = (kind: string, name: string) => postgres.find((o) => o.kind === kind && o.metadata.name === name);

describe('hack/kind manifests', () => {
  test('the DatabaseProxy passes the CRD schema', () => {
    expect(dbpInput!.apiVersion).toBe(API_VERSION);
    expect(dbpInput!.kind).toBe(KIND);
    const spec = specSchema.json;
    expect(validate(applyDefaults(dbpInput!.spec, spec), spec)).toEqual([]);
    // The CEL rules the schema validator here does not evaluate.
    expect('host' in dbpInput!.spec.target !== 'endpoints' in dbpInput!.spec.target).toBe(true);
  });

  test('the operator would roll it out, and the proxy accepts the config it renders', () => {
    const dbp: DatabaseProxy = withDefaults({ ...(dbpInput as any), metadata: { ...dbpInput!.metadata, uid: 'e2e' } });
    const children = desiredChildren(dbp, { defaultImage: 'dbproxy:e2e', poolDivisor: dbp.spec.replicas + 1 });
    expect(children.unsupported).toEqual([]);
    const config = parseConfigYaml(children.configMap.data![paths.configKey]!);
    expect(config.targets).toEqual(['postgres.dbproxy-e2e.svc.cluster.local:5432']);
  });

  test('the proxy targets the PostgreSQL Service, and the password Secret is there', () => {
    const ns = dbpInput!.metadata.namespace!;
    const [svcName, svcNs] = (dbpInput!.spec.target.host as string).split('.');
    const svc = find('Service', svcName!);
    expect(svc?.metadata.namespace).toBe(svcNs);
    expect(svc!.spec.ports.map((p: { port: number }) => p.port)).toContain(dbpInput!.spec.target.port);
    expect(find('Namespace', ns)).toBeDefined();
    for (const u of dbpInput!.spec.users) {
      const secret = find('Secret', u.passwordSecretRef.name);
      expect(secret?.metadata.namespace).toBe(ns);
      expect(Object.keys(secret!.stringData)).toContain(u.passwordSecretRef.key ?? 'password');
    }
    // PostgreSQL's own user is the proxy's user, with the same Secret.
    const pg = find('Deployment', 'postgres')!.spec.template.spec.containers[0];
    expect(pg.env.find((e: { name: string }) => e.name === 'POSTGRES_USER').value).toBe(dbpInput!.spec.users[0].name);
    expect(pg.env.find((e: { name: string }) => e.name === 'POSTGRES_PASSWORD').valueFrom.secretKeyRef.name).toBe(dbpInput!.spec.users[0].passwordSecretRef.name);
  });

  test('psql connects to <name>.<namespace>.svc:5432 of that DatabaseProxy', () => {
    const { name, namespace } = dbpInput!.metadata;
    expect(psqlPod!.metadata.namespace).toBe(namespace);
    const args: string[] = psqlPod!.spec.containers[0].command;
    expect(args).toContain(`--dbname=host=${name}.${namespace}.svc port=5432 user=${dbpInput!.spec.users[0].name} dbname=app connect_timeout=10`);
    expect(args.some((a) => a.includes("'written through dbproxy'"))).toBe(true);
  });

  test('e2e.sh waits for the names the manifests use, and sets chart values that exist', () => {
    expect(script).toMatch(new RegExp(`^NS=${dbpInput!.metadata.namespace}$`, 'm'));
    expect(script).toMatch(new RegExp(`^DBP=${dbpInput!.metadata.name}$`, 'm'));
    expect(script).toContain(`kubectl wait pod/${psqlPod!.metadata.name} `);
    const values = parse(read('charts/dbproxy/values.yaml')) as Record<string, any>;
    const keys = [...script.matchAll(/--set ([A-Za-z.]+)=/g)].map((m) => m[1]!);
    expect(keys).toEqual(['image.repository', 'image.tag', 'image.pullPolicy', 'replicaCount']);
    for (const k of keys) expect(k.split('.').reduce<any>((o, p) => o?.[p], values)).toBeDefined();
  });
});
