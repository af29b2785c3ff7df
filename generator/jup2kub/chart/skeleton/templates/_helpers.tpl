{{/*
Helpers shared by every template of a Jup2Kub chart. The templates are generic: everything
notebook-specific (steps, topics, images) is read from .Values, which the generator wrote.
All lookups of optional keys go through hasKey/dig so that `helm lint --strict` passes.
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
Effective configuration of one step: stepDefaults overlaid with steps.<name>, key by key, so
that false/0 overrides work (a generic merge would drop them). Returns YAML; use fromYaml.
Call with (dict "root" $ "name" $stepName).
*/}}
{{- define "jup2kub.step.config" -}}
{{- $d := .root.Values.stepDefaults }}
{{- $s := index .root.Values.steps .name }}
{{- $cfg := dict }}
{{- range $k := list "replicas" "timeoutSeconds" "terminationGracePeriodSeconds" "nodeSelector" "tolerations" "affinity" "priorityClassName" }}
{{- $_ := set $cfg $k (ternary (get $s $k) (get $d $k) (hasKey $s $k)) }}
{{- end }}
{{- range $k := list "autoscaling" "retry" "pdb" "env" "podAnnotations" "podLabels" }}
{{- $m := deepCopy (get $d $k) }}
{{- range $sk, $sv := (get $s $k | default dict) }}
{{- $_ := set $m $sk $sv }}
{{- end }}
{{- $_ := set $cfg $k $m }}
{{- end }}
{{- $res := dict }}
{{- range $k := list "requests" "limits" }}
{{- $m := deepCopy (dig $k dict $d.resources) }}
{{- range $rk, $rv := (dig "resources" $k dict $s) }}
{{- $_ := set $m $rk $rv }}
{{- end }}
{{- if $m }}
{{- $_ := set $res $k $m }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "resources" $res }}
{{- toYaml $cfg }}
{{- end }}

{{/* The most replicas any step can have (HPA max when autoscaling is on). */}}
{{- define "jup2kub.maxReplicas" -}}
{{- $max := 1 }}
{{- range $name := keys .Values.steps | sortAlpha }}
{{- $cfg := include "jup2kub.step.config" (dict "root" $ "name" $name) | fromYaml }}
{{- $n := $cfg.replicas | int }}
{{- if $cfg.autoscaling.enabled }}
{{- $n = $cfg.autoscaling.maxReplicas | int }}
{{- end }}
{{- $max = max $max $n }}
{{- end }}
{{- $max }}
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

{{/* Image reference: [registry/]repository[:tag][@digest]. Call with (dict "root" $ "image" $img). */}}
{{- define "jup2kub.image" -}}
{{- $registry := .root.Values.image.registry }}
{{- $ref := .image.repository }}
{{- if $registry }}
{{- $ref = printf "%s/%s" (trimSuffix "/" $registry) $ref }}
{{- end }}
{{- if .image.tag }}
{{- $ref = printf "%s:%s" $ref (toString .image.tag) }}
{{- end }}
{{- if .image.digest }}
{{- $ref = printf "%s@%s" $ref .image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{- define "jup2kub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jup2kub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Name of the PersistentVolumeClaim holding the shared state. */}}
{{- define "jup2kub.state.claimName" -}}
{{- if eq .Values.storage.mode "existingClaim" }}
{{- required "storage.existingClaim is required when storage.mode=existingClaim" .Values.storage.existingClaim }}
{{- else }}
{{- include "jup2kub.componentName" (dict "root" . "suffix" "state") }}
{{- end }}
{{- end }}

{{/* Cluster-scoped objects (StorageClass, PV) carry the namespace in their name. */}}
{{- define "jup2kub.clusterScopedName" -}}
{{- $suffix := .suffix }}
{{- $room := sub (sub 63 (len $suffix)) 1 | int }}
{{- printf "%s-%s" (printf "%s-%s" .root.Release.Namespace (include "jup2kub.fullname" .root) | trunc $room | trimSuffix "-") $suffix }}
{{- end }}

{{/* StorageClass of the state volume ("" = none/static binding). */}}
{{- define "jup2kub.state.storageClassName" -}}
{{- if .Values.storage.storageClassName }}
{{- .Values.storage.storageClassName }}
{{- else if eq .Values.storage.mode "local" }}
{{- include "jup2kub.clusterScopedName" (dict "root" . "suffix" "local") }}
{{- else if eq .Values.storage.mode "ebs" }}
{{- include "jup2kub.clusterScopedName" (dict "root" . "suffix" "ebs") }}
{{- else if and (eq .Values.storage.mode "efs") (not .Values.storage.efs.volumeHandle) }}
{{- include "jup2kub.clusterScopedName" (dict "root" . "suffix" "efs") }}
{{- end }}
{{- end }}

{{/*
All step pods on one node when the state volume is ReadWriteOnce (ebs, or local without a
pinned node): required podAffinity to the other step pods of this release.
*/}}
{{- define "jup2kub.state.colocate" -}}
{{- if or (eq .Values.storage.mode "ebs") (and (eq .Values.storage.mode "local") (not .Values.storage.local.nodeName)) -}}
true
{{- end }}
{{- end }}
