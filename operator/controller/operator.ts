// The operator process, assembled: API client, HTTP endpoints, leader election, and the
// controller, which runs only while this process leads (a standby keeps campaigning). Used by
// `dbproxy operator` (operator/cli.ts) and, in-process, by the tests.
import { pino, type Logger } from 'pino';
import { KubeClient, type RequestRecord } from '../runtime/client.js';
import { wallClock, type Clock } from '../../proxy/runtime/clock.js';
import { Controller } from './controller.js';
import { EventRecorder } from '../runtime/events.js';
import { startHttpServer, type OperatorHttpServer } from './httpServer.js';
import { defaultIdentity, LeaderElector } from '../runtime/leaderElection.js';
import { OperatorMetrics } from './metrics.js';
import { fetchStats, type StatsFetcher } from './statsReader.js';

export interface LeaderElectionConfig {
  /** Namespace of the Lease. */
  namespace: string;
  /** Name of the Lease. Default "dbproxy-operator". */
  name?: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

export interface OperatorOptions {
  /** A ready client; otherwise one is made from kubeconfig / inCluster. */
  client?: KubeClient;
  kubeconfig?: string;
  inCluster?: boolean;
  /** Watch one namespace; default all namespaces. */
  namespace?: string;
  /** Lease-based leader election; false runs the controller at once (one replica only!). */
  leaderElection: LeaderElectionConfig | false;
  /** This process in the Lease and in Events. Default <POD_NAME or hostname>_<random>. */
  identity?: string;
  /** Proxy image when a DatabaseProxy sets none. */
  defaultImage: string;
  /** Poll /stats and write status changes at most this often. Default 10 s. */
  statusIntervalMs?: number;
  statsTimeoutMs?: number;
  statsPort?: number;
  /** HTTP endpoints (/healthz, /readyz, /metrics); port 0 picks one; omit for none. */
  http?: { host: string; port: number };
  workers?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  watchBackoffBaseMs?: number;
  watchBackoffMaxMs?: number;
  log?: Logger;
  clock?: Clock;
  fetchStats?: StatsFetcher;
  /** Every API request, as an RBAC (verb, resource) pair (tests compare them with the chart's ClusterRole). */
  onRequest?: (r: RequestRecord) => void;
  /** Also export Node.js process metrics. Default false. */
  processMetrics?: boolean;
}

export interface RunningOperator {
  identity: string;
  metrics: OperatorMetrics;
  client: KubeClient;
  /** The HTTP port, when `http` was given. */
  httpPort: number | undefined;
  isLeader(): boolean;
  /** The controller while leading. */
  controller(): Controller | undefined;
  /** Stops everything; `releaseLease: false` leaves the Lease to expire, as a crash would. */
  stop(opts?: { releaseLease?: boolean }): Promise<void>;
}

export async function startOperator(opts: OperatorOptions): Promise<RunningOperator> {
  const log = opts.log ?? pino({ name: 'dbproxy-operator' });
  const clock = opts.clock ?? wallClock;
  const identity = opts.identity ?? defaultIdentity();
  const metrics = new OperatorMetrics({ defaultMetrics: opts.processMetrics ?? false });
  const client =
    opts.client ??
    KubeClient.create({
      ...(opts.kubeconfig ? { kubeconfig: opts.kubeconfig } : {}),
      ...(opts.inCluster ? { inCluster: true } : {}),
      ...(opts.onRequest ? { onRequest: opts.onRequest } : {}),
    });
  const events = new EventRecorder({ client, identity, log, clock });

  let controller: Controller | undefined;
  let stopping = false;
  // Leadership changes are serialized: a controller is fully stopped before another starts.
  let transition: Promise<void> = Promise.resolve();
  const startController = (): Promise<void> => {
    transition = transition.then(async () => {
      if (stopping || controller) return;
      controller = new Controller({
        client,
        log,
        clock,
        metrics,
        events,
        defaultImage: opts.defaultImage,
        fetchStats: opts.fetchStats ?? fetchStats,
        ...(opts.namespace ? { namespace: opts.namespace } : {}),
        ...(opts.statusIntervalMs !== undefined ? { statusIntervalMs: opts.statusIntervalMs } : {}),
        ...(opts.statsTimeoutMs !== undefined ? { statsTimeoutMs: opts.statsTimeoutMs } : {}),
        ...(opts.statsPort !== undefined ? { statsPort: opts.statsPort } : {}),
        ...(opts.workers !== undefined ? { workers: opts.workers } : {}),
        ...(opts.backoffBaseMs !== undefined ? { backoffBaseMs: opts.backoffBaseMs } : {}),
        ...(opts.backoffMaxMs !== undefined ? { backoffMaxMs: opts.backoffMaxMs } : {}),
        ...(opts.watchBackoffBaseMs !== undefined ? { watchBackoffBaseMs: opts.watchBackoffBaseMs } : {}),
        ...(opts.watchBackoffMaxMs !== undefined ? { watchBackoffMaxMs: opts.watchBackoffMaxMs } : {}),
      });
      metrics.leader.set(1);
      // Not awaited: the informers sync in the background; /readyz reports when they have.
      controller.start().catch((e: Error) => log.error({ err: e.message }, 'controller failed to start'));
    });
    return transition;
  };
  const stopController = (): Promise<void> => {
    transition = transition.then(async () => {
      const c = controller;
      controller = undefined;
      metrics.leader.set(0);
      if (c) await c.stop();
    });
    return transition;
  };

  const elector = opts.leaderElection
    ? new LeaderElector({
        client,
        namespace: opts.leaderElection.namespace,
        name: opts.leaderElection.name ?? 'dbproxy-operator',
        identity,
        log,
        clock,
        ...(opts.leaderElection.leaseDurationMs !== undefined ? { leaseDurationMs: opts.leaderElection.leaseDurationMs } : {}),
        ...(opts.leaderElection.renewDeadlineMs !== undefined ? { renewDeadlineMs: opts.leaderElection.renewDeadlineMs } : {}),
        ...(opts.leaderElection.retryPeriodMs !== undefined ? { retryPeriodMs: opts.leaderElection.retryPeriodMs } : {}),
        onStartedLeading: startController,
        onStoppedLeading: stopController,
      })
    : undefined;

  let httpServer: OperatorHttpServer | undefined;
  if (opts.http) {
    httpServer = await startHttpServer(opts.http, metrics.registry, {
      healthy: () => !stopping,
      ready: () => {
        if (stopping) return { ok: false, detail: 'stopping' };
        if (elector && !elector.isLeader()) return { ok: true, detail: 'standby (not the leader)' };
        if (!controller) return { ok: false, detail: 'starting' };
        return controller.hasSynced() ? { ok: true, detail: 'leader; caches synced' } : { ok: false, detail: 'leader; caches syncing' };
      },
    });
  }

  log.info(
    {
      identity,
      namespace: opts.namespace ?? '(all)',
      leaderElection: opts.leaderElection ? `${opts.leaderElection.namespace}/${opts.leaderElection.name ?? 'dbproxy-operator'}` : false,
      http: httpServer ? httpServer.port : undefined,
      api: client.server,
    },
    'dbproxy operator starting',
  );
  if (elector) elector.start();
  else await startController();

  return {
    identity,
    metrics,
    client,
    httpPort: httpServer?.port,
    isLeader: () => (elector ? elector.isLeader() : true),
    controller: () => controller,
    stop: async (sopts = {}) => {
      if (stopping) return;
      stopping = true;
      if (elector) await elector.stop({ release: sopts.releaseLease !== false });
      stopping = true;
      await stopController();
      await events.flush();
      await httpServer?.close();
      client.close();
      log.info({ identity }, 'dbproxy operator stopped');
    },
  };
}
