{{/*
Labels: the common set, pods' labels and selectors.
Shared by every template of a Jup2Kub chart (split by concern, like bitnami's common chart).
The templates are generic: everything notebook-specific is read from .Values, which the
generator wrote. Lookups of optional keys go through hasKey/dig so `helm lint --strict` passes.
*/}}

{{/* Common labels. */}}
{{- define "jup2kub.labels" -}}
helm.sh/chart: {{ include "jup2kub.chart" . }}
{{ include "jup2kub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ .Values.pipeline.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of pod templates: no chart version or appVersion, so that rebuilding the chart after a
notebook edit rolls only the steps whose image changed (and never Kafka).
*/}}
{{- define "jup2kub.podLabels" -}}
{{ include "jup2kub.selectorLabels" . }}
app.kubernetes.io/part-of: {{ .Values.pipeline.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels. */}}
{{- define "jup2kub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jup2kub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
