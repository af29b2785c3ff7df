{{/*
Spreading replicas over nodes, and leaving a failed node quickly: one node failure must not
take every replica of a step, or the KRaft quorum, for long. Shared by every template of a Jup2Kub chart (split by concern, like bitnami's
common chart).
*/}}

{{/*
A pod's affinity and topologySpreadConstraints, as YAML (use fromYaml): the given affinity plus
pod anti-affinity by hostname to pods matching selector (mode preferred: weight 100; required:
a hard rule), and one topology spread constraint by hostname (ScheduleAnyway / DoNotSchedule).
Mode none adds nothing. hashKey: also match the pod-template-hash label (Deployments, so that
a rolling update's old pods do not count).
Call with (dict "affinity" $aff "mode" $mode "selector" $labels "hashKey" true).
*/}}
{{- define "jup2kub.spread" -}}
{{- $affinity := deepCopy (.affinity | default dict) }}
{{- $spread := list }}
{{- if ne .mode "none" }}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" .selector) }}
{{- $anti := dig "podAntiAffinity" dict $affinity }}
{{- $constraint := dict "maxSkew" 1 "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" .selector) }}
{{- if eq .mode "required" }}
{{- $_ := set $anti "requiredDuringSchedulingIgnoredDuringExecution" (append (dig "requiredDuringSchedulingIgnoredDuringExecution" list $anti) $term) }}
{{- $_ := set $constraint "whenUnsatisfiable" "DoNotSchedule" }}
{{- else }}
{{- $weighted := dict "weight" 100 "podAffinityTerm" $term }}
{{- $_ := set $anti "preferredDuringSchedulingIgnoredDuringExecution" (append (dig "preferredDuringSchedulingIgnoredDuringExecution" list $anti) $weighted) }}
{{- $_ := set $constraint "whenUnsatisfiable" "ScheduleAnyway" }}
{{- end }}
{{- if .hashKey }}
{{- $_ := set $constraint "matchLabelKeys" (list "pod-template-hash") }}
{{- end }}
{{- $_ := set $affinity "podAntiAffinity" $anti }}
{{- $spread = list $constraint }}
{{- end }}
{{- toYaml (dict "affinity" $affinity "topologySpreadConstraints" $spread) }}
{{- end }}

{{/*
A pod's tolerations, as YAML (use fromYaml; key "tolerations"): the given ones plus NoExecute
tolerations of node.kubernetes.io/not-ready and node.kubernetes.io/unreachable for `seconds`, so
that the pods of a dead or cut-off node are evicted after that time instead of the API server's
default 300 s. A given toleration of the same key wins (no duplicates); seconds empty or null:
nothing added (the API server's default applies).
Call with (dict "tolerations" $list "seconds" $seconds).
*/}}
{{- define "jup2kub.nodeFailureTolerations" -}}
{{- $tolerations := list }}
{{- $keys := dict }}
{{- range $t := .tolerations | default list }}
{{- $tolerations = append $tolerations $t }}
{{- if hasKey $t "key" }}
{{- $_ := set $keys (toString $t.key) true }}
{{- end }}
{{- end }}
{{- $seconds := .seconds }}
{{- if or (kindIs "float64" $seconds) (kindIs "int64" $seconds) (kindIs "int" $seconds) }}
{{- range $key := list "node.kubernetes.io/not-ready" "node.kubernetes.io/unreachable" }}
{{- if not (hasKey $keys $key) }}
{{- $tolerations = append $tolerations (dict "key" $key "operator" "Exists" "effect" "NoExecute" "tolerationSeconds" ($seconds | int64)) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml (dict "tolerations" $tolerations) }}
{{- end }}
