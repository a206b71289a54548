{{/* The chart's name, at most 63 characters. */}}
{{- define "rtsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name. */}}
{{- define "rtsync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "rtsync.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "rtsync.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "rtsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rtsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rtsync.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "rtsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* A pool's resource name: the release name and the vcluster, DNS-safe. */}}
{{- define "rtsync.poolName" -}}
{{- printf "%s-%s" (include "rtsync.fullname" .root) (.pool.vcluster | lower | replace "_" "-" | replace "." "-") | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding the catalog URL, the API token and the secrets key. */}}
{{- define "rtsync.secretName" -}}
{{- if .Values.secret.existingSecret }}
{{- .Values.secret.existingSecret }}
{{- else }}
{{- printf "%s-config" (include "rtsync.fullname" .) }}
{{- end }}
{{- end }}

{{- define "rtsync.objectStorageSecretName" -}}
{{- printf "%s-object-storage" (include "rtsync.fullname" .) }}
{{- end }}

{{- define "rtsync.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
