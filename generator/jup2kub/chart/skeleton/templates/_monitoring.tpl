{{/*
Monitoring: what the ServiceMonitor, the PrometheusRule and the Grafana dashboard share.
Shared by every template of a Jup2Kub chart (split by concern, like bitnami's common chart).
The templates are generic: everything notebook-specific is read from .Values, which the
generator wrote. Lookups of optional keys go through hasKey/dig so `helm lint --strict` passes.
*/}}

{{/*
PromQL label matchers of this release's steps: the runtime labels every family with `pipeline`
(and `step`); Prometheus adds the scraped target's `namespace`.
*/}}
{{- define "jup2kub.monitoring.matchers" -}}
namespace="{{ .Release.Namespace }}", pipeline="{{ .Values.pipeline.name }}"
{{- end }}

{{/*
The steps an operator expects to be running: replicas (or, autoscaled, minReplicas) above 0.
A step scaled to zero on purpose has no ready replica and is not alerted on. Returns a YAML list.
*/}}
{{- define "jup2kub.monitoring.runningSteps" -}}
{{- $running := list }}
{{- range $name := keys .Values.steps | sortAlpha }}
{{- $cfg := include "jup2kub.step.config" (dict "root" $ "name" $name) | fromYaml }}
{{- $min := $cfg.replicas | int }}
{{- if $cfg.autoscaling.enabled }}
{{- $min = $cfg.autoscaling.minReplicas | int }}
{{- end }}
{{- if gt $min 0 }}
{{- $running = append $running $name }}
{{- end }}
{{- end }}
{{- toYaml $running }}
{{- end }}
