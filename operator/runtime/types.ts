// The few Kubernetes object shapes the operator builds and reads, as plain interfaces: field
// names and nesting follow the Kubernetes API (and @kubernetes/client-node's V1* types), so the
// objects serialize to what server-side apply expects. Only the fields the operator uses.

export interface OwnerReference {
  apiVersion: string;
  kind: string;
  name: string;
  uid: string;
  controller?: boolean;
  blockOwnerDeletion?: boolean;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: OwnerReference[];
  deletionTimestamp?: string;
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
}

export interface ServiceAccount {
  apiVersion: 'v1';
  kind: 'ServiceAccount';
  metadata: ObjectMeta;
  automountServiceAccountToken?: boolean;
}

export interface ConfigMap {
  apiVersion: 'v1';
  kind: 'ConfigMap';
  metadata: ObjectMeta;
  data: Record<string, string>;
}

export interface KeyToPath {
  key: string;
  path: string;
  mode?: number;
}

export interface Volume {
  name: string;
  configMap?: { name: string; items?: KeyToPath[]; defaultMode?: number };
  secret?: { secretName: string; items?: KeyToPath[]; defaultMode?: number; optional?: boolean };
  projected?: { sources: Array<{ secret?: { name: string; items?: KeyToPath[]; optional?: boolean } }>; defaultMode?: number };
  emptyDir?: { medium?: string; sizeLimit?: string };
}

export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
}

export interface EnvVar {
  name: string;
  value?: string;
  /** core/v1 EnvVarSource: fieldRef from the operator, anything from a user's spec.pod.env. */
  valueFrom?: { fieldRef?: { fieldPath: string; apiVersion?: string } } & Record<string, unknown>;
}

export interface HTTPGetProbe {
  httpGet: { path: string; port: number | string; scheme?: 'HTTP' | 'HTTPS' };
  initialDelaySeconds?: number;
  periodSeconds?: number;
  timeoutSeconds?: number;
  failureThreshold?: number;
  successThreshold?: number;
}

export interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  runAsGroup?: number;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  privileged?: boolean;
  capabilities?: { drop?: string[]; add?: string[] };
  seccompProfile?: { type: 'RuntimeDefault' | 'Localhost' | 'Unconfined' };
}

export interface PodSecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  runAsGroup?: number;
  fsGroup?: number;
  seccompProfile?: { type: 'RuntimeDefault' | 'Localhost' | 'Unconfined' };
}

export interface ResourceRequirements {
  limits?: Record<string, number | string>;
  requests?: Record<string, number | string>;
}

export interface Container {
  name: string;
  image: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  command?: string[];
  args?: string[];
  env?: EnvVar[];
  ports?: Array<{ name: string; containerPort: number; protocol?: 'TCP' | 'UDP' }>;
  volumeMounts?: VolumeMount[];
  livenessProbe?: HTTPGetProbe;
  readinessProbe?: HTTPGetProbe;
  startupProbe?: HTTPGetProbe;
  lifecycle?: { preStop?: { sleep?: { seconds: number } } };
  resources?: ResourceRequirements;
  securityContext?: SecurityContext;
  terminationMessagePolicy?: 'File' | 'FallbackToLogsOnError';
}

export interface PodSpec {
  serviceAccountName: string;
  automountServiceAccountToken?: boolean;
  enableServiceLinks?: boolean;
  securityContext?: PodSecurityContext;
  containers: Container[];
  volumes?: Volume[];
  terminationGracePeriodSeconds?: number;
  affinity?: Record<string, unknown>;
  tolerations?: Array<Record<string, unknown>>;
  topologySpreadConstraints?: Array<Record<string, unknown>>;
  priorityClassName?: string;
  nodeSelector?: Record<string, string>;
  imagePullSecrets?: Array<{ name: string }>;
}

export interface RollingUpdate {
  maxSurge: number;
  maxUnavailable: number;
}

export interface Deployment {
  apiVersion: 'apps/v1';
  kind: 'Deployment';
  metadata: ObjectMeta;
  spec: {
    replicas: number;
    selector: LabelSelector;
    minReadySeconds?: number;
    revisionHistoryLimit?: number;
    progressDeadlineSeconds?: number;
    strategy: { type: 'RollingUpdate'; rollingUpdate: RollingUpdate };
    template: { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec };
  };
}

export interface DeploymentCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason?: string;
  message?: string;
}

/** apps/v1 DeploymentStatus (the fields the operator reads). */
export interface DeploymentStatus {
  observedGeneration?: number;
  replicas?: number;
  updatedReplicas?: number;
  readyReplicas?: number;
  availableReplicas?: number;
  unavailableReplicas?: number;
  /** Pods of this Deployment that are terminating (Kubernetes 1.33+ with DeploymentReplicaSetTerminatingReplicas). */
  terminatingReplicas?: number;
  conditions?: DeploymentCondition[];
}

export interface ServicePort {
  name: string;
  port: number;
  targetPort: number | string;
  protocol: 'TCP';
}

export interface Service {
  apiVersion: 'v1';
  kind: 'Service';
  metadata: ObjectMeta;
  spec: {
    type: 'ClusterIP' | 'LoadBalancer' | 'NodePort';
    /** 'None' for a headless Service (DNS returns every pod's address). */
    clusterIP?: 'None';
    publishNotReadyAddresses?: boolean;
    selector: Record<string, string>;
    ports: ServicePort[];
  };
}

export interface PodDisruptionBudget {
  apiVersion: 'policy/v1';
  kind: 'PodDisruptionBudget';
  metadata: ObjectMeta;
  spec: {
    maxUnavailable: number;
    selector: LabelSelector;
    unhealthyPodEvictionPolicy?: 'IfHealthyBudget' | 'AlwaysAllow';
  };
}
