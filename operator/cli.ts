// `dbproxy operator`: flags and environment to OperatorOptions, signals to a graceful stop.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { parseDuration, splitHostPort } from '../proxy/contract/config.js';
import { startOperator } from './controller/operator.js';
import { KubeClient } from './runtime/client.js';

export const OPERATOR_USAGE = `usage: dbproxy operator [flags]

Runs the Kubernetes operator: watches DatabaseProxy resources and rolls out their proxies.

  --kubeconfig PATH                 kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else in-cluster)
  --namespace NS                    watch only this namespace (env WATCH_NAMESPACE; default: all namespaces)
  --default-image IMAGE             proxy image for DatabaseProxies that set none (env DBPROXY_DEFAULT_IMAGE; required)
  --leader-elect / --no-leader-elect
                                    Lease-based leader election (default on; turn off only with one replica)
  --leader-election-id NAME         name of the Lease (default dbproxy-operator)
  --leader-election-namespace NS    namespace of the Lease (env POD_NAMESPACE; default: the pod's namespace)
  --lease-duration DUR              default 15s
  --renew-deadline DUR              default 10s
  --retry-period DUR                default 2s
  --status-interval DUR             poll pods' /stats and write status at most this often (default 10s)
  --http-listen HOST:PORT           /healthz, /readyz, /metrics (default 0.0.0.0:8080)
  --workers N                       concurrent reconciles (default 2)
  --log-level LEVEL                 fatal|error|warn|info|debug|trace (default info)
  -h, --help                        print this help`;

const IN_CLUSTER_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

function duration(flag: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  const ms = parseDuration(v);
  if (ms === undefined || ms <= 0) throw new Error(`--${flag}: invalid duration ${JSON.stringify(v)} (e.g. 500ms, 10s, 1m)`);
  return ms;
}

export interface OperatorFlags {
  help: boolean;
  kubeconfig?: string;
  /** Empty: all namespaces. */
  namespace: string;
  defaultImage: string;
  leaderElect: boolean;
  leaderElectionId: string;
  /** Undefined: the pod's namespace (in-cluster file), else the kubeconfig context's, else "default". */
  leaderElectionNamespace?: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  statusIntervalMs: number;
  httpListen: { host: string; port: number };
  workers: number;
  logLevel: string;
}

/** Flags and environment to settings; throws with a message naming the bad flag. Pure. */
export function parseOperatorFlags(args: string[], env: NodeJS.ProcessEnv = {}): OperatorFlags {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    allowNegative: true,
    options: {
      kubeconfig: { type: 'string' },
      namespace: { type: 'string' },
      'default-image': { type: 'string' },
      'leader-elect': { type: 'boolean', default: true },
      'leader-election-id': { type: 'string' },
      'leader-election-namespace': { type: 'string' },
      'lease-duration': { type: 'string' },
      'renew-deadline': { type: 'string' },
      'retry-period': { type: 'string' },
      'status-interval': { type: 'string' },
      'http-listen': { type: 'string' },
      workers: { type: 'string' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const help = values.help === true;
  const defaultImage = values['default-image'] ?? env.DBPROXY_DEFAULT_IMAGE ?? '';
  if (!defaultImage && !help) throw new Error('--default-image (or DBPROXY_DEFAULT_IMAGE) is required');
  const listen = splitHostPort(values['http-listen'] ?? '0.0.0.0:8080', true);
  if (!listen) throw new Error('--http-listen must be host:port');
  const workers = Number(values.workers ?? '2');
  if (!Number.isInteger(workers) || workers < 1 || workers > 32) throw new Error('--workers must be 1-32');
  const logLevel = values['log-level'] ?? env.LOG_LEVEL ?? 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) throw new Error(`--log-level: unknown level ${logLevel}`);
  const flags: OperatorFlags = {
    help,
    namespace: values.namespace ?? env.WATCH_NAMESPACE ?? '',
    defaultImage,
    leaderElect: values['leader-elect'] !== false,
    leaderElectionId: values['leader-election-id'] ?? 'dbproxy-operator',
    leaseDurationMs: duration('lease-duration', values['lease-duration'], 15_000),
    renewDeadlineMs: duration('renew-deadline', values['renew-deadline'], 10_000),
    retryPeriodMs: duration('retry-period', values['retry-period'], 2_000),
    statusIntervalMs: duration('status-interval', values['status-interval'], 10_000),
    httpListen: listen,
    workers,
    logLevel,
  };
  if (values.kubeconfig) flags.kubeconfig = values.kubeconfig;
  const leNamespace = values['leader-election-namespace'] ?? env.POD_NAMESPACE;
  if (leNamespace) flags.leaderElectionNamespace = leNamespace;
  if (flags.leaderElect && !(flags.leaseDurationMs > flags.renewDeadlineMs && flags.renewDeadlineMs > flags.retryPeriodMs)) {
    throw new Error('--lease-duration must exceed --renew-deadline, which must exceed --retry-period');
  }
  return flags;
}

export async function runOperatorCommand(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let flags: OperatorFlags;
  try {
    flags = parseOperatorFlags(args, env);
  } catch (e) {
    process.stderr.write(`dbproxy operator: ${(e as Error).message}\n\n${OPERATOR_USAGE}\n`);
    return 2;
  }
  if (flags.help) {
    process.stdout.write(`${OPERATOR_USAGE}\n`);
    return 0;
  }
  const log = pino({ name: 'dbproxy-operator', level: flags.logLevel });
  let client: KubeClient;
  try {
    client = KubeClient.create(flags.kubeconfig ? { kubeconfig: flags.kubeconfig } : {});
  } catch (e) {
    process.stderr.write(`dbproxy operator: ${(e as Error).message}\n`);
    return 2;
  }
  let leNamespace = flags.leaderElectionNamespace;
  if (!leNamespace) {
    try {
      leNamespace = readFileSync(IN_CLUSTER_NAMESPACE_FILE, 'utf8').trim();
    } catch {
      leNamespace = client.contextNamespace ?? 'default';
    }
  }
  const op = await startOperator({
    client,
    log,
    defaultImage: flags.defaultImage,
    ...(flags.namespace ? { namespace: flags.namespace } : {}),
    leaderElection: flags.leaderElect
      ? { namespace: leNamespace, name: flags.leaderElectionId, leaseDurationMs: flags.leaseDurationMs, renewDeadlineMs: flags.renewDeadlineMs, retryPeriodMs: flags.retryPeriodMs }
      : false,
    statusIntervalMs: flags.statusIntervalMs,
    http: flags.httpListen,
    workers: flags.workers,
    processMetrics: true,
  });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'received signal; stopping');
      op.stop().then(
        () => resolve(0),
        (e: Error) => {
          log.error({ err: e.message }, 'stopping failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
}
