// The operator's Prometheus metrics, in a Registry of its own (never prom-client's global one, so
// two operators in one process, as in tests, do not collide).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class OperatorMetrics {
  readonly registry = new Registry();
  readonly reconcileTotal: Counter<'result'>;
  readonly reconcileErrors: Counter<'reason'>;
  readonly reconcileDuration: Histogram<'result'>;
  readonly statusWrites: Counter;
  readonly statsFetchErrors: Counter;
  readonly watchRestarts: Counter<'resource' | 'reason'>;
  readonly relists: Counter<'resource' | 'reason'>;
  readonly leader: Gauge;
  readonly queueDepth: Gauge;
  readonly appliedObjects: Counter<'kind'>;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.reconcileTotal = new Counter({
      name: 'dbproxy_operator_reconcile_total',
      help: 'Reconciles of DatabaseProxy objects, by result (success, error).',
      labelNames: ['result'],
      registers,
    });
    this.reconcileErrors = new Counter({
      name: 'dbproxy_operator_reconcile_errors_total',
      help: 'Reconciles that failed, by reason (the API status reason, or the error kind).',
      labelNames: ['reason'],
      registers,
    });
    this.reconcileDuration = new Histogram({
      name: 'dbproxy_operator_reconcile_duration_seconds',
      help: 'How long one reconcile took, /stats reads and API calls included.',
      labelNames: ['result'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.statusWrites = new Counter({ name: 'dbproxy_operator_status_writes_total', help: 'DatabaseProxy status writes.', registers });
    this.statsFetchErrors = new Counter({ name: 'dbproxy_operator_stats_fetch_errors_total', help: 'Failed reads of a proxy pod\'s /stats.', registers });
    this.watchRestarts = new Counter({
      name: 'dbproxy_operator_watch_restarts_total',
      help: 'Watches re-established, by resource and reason (closed by the server, error).',
      labelNames: ['resource', 'reason'],
      registers,
    });
    this.relists = new Counter({
      name: 'dbproxy_operator_relists_total',
      help: 'Full lists by the informers, by resource and reason (initial, gone: 410 after a too-old resourceVersion).',
      labelNames: ['resource', 'reason'],
      registers,
    });
    this.leader = new Gauge({ name: 'dbproxy_operator_leader', help: '1 while this operator process is the leader.', registers });
    this.queueDepth = new Gauge({ name: 'dbproxy_operator_workqueue_depth', help: 'Keys waiting in the work queue.', registers });
    this.appliedObjects = new Counter({
      name: 'dbproxy_operator_applied_objects_total',
      help: 'Server-side applies of child objects, by kind.',
      labelNames: ['kind'],
      registers,
    });
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'dbproxy_operator_' });
  }
}
