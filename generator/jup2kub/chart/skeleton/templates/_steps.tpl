{{/*
Steps: a step's merged settings, replica bounds and image references.
Shared by every template of a Jup2Kub chart (split by concern, like bitnami's common chart).
The templates are generic: everything notebook-specific is read from .Values, which the
generator wrote. Lookups of optional keys go through hasKey/dig so `helm lint --strict` passes.
*/}}

{{/*
Effective configuration of one step: stepDefaults overlaid with steps.<name>, key by key, so
that false/0 overrides work (a generic merge would drop them). Returns YAML; use fromYaml.
Call with (dict "root" $ "name" $stepName).
*/}}
{{- define "jup2kub.step.config" -}}
{{- $d := .root.Values.stepDefaults }}
{{- $s := index .root.Values.steps .name }}
{{- $cfg := dict }}
{{- range $k := list "replicas" "timeoutSeconds" "guardMode" "guardMaxBytes" "terminationGracePeriodSeconds" "nodeSelector" "tolerations" "nodeFailureTolerationSeconds" "affinity" "spread" "priorityClassName" }}
{{- $_ := set $cfg $k (ternary (get $s $k) (get $d $k) (hasKey $s $k)) }}
{{- end }}
{{- $_ := set $cfg "cache" (ternary (get $s "cache") (dig "cache" true $d) (hasKey $s "cache")) }}
{{- range $k := list "autoscaling" "retry" "pdb" "env" "secretEnv" "podAnnotations" "podLabels" }}
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

{{/*
A step's code bundle (step.json), carried by the chart in files/steps/<name>/ and mounted from a
ConfigMap at runtime.codePath: the step image holds packages and data files only.
Call with (dict "root" $ "name" $stepName).
*/}}
{{- define "jup2kub.step.code" -}}
{{- $path := printf "files/steps/%s/step.json" .name }}
{{- $code := .root.Files.Get $path }}
{{- if not $code }}
{{- fail (printf "steps.%s: the chart has no code bundle %s (every step needs one: build the chart with jup2kub build)" .name $path) }}
{{- end }}
{{- $code }}
{{- end }}

{{/* Name of a step's code ConfigMap. Call with (dict "root" $ "name" $stepName). */}}
{{- define "jup2kub.step.codeName" -}}
{{- include "jup2kub.componentName" (dict "root" .root "suffix" (printf "%s-code" .name)) }}
{{- end }}
