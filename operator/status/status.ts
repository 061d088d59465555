// The DatabaseProxy status, pure: from what the operator observed (the Deployment, each pod's
// /stats) and the previous status, the next one. Conditions follow metav1.Condition conventions:
// CamelCase reasons, human messages, lastTransitionTime that moves only when the status does.
import type { ProxyStats, TargetStats } from '../../proxy/contract/stats.js';
import type { Condition, ConditionStatus, DatabaseProxy, DatabaseProxyStatus, ReadersStatus, StatusCounts } from '../api/v1alpha1.js';
import { readersEnabled, selectorString } from '../desired/common.js';
import { budgetFits, poolBudget } from '../desired/poolDivisor.js';
import { readerServiceEndpoint, serviceEndpoint } from '../desired/service.js';
import type { DeploymentStatus } from '../runtime/types.js';

/** IAMReady only while the pods use AWS credentials (usesAwsIdentity); ReadersAvailable only with spec.readers.enabled. */
export const CONDITION_TYPES = ['Ready', 'Available', 'Progressing', 'Degraded', 'TargetReachable', 'IAMReady', 'ReadersAvailable'] as const;
export type ConditionType = (typeof CONDITION_TYPES)[number];

/** A failover as a proxy reports it in /stats (older proxies may omit it: then it is inferred from writer changes). */
export interface FailoverReport {
  lastFailover?: { at: string; durationMs: number } | null;
}

export interface PodStats {
  pod: string;
  /** Whether the pod is Ready in Kubernetes. Counts are summed over ready pods only; target health is read from every pod that answered. */
  ready?: boolean;
  stats: Omit<ProxyStats, 'lastFailover' | 'failovers'> & FailoverReport & { failovers?: number };
}

export interface ObservedDeployment {
  /** metadata.generation */
  generation?: number;
  /** spec.replicas as applied */
  specReplicas?: number;
  /** spec.progressDeadlineSeconds (Kubernetes' default 600 when unset) */
  progressDeadlineSeconds?: number;
  status?: DeploymentStatus;
}

/** The parts of a proxy pod podTrouble reads. */
export interface ObservedPod {
  metadata: { name: string };
  status?: {
    phase?: string;
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{
      restartCount?: number;
      state?: { waiting?: { reason?: string }; terminated?: { reason?: string; exitCode?: number } };
      lastState?: { terminated?: { reason?: string; exitCode?: number } };
    }>;
  };
}

/** Whether the pod's Ready condition is True. */
export function podIsReady(pod: ObservedPod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/** Waiting reasons of a container that is on its way up, not stuck. */
const STARTING_REASONS = new Set(['ContainerCreating', 'PodInitializing']);

/**
 * Why a proxy pod that is not ready is failing rather than starting, or undefined: its container
 * restarted (crashed, or was killed by its liveness probe), is stuck waiting (CrashLoopBackOff,
 * ImagePullBackOff, CreateContainerConfigError, ...), or the pod failed. A not-ready pod with none
 * of these is starting (a scale-up, a replaced pod). Pure.
 */
export function podTrouble(pod: ObservedPod): string | undefined {
  const st = pod.status;
  if (podIsReady(pod)) return undefined;
  if (st?.phase === 'Failed') return `${pod.metadata.name}: pod failed`;
  for (const c of st?.containerStatuses ?? []) {
    const waiting = c.state?.waiting?.reason;
    const last = c.lastState?.terminated ?? c.state?.terminated;
    const lastText = last ? ` (last exit: ${last.reason ?? 'Error'}${last.exitCode !== undefined ? `, code ${last.exitCode}` : ''})` : '';
    if (waiting && !STARTING_REASONS.has(waiting)) return `${pod.metadata.name}: ${waiting}${(c.restartCount ?? 0) > 0 ? `, restarted ${plural(c.restartCount!, 'time')}` : ''}${lastText}`;
    if ((c.restartCount ?? 0) > 0) return `${pod.metadata.name}: restarted ${plural(c.restartCount!, 'time')}${lastText}`;
  }
  return undefined;
}

export interface StatusInput {
  proxy: DatabaseProxy;
  /** The Deployment; undefined when it does not exist (yet). */
  deployment?: ObservedDeployment;
  /** /stats of the pods that answered. */
  stats: PodStats[];
  /** Running pods whose /stats could not be read. */
  statsErrors?: number;
  previous?: DatabaseProxyStatus;
  now: Date;
  /** The divisor in the ConfigMap (poolDivisor). */
  poolDivisor?: number;
  /** Spec fields the proxy cannot honour (buildConfigMap's `unsupported`), or reconcile errors to surface. */
  problems?: string[];
  /** Why a scale-up is held back (replicasToApply's reason when waiting). */
  scaleWaiting?: string;
  /** podTrouble of the proxy's pods that are failing (not merely starting). */
  failingPods?: string[];
}

/** Kubernetes' default Deployment spec.progressDeadlineSeconds. */
const DEFAULT_PROGRESS_DEADLINE_SECONDS = 600;

/** metav1.Time: RFC 3339, seconds precision. */
export function formatTime(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** "AUTH_FAILURE" -> "AuthFailure", "connection failed" -> "ConnectionFailed". */
export function camelCase(s: string): string {
  const words = s.split(/[^A-Za-z0-9]+/).filter(Boolean);
  const out = words.map((w) => w[0]!.toUpperCase() + w.slice(1).toLowerCase()).join('');
  return /^[A-Za-z]/.test(out) ? out : `Reason${out}`;
}

function formatDuration(ms: number): string {
  return `${(Math.round(ms / 100) / 10).toFixed(1)}s`;
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export function sumCounts(stats: PodStats[]): Required<StatusCounts> {
  const c = { clientConnections: 0, databaseConnections: 0, borrowed: 0, pinned: 0, waiting: 0, borrowTimeouts: 0 };
  for (const { stats: s, ready } of stats) {
    if (ready === false) continue;
    c.clientConnections += s.clientConnections;
    c.databaseConnections += s.databaseConnections;
    c.borrowed += s.borrowed;
    c.pinned += s.pinned;
    c.waiting += s.waiting;
    c.borrowTimeouts += s.borrowTimeouts;
  }
  return c;
}

/** The writer most pods report (ties: the lexically first), or undefined. */
function majorityWriter(stats: PodStats[]): string | undefined {
  const votes = new Map<string, number>();
  for (const { stats: s } of stats) if (s.writer) votes.set(s.writer, (votes.get(s.writer) ?? 0) + 1);
  return [...votes].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]?.[0];
}

interface Verdict {
  status: ConditionStatus;
  reason: string;
  message: string;
}

/**
 * Whether a pod has not yet finished its first round of target checks: it has no writer and no
 * verdict about one (the proxy reports writerProblem once a finished round found no writer), and
 * something is still unobserved (a target not yet checked is UNKNOWN; while the first DNS lookup
 * runs there are no targets at all). Such a pod is starting, not failing: its readiness is off
 * until it finds the writer, and the wait ends when the check answers or times out, with a writer
 * or a verdict. Pure.
 */
export function writerCheckPending(s: Pick<ProxyStats, 'writer' | 'writerProblem' | 'targets'>): boolean {
  if (s.writer || s.writerProblem) return false;
  return s.targets.length === 0 || s.targets.some((t) => t.state === 'UNKNOWN');
}

function targetVerdict(stats: PodStats[], statsErrors: number): Verdict & { partial: boolean } {
  if (stats.length === 0) {
    return statsErrors > 0
      ? { status: 'Unknown', reason: 'StatsUnavailable', message: `could not read /stats from ${plural(statsErrors, 'pod')}`, partial: false }
      : { status: 'Unknown', reason: 'NoStats', message: 'no proxy pod has reported /stats yet', partial: false };
  }
  const withWriter = stats.filter((p) => p.stats.writer);
  const checking = stats.filter((p) => writerCheckPending(p.stats));
  // Pods that finished checking and found no writer: the only ones that count against it.
  const without = stats.filter((p) => !p.stats.writer && !writerCheckPending(p.stats));
  const writer = majorityWriter(stats);
  const checkingText = checking.length > 0 ? `${plural(checking.length, 'pod')} ${checking.length === 1 ? 'has' : 'have'} not finished ${checking.length === 1 ? 'its' : 'their'} first check of the targets` : '';
  if (without.length === 0) {
    if (withWriter.length === 0) {
      return { status: 'Unknown', reason: 'WriterCheckPending', message: `no pod has finished its first check of the targets yet (${plural(checking.length, 'pod')} checking)`, partial: false };
    }
    return { status: 'True', reason: 'WriterAvailable', message: `writer ${writer} reachable from ${withWriter.length}/${stats.length} pods${checkingText ? `; ${checkingText}` : ''}`, partial: false };
  }
  // Why the others have no writer: the most frequent failure their checks saw. A target not yet
  // checked (UNKNOWN) is no failure.
  const failing: TargetStats[] = without.flatMap((p) => p.stats.targets.filter((t) => t.state === 'UNAVAILABLE'));
  const reasons = new Map<string, number>();
  for (const t of failing) if (t.reason) reasons.set(t.reason, (reasons.get(t.reason) ?? 0) + 1);
  const top = [...reasons].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]?.[0];
  const seen = new Map<string, string>();
  for (const t of failing) seen.set(t.endpoint, `${t.endpoint} ${t.state}${t.reason ? ` (${t.reason})` : ''}`);
  const detail = `${seen.size > 0 ? `: ${[...seen.values()].join(', ')}` : ''}${checkingText ? `; ${checkingText}` : ''}`;
  if (withWriter.length === 0) {
    return { status: 'False', reason: top ? camelCase(top) : 'NoWriter', message: `no pod has a writer${detail}`, partial: false };
  }
  return {
    status: 'True',
    reason: 'WriterReachableFromSomePods',
    message: `writer ${writer} reachable from ${withWriter.length}/${stats.length} pods${detail}`,
    partial: true,
  };
}

/** Whether the pods use AWS credentials (RDS IAM logins, or an IRSA role): then the status has IAMReady. */
export function usesAwsIdentity(proxy: DatabaseProxy): boolean {
  return proxy.spec.backendAuth.iam !== undefined || proxy.spec.iam?.roleArn !== undefined;
}

/** IAMReady from the pods' awsIdentity: True when every pod that answered has verified its identity. */
function iamVerdict(stats: PodStats[]): Verdict & { problem: boolean } {
  const ids = stats.flatMap((p) => (p.stats.awsIdentity ? [{ pod: p.pod, id: p.stats.awsIdentity }] : []));
  if (ids.length === 0) {
    return stats.length === 0
      ? { status: 'Unknown', reason: 'NoStats', message: 'no proxy pod has reported /stats yet', problem: false }
      : { status: 'Unknown', reason: 'IdentityNotReported', message: 'the proxy pods do not report an AWS identity (an older proxy image?)', problem: false };
  }
  const failed = ids.filter((x) => x.id.state === 'FAILED');
  if (failed.length > 0) {
    const reasons = new Map<string, number>();
    for (const f of failed) reasons.set(f.id.reason ?? 'StsError', (reasons.get(f.id.reason ?? 'StsError') ?? 0) + 1);
    const reason = [...reasons].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]![0];
    const messages = [...new Set(failed.map((f) => f.id.message ?? f.id.reason ?? 'failed'))];
    const who = failed.length === ids.length ? (ids.length === 1 ? '1 pod' : `all ${ids.length} pods`) : `${failed.length}/${ids.length} pods`;
    // STS out of reach after the credentials were verified is a blip, not a broken setup: the
    // credentials in hand keep working until they expire.
    const problem = failed.some((f) => f.id.reason !== 'StsUnreachable' || !f.id.lastVerifiedAt);
    return { status: 'False', reason: /^[A-Za-z][A-Za-z0-9]*$/.test(reason) ? reason : camelCase(reason), message: `${who}: ${messages.join('; ')}`, problem };
  }
  if (ids.some((x) => x.id.state !== 'VERIFIED')) {
    return { status: 'Unknown', reason: 'IdentityCheckPending', message: `${ids.filter((x) => x.id.state === 'VERIFIED').length}/${ids.length} pods have checked their AWS identity`, problem: false };
  }
  const roles = [...new Set(ids.map((x) => x.id.roleArn ?? x.id.arn ?? ''))];
  return { status: 'True', reason: 'IdentityVerified', message: `the pods run as ${roles.join(', ')} (STS: ${ids[0]!.id.arn})`, problem: false };
}

/** Whole seconds: lag moves with every health check, and a status that changed on every poll would be written on every poll. */
const wholeSeconds = (ms: number): string => `${Math.round(ms / 1000)}s`;

/** The most frequent value (ties: the lexically first), or undefined. */
function mostFrequent(values: readonly string[]): string | undefined {
  const n = new Map<string, number>();
  for (const v of values) n.set(v, (n.get(v) ?? 0) + 1);
  return [...n].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]?.[0];
}

/**
 * The read-only endpoint as the ready pods report it, and ReadersAvailable. A standby counts as
 * available only if every ready pod serving the endpoint has it in rotation: the <name>-ro Service
 * spreads clients over all of them, and a client on a pod without one waits (or is served by the
 * writer with fallbackToWriter). `problem` is set when read-only clients cannot be served now
 * (no standby in rotation on some pod, no fallback): Degraded then, since the user asked for the
 * endpoint; Ready is about the main endpoint and does not look at it. Pure.
 */
export function readersVerdict(proxy: DatabaseProxy, stats: PodStats[]): { status: ReadersStatus; verdict: Verdict; problem?: string } | undefined {
  if (!readersEnabled(proxy)) return undefined;
  const fallback = proxy.spec.readers?.fallbackToWriter === true;
  const readyStats = stats.filter((p) => p.ready !== false);
  // A pod still on its first round of target checks has not judged any standby yet.
  const judged = readyStats.filter((p) => !writerCheckPending(p.stats));
  // Pods started from a config without the read-only listener (a rollout that turns it on is
  // replacing them): the <name>-ro Service leads there too, and nothing listens.
  const serving = judged.filter((p) => p.stats.readers !== undefined);
  const notServing = judged.filter((p) => p.stats.readers === undefined);

  // Per standby, over the serving pods: in rotation on all of them, why not, its worst lag.
  const seen = new Map<string, { inRotation: number; reasons: string[]; lagMs: number | null; lagBytes: number | null }>();
  for (const p of serving) {
    for (const t of p.stats.targets) {
      if (t.role !== 'reader' || !t.reader) continue;
      const e = seen.get(t.endpoint) ?? { inRotation: 0, reasons: [], lagMs: null, lagBytes: null };
      if (t.reader.state === 'AVAILABLE') e.inRotation++;
      else e.reasons.push(t.reader.reason ?? t.reader.state);
      if (t.reader.lagMs !== null) e.lagMs = Math.max(e.lagMs ?? 0, t.reader.lagMs);
      if (t.reader.lagBytes !== null) e.lagBytes = Math.max(e.lagBytes ?? 0, t.reader.lagBytes);
      seen.set(t.endpoint, e);
    }
  }
  const targets = [...seen]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([endpoint, e]) => {
      const available = e.inRotation === serving.length;
      // A pod that does not see the standby at all (not in recovery, unreachable from there) has no reason to report.
      const reason = available ? undefined : (mostFrequent(e.reasons) ?? 'NOT_A_STANDBY_ON_SOME_PODS');
      return {
        endpoint,
        available,
        ...(reason ? { reason } : {}),
        ...(e.lagMs !== null ? { lag: wholeSeconds(e.lagMs) } : {}),
        ...(e.lagBytes !== null ? { lagBytes: e.lagBytes } : {}),
      };
    });
  const inRotation = targets.filter((t) => t.available);
  const lags = inRotation.flatMap((t) => (seen.get(t.endpoint)!.lagMs !== null ? [seen.get(t.endpoint)!.lagMs!] : []));
  const sum = (f: (r: NonNullable<ProxyStats['readers']>) => number) => serving.reduce((a, p) => a + f(p.stats.readers!), 0);
  const status: ReadersStatus = {
    endpoint: readerServiceEndpoint(proxy),
    standbys: targets.length,
    available: inRotation.length,
    ...(lags.length > 0 ? { lag: wholeSeconds(Math.max(...lags)) } : {}),
    databaseConnections: sum((r) => r.databaseConnections),
    borrowed: sum((r) => r.borrowed),
    waiting: sum((r) => r.waiting),
    targets,
  };

  const standbyText = (t: (typeof targets)[number]) => `${t.endpoint} ${t.available ? 'in rotation' : t.reason}${t.lag ? ` (lag ${t.lag})` : ''}`;
  if (readyStats.length === 0) return { status, verdict: { status: 'Unknown', reason: 'NoStats', message: 'no ready proxy pod has reported /stats yet' } };
  if (judged.length === 0) {
    return { status, verdict: { status: 'Unknown', reason: 'ReadersCheckPending', message: `no ready pod has finished its first check of the targets yet (${plural(readyStats.length, 'pod')} checking)` } };
  }
  const outside = notServing.length > 0 ? `; ${plural(notServing.length, 'ready pod')} without the read-only listener yet (started before spec.readers.enabled; the rollout replaces ${notServing.length === 1 ? 'it' : 'them'})` : '';
  if (serving.length === 0) {
    return { status, verdict: { status: 'Unknown', reason: 'ListenerPending', message: `no ready pod serves the read-only endpoint yet${outside}` } };
  }
  // Pods where a read-only client cannot get a standby now.
  const stranded = serving.filter((p) => !p.stats.readers!.pools.some((r) => r.usable));
  const where = `${stranded.length}/${serving.length} ready pods`;
  const why = targets.length === 0 ? 'no target is a healthy standby' : targets.map(standbyText).join(', ');
  if (stranded.length === 0) {
    const out = targets.filter((t) => !t.available);
    return {
      status,
      verdict: {
        status: 'True',
        reason: 'StandbysInRotation',
        message: `${inRotation.length}/${targets.length} standbys in rotation on every ready pod${status.lag ? `, largest lag ${status.lag}` : ''}${out.length > 0 ? `; out: ${out.map(standbyText).join(', ')}` : ''}${outside}`,
      },
    };
  }
  if (fallback) {
    return {
      status,
      verdict: { status: 'True', reason: 'FallbackToWriter', message: `no standby in rotation on ${where} (${why}): read-only clients there are served by the writer, in read-only transactions (fallbackToWriter)${outside}` },
    };
  }
  const message = `no standby in rotation on ${where} (${why}): read-only clients there wait up to pool.borrowTimeout, then get SQLSTATE 53300${outside}`;
  return { status, verdict: { status: 'False', reason: 'NoStandbyInRotation', message }, problem: `read-only endpoint: ${message}` };
}

function condition(type: ConditionType, v: Verdict, generation: number | undefined, previous: Condition[] | undefined, now: Date): Condition {
  const prev = previous?.find((c) => c.type === type);
  const c: Condition = {
    type,
    status: v.status,
    lastTransitionTime: prev && prev.status === v.status ? prev.lastTransitionTime : formatTime(now),
    reason: v.reason,
    message: v.message,
  };
  if (generation !== undefined) c.observedGeneration = generation;
  return c;
}

/** The Deployment's replica counts, 0 where it reports none (no Deployment yet: all 0). */
interface Replicas {
  /** spec.replicas of the DatabaseProxy. */
  desired: number;
  ready: number;
  available: number;
  updated: number;
  total: number;
  terminating: number;
}

function replicaCounts(proxy: DatabaseProxy, d: ObservedDeployment | undefined): Replicas {
  const st = d?.status ?? {};
  return {
    desired: proxy.spec.replicas,
    ready: st.readyReplicas ?? 0,
    available: st.availableReplicas ?? 0,
    updated: st.updatedReplicas ?? 0,
    total: st.replicas ?? 0,
    terminating: st.terminatingReplicas ?? 0,
  };
}

/** What the pods' /stats say about the database: the writer and the pool budget (kept from the previous status while no pod reports them). */
interface PoolFacts {
  writer?: string;
  targetMaxConnections?: number;
  budget?: number;
}

function poolFacts(input: StatusInput): PoolFacts {
  const { proxy, previous } = input;
  const writer = majorityWriter(input.stats) ?? previous?.writer;
  const maxConns = input.stats.map((p) => p.stats.pool.targetMaxConnections).filter((v): v is number => v !== null);
  const targetMaxConnections = maxConns.length > 0 ? Math.max(...maxConns) : previous?.targetMaxConnections;
  const budget = targetMaxConnections !== undefined ? poolBudget(targetMaxConnections, proxy.spec.pool.maxConnectionsPercent) : undefined;
  return {
    ...(writer !== undefined ? { writer } : {}),
    ...(targetMaxConnections !== undefined ? { targetMaxConnections } : {}),
    ...(budget !== undefined ? { budget } : {}),
  };
}

/** The lines the condition messages share. */
interface Summaries {
  /** "3/3 replicas ready" */
  replicas: string;
  /** "12 clients, 2 borrowed, 0 pinned, 0 waiting" */
  counts: string;
}

function availableCondition(d: ObservedDeployment | undefined, r: Replicas, text: Summaries): Verdict {
  if (!d) return { status: 'False', reason: 'DeploymentNotFound', message: 'the proxy Deployment does not exist yet' };
  return r.ready >= 1
    ? { status: 'True', reason: 'ReplicasReady', message: `${text.replicas}; ${text.counts}` }
    : { status: 'False', reason: 'NoReplicasReady', message: `${text.replicas}` };
}

/** Progressing, and the two rollout problems Degraded reports. */
interface Rollout {
  verdict: Verdict;
  /** The Deployment gave up (ProgressDeadlineExceeded): the verdict's message says why. */
  deadlineExceeded: boolean;
  /** Why fewer replicas are available than asked for, once that is a problem rather than pods on their way. */
  unavailable?: string;
}

function progressingCondition(input: StatusInput, r: Replicas): Rollout {
  const { deployment: d, previous, now } = input;
  const st = d?.status ?? {};
  const { desired, available, updated, total } = r;
  const deadline = st.conditions?.find((c) => c.type === 'Progressing' && c.status === 'False' && c.reason === 'ProgressDeadlineExceeded');
  const observedLatest = d !== undefined && (st.observedGeneration ?? 0) >= (d.generation ?? 0);
  // The Deployment controller keeps Progressing=NewReplicaSetAvailable after a rollout finished,
  // also when a pod later fails: then the rollout is done but the proxy is short of replicas.
  const finishedBefore = st.conditions?.some((c) => c.type === 'Progressing' && c.status === 'True' && c.reason === 'NewReplicaSetAvailable') ?? false;
  const rolloutDone =
    d !== undefined && observedLatest && d.specReplicas === desired && total === desired && updated === total && r.terminating === 0 && (available >= desired || finishedBefore);
  // Fewer available replicas than asked for, with the Deployment done updating and counting: a
  // failing pod is a problem now; otherwise pods are on their way (a scale-up, a replaced pod,
  // minReadySeconds), which is progress, as kubectl rollout status and Argo CD see it, until it
  // has lasted longer than the Deployment's progress deadline.
  const failing = input.failingPods ?? [];
  const deadlineSeconds = d?.progressDeadlineSeconds ?? DEFAULT_PROGRESS_DEADLINE_SECONDS;
  const shortfall = rolloutDone && available < desired;
  const prevProgressing = previous?.conditions?.find((c) => c.type === 'Progressing');
  const progressingSince = prevProgressing?.status === 'True' ? Date.parse(prevProgressing.lastTransitionTime) : now.getTime();
  const podsStarting = shortfall && failing.length === 0 && now.getTime() - progressingSince < deadlineSeconds * 1000;
  const unavailable =
    shortfall && !podsStarting
      ? `${available}/${desired} replicas available: ${failing.length > 0 ? failing.join(', ') : `for more than ${deadlineSeconds}s (the Deployment's progress deadline)`}`
      : undefined;
  const rollout = (verdict: Verdict): Rollout => ({ verdict, deadlineExceeded: deadline !== undefined, ...(unavailable ? { unavailable } : {}) });

  if (deadline) return rollout({ status: 'False', reason: 'ProgressDeadlineExceeded', message: deadline.message ?? 'the rollout made no progress within its deadline' });
  if (!d) return rollout({ status: 'True', reason: 'Creating', message: 'creating the proxy Deployment' });
  if (input.scaleWaiting) {
    return rollout({ status: 'True', reason: 'WaitingForPoolShrink', message: `scaling to ${desired} once running pods use the smaller per-pod pool: ${input.scaleWaiting}` });
  }
  if (podsStarting) return rollout({ status: 'True', reason: 'WaitingForPods', message: `${available}/${desired} replicas available, ${r.ready} ready, ${total} running` });
  if (!rolloutDone) {
    const specReplicas = d.specReplicas ?? desired;
    const reason =
      specReplicas !== desired
        ? specReplicas < desired
          ? 'ScalingUp'
          : 'ScalingDown'
        : !observedLatest || updated < total
          ? 'RollingOut'
          : total < desired
            ? 'ScalingUp'
            : total > desired || r.terminating > 0
              ? 'ScalingDown'
              : 'WaitingForPods';
    return rollout({ status: 'True', reason, message: `${updated}/${desired} pods updated, ${available} available, ${total} running` });
  }
  return rollout({ status: 'False', reason: 'RolloutComplete', message: `all ${plural(desired, 'replica')} updated; ${available} available` });
}

/** The verdicts Degraded and Ready are made of. */
interface Verdicts {
  available: Verdict;
  rollout: Rollout;
  target: ReturnType<typeof targetVerdict>;
  iam: ReturnType<typeof iamVerdict> | undefined;
  readers: ReturnType<typeof readersVerdict>;
}

/**
 * Degraded: every problem, the first one names the reason. `mainDegraded` is whether the main
 * endpoint has one: a read-only endpoint without standbys degrades the proxy (the user asked for
 * it) but leaves the writer's clients served, so Ready does not follow it.
 */
function degradedCondition(input: StatusInput, pool: PoolFacts, v: Verdicts): { verdict: Verdict; mainDegraded: boolean } {
  const { proxy } = input;
  const problems: Array<[string, string]> = [];
  for (const p of input.problems ?? []) problems.push(['UnsupportedSpec', p]);
  if (v.rollout.deadlineExceeded) problems.push(['ProgressDeadlineExceeded', v.rollout.verdict.message]);
  // Before the target: a broken identity is why IAM logins to the database fail.
  if (v.iam?.problem) problems.push(['AwsIdentityFailed', `AWS identity: ${v.iam.message}`]);
  if (v.target.status === 'False') problems.push(['TargetUnreachable', v.target.message]);
  if (v.target.partial) problems.push(['TargetUnreachableFromSomePods', v.target.message]);
  if (v.rollout.unavailable) problems.push(['ReplicasUnavailable', v.rollout.unavailable]);
  if (pool.budget !== undefined && input.poolDivisor !== undefined && !budgetFits(pool.budget, input.poolDivisor)) {
    problems.push(['PoolBudgetTooSmall', `pool budget ${pool.budget} (max_connections ${pool.targetMaxConnections} x ${proxy.spec.pool.maxConnectionsPercent}%) is smaller than the ${input.poolDivisor} pods it is divided over`]);
  }
  if ((input.statsErrors ?? 0) > 0 && input.stats.length > 0) problems.push(['StatsUnavailable', `could not read /stats from ${plural(input.statsErrors!, 'pod')}`]);
  const mainDegraded = problems.length > 0;
  if (v.readers?.problem) problems.push(['ReadersUnavailable', v.readers.problem]);
  const verdict: Verdict =
    problems.length > 0 ? { status: 'True', reason: problems[0]![0], message: problems.map((p) => p[1]).join('; ') } : { status: 'False', reason: 'AsExpected', message: 'no problems found' };
  return { verdict, mainDegraded };
}

/** Ready: the summary of the main endpoint, the first of: a problem, no replica, a pause, no writer, a rollout. */
function readyCondition(input: StatusInput, degraded: { verdict: Verdict; mainDegraded: boolean }, v: Verdicts, writer: string | undefined, text: Summaries): Verdict {
  const readyStats = input.stats.filter((p) => p.ready !== false);
  const summary = `${text.replicas}; ${writer && v.target.status === 'True' ? `writer ${writer}; ` : ''}${text.counts}`;
  if (degraded.mainDegraded) return { status: 'False', reason: degraded.verdict.reason, message: `${degraded.verdict.message}; ${summary}` };
  if (v.available.status !== 'True') return { status: 'False', reason: v.available.reason, message: v.available.message };
  if (input.proxy.spec.paused) {
    // Deliberate, not a failure (Argo CD: Suspended). Pods pick the pause up from the ConfigMap,
    // which the kubelet refreshes within about a minute: until every ready pod reports it, Pausing.
    const paused = readyStats.filter((p) => p.stats.pause?.config ?? p.stats.paused).length;
    return readyStats.length > 0 && paused === readyStats.length
      ? { status: 'False', reason: 'Paused', message: `${plural(paused, 'pod')} paused (spec.paused): new transactions wait until spec.paused is false; ${summary}` }
      : { status: 'False', reason: 'Pausing', message: `${paused}/${readyStats.length} ready pods paused; the others pick up spec.paused from their config file within about a minute; ${summary}` };
  }
  if (readyStats.some((p) => p.stats.pause?.config)) {
    const still = readyStats.filter((p) => p.stats.pause?.config).length;
    return { status: 'False', reason: 'Resuming', message: `${plural(still, 'pod')} still paused by the previous config; they pick up spec.paused: false within about a minute; ${summary}` };
  }
  if (readyStats.length > 0 && readyStats.every((p) => p.stats.paused)) {
    // Every ready pod was PAUSEd from the admin console: deliberate, not a failure (Argo CD: Suspended).
    return { status: 'False', reason: 'Paused', message: `${plural(readyStats.length, 'pod')} paused (admin console PAUSE; RESUME continues); ${summary}` };
  }
  if (v.target.status !== 'True') return { status: 'False', reason: v.target.reason, message: `${v.target.message}; ${summary}` };
  if (v.rollout.verdict.status === 'True') return { status: 'False', reason: v.rollout.verdict.reason, message: `${v.rollout.verdict.message}; ${summary}` };
  return { status: 'True', reason: 'ProxyReady', message: summary };
}

/** The last failover: as the proxies report it, or inferred from a change of writer; otherwise as before. */
function failoverHistory(input: StatusInput, writer: string | undefined): Pick<DatabaseProxyStatus, 'lastFailoverTime' | 'lastFailoverDuration'> {
  const { previous, now } = input;
  const reported = input.stats
    .map((p): FailoverReport['lastFailover'] => p.stats.lastFailover)
    .filter((f): f is { at: string; durationMs: number } => !!f && !Number.isNaN(Date.parse(f.at)))
    .sort((a, b) => Date.parse(b.at) - Date.parse(a.at))[0];
  if (reported) return { lastFailoverTime: formatTime(new Date(reported.at)), lastFailoverDuration: formatDuration(reported.durationMs) };
  if (previous?.writer && writer && writer !== previous.writer) {
    const prevTarget = previous.conditions?.find((c) => c.type === 'TargetReachable');
    // Without a writer since the TargetReachable condition went False: that is how long it took.
    const duration = prevTarget && prevTarget.status === 'False' ? formatDuration(now.getTime() - Date.parse(prevTarget.lastTransitionTime)) : undefined;
    return { lastFailoverTime: formatTime(now), ...(duration ? { lastFailoverDuration: duration } : {}) };
  }
  return {
    ...(previous?.lastFailoverTime ? { lastFailoverTime: previous.lastFailoverTime } : {}),
    ...(previous?.lastFailoverDuration ? { lastFailoverDuration: previous.lastFailoverDuration } : {}),
  };
}

/** Computes the next status: the replica counts and pool facts, each condition from its own function, the failover history. */
export function computeStatus(input: StatusInput): DatabaseProxyStatus {
  const { proxy, deployment: d, previous, now } = input;
  const generation = proxy.metadata.generation;
  const r = replicaCounts(proxy, d);
  const counts = sumCounts(input.stats);
  const text: Summaries = {
    replicas: `${r.ready}/${r.desired} replicas ready`,
    counts: `${plural(counts.clientConnections, 'client')}, ${counts.borrowed} borrowed, ${counts.pinned} pinned, ${counts.waiting} waiting`,
  };
  const pool = poolFacts(input);

  const v: Verdicts = {
    available: availableCondition(d, r, text),
    rollout: progressingCondition(input, r),
    target: targetVerdict(input.stats, input.statsErrors ?? 0),
    iam: usesAwsIdentity(proxy) ? iamVerdict(input.stats) : undefined,
    readers: readersVerdict(proxy, input.stats),
  };
  const degraded = degradedCondition(input, pool, v);
  const ready = readyCondition(input, degraded, v, pool.writer, text);

  const prevConds = previous?.conditions;
  const conditions = [
    condition('Ready', ready, generation, prevConds, now),
    condition('Available', v.available, generation, prevConds, now),
    condition('Progressing', v.rollout.verdict, generation, prevConds, now),
    condition('Degraded', degraded.verdict, generation, prevConds, now),
    condition('TargetReachable', v.target, generation, prevConds, now),
    ...(v.iam ? [condition('IAMReady', v.iam, generation, prevConds, now)] : []),
    ...(v.readers ? [condition('ReadersAvailable', v.readers.verdict, generation, prevConds, now)] : []),
  ];
  const failover = failoverHistory(input, pool.writer);

  const status: DatabaseProxyStatus = {
    conditions,
    counts,
    endpoint: serviceEndpoint(proxy),
    replicas: r.total,
    readyReplicas: r.ready,
    selector: selectorString(proxy),
  };
  if (generation !== undefined) status.observedGeneration = generation;
  if (pool.writer) status.writer = pool.writer;
  if (pool.targetMaxConnections !== undefined) status.targetMaxConnections = pool.targetMaxConnections;
  if (pool.budget !== undefined) status.poolBudget = pool.budget;
  if (input.poolDivisor !== undefined) status.poolDivisor = input.poolDivisor;
  if (failover.lastFailoverTime) status.lastFailoverTime = failover.lastFailoverTime;
  if (failover.lastFailoverDuration) status.lastFailoverDuration = failover.lastFailoverDuration;
  if (v.readers) status.readers = v.readers.status;
  return status;
}
