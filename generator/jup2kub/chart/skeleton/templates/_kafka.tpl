{{/*
Kafka: the StatefulSet's names, the bootstrap list, and the pipeline topics' settings.
Shared by every template of a Jup2Kub chart (split by concern, like bitnami's common chart).
The templates are generic: everything notebook-specific is read from .Values, which the
generator wrote. Lookups of optional keys go through hasKey/dig so `helm lint --strict` passes.
*/}}

{{/* Kafka StatefulSet name: <= 52 chars so that controller-revision-hash labels fit. */}}
{{- define "jup2kub.kafka.name" -}}
{{- include "jup2kub.componentName" (dict "root" . "suffix" "kafka" "max" 52) }}
{{- end }}

{{- define "jup2kub.kafka.headless" -}}
{{- printf "%s-headless" (include "jup2kub.kafka.name" .) }}
{{- end }}

{{/* The in-cluster bootstrap list: every broker by its stable pod DNS name. */}}
{{- define "jup2kub.kafka.bootstrapServers" -}}
{{- if .Values.kafka.enabled }}
{{- $name := include "jup2kub.kafka.name" . }}
{{- $svc := include "jup2kub.kafka.headless" . }}
{{- $servers := list }}
{{- range $i := until (int .Values.kafka.nodes) }}
{{- $servers = append $servers (printf "%s-%d.%s.%s.svc.%s:%d" $name $i $svc $.Release.Namespace $.Values.clusterDomain (int $.Values.kafka.ports.client)) }}
{{- end }}
{{- join "," $servers }}
{{- else }}
{{- required "kafka.bootstrapServers is required when kafka.enabled=false" .Values.kafka.bootstrapServers }}
{{- end }}
{{- end }}

{{/* Replication factor of the pipeline topics (empty: the broker default). */}}
{{- define "jup2kub.topics.replicationFactor" -}}
{{- if ne .Values.topics.replicationFactor nil }}
{{- .Values.topics.replicationFactor | int }}
{{- else if .Values.kafka.enabled }}
{{- .Values.kafka.nodes | int }}
{{- end }}
{{- end }}

{{/*
min.insync.replicas of the pipeline topics (empty: the broker default): 2 from replication
factor 3 on (an acks=all write survives losing one broker), nothing below. The runtime's
contract.config.min_insync_replicas computes the same.
*/}}
{{- define "jup2kub.topics.minInsyncReplicas" -}}
{{- $rf := include "jup2kub.topics.replicationFactor" . }}
{{- if and $rf (ge (int $rf) 3) }}
{{- min 2 (sub (int $rf) 1) }}
{{- end }}
{{- end }}

{{/* Partitions per topic: at least the most replicas a step can have, so every replica gets work. */}}
{{- define "jup2kub.topics.partitions" -}}
{{- max (int .Values.topics.partitions) (include "jup2kub.maxReplicas" . | int) }}
{{- end }}

{{/* Every topic of the pipeline, sorted, space-separated. */}}
{{- define "jup2kub.topics.all" -}}
{{- $topics := dict .Values.topics.runs true .Values.topics.status true .Values.topics.deadLetter true }}
{{- range $name, $step := .Values.steps }}
{{- range $t := concat $step.inputTopics $step.outputTopics }}
{{- $_ := set $topics $t true }}
{{- end }}
{{- end }}
{{- keys $topics | sortAlpha | join " " }}
{{- end }}
