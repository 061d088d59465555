{{/* Name of the release's objects: the release name, or <release>-dbproxy when it lacks "dbproxy". */}}
{{- define "dbproxy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 45 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 45 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "dbproxy.operatorName" -}}
{{- printf "%s-operator" (include "dbproxy.fullname" .) -}}
{{- end -}}

{{/* Not app.kubernetes.io/name=dbproxy: the proxy pods the operator makes carry that, with instance=<DatabaseProxy name>. */}}
{{- define "dbproxy.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "dbproxy.labels" -}}
{{ include "dbproxy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "dbproxy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "dbproxy.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "dbproxy.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
