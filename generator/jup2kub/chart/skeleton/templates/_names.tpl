{{/*
Names of the chart's objects: chart, release-qualified full name, components.
Shared by every template of a Jup2Kub chart (split by concern, like bitnami's common chart).
The templates are generic: everything notebook-specific is read from .Values, which the
generator wrote. Lookups of optional keys go through hasKey/dig so `helm lint --strict` passes.
*/}}

{{/* Chart name, DNS-1123 label. */}}
{{- define "jup2kub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name (release + chart unless the release name already contains it). */}}
{{- define "jup2kub.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "jup2kub.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of a per-component object: <fullname>-<suffix>, with the fullname shortened (never the
suffix) so that the result stays a DNS label and distinct suffixes stay distinct.
Call with (dict "root" $ "suffix" "step-name" "max" 63).
*/}}
{{- define "jup2kub.componentName" -}}
{{- $max := default 63 .max }}
{{- $room := sub (sub $max (len .suffix)) 1 | int }}
{{- printf "%s-%s" (include "jup2kub.fullname" .root | trunc $room | trimSuffix "-") .suffix }}
{{- end }}

{{- define "jup2kub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jup2kub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Cluster-scoped objects (StorageClass, PV) carry the namespace in their name. */}}
{{- define "jup2kub.clusterScopedName" -}}
{{- $suffix := .suffix }}
{{- $room := sub (sub 63 (len $suffix)) 1 | int }}
{{- printf "%s-%s" (printf "%s-%s" .root.Release.Namespace (include "jup2kub.fullname" .root) | trunc $room | trimSuffix "-") $suffix }}
{{- end }}
