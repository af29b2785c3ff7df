{{/*
The shared state volume: claim, storage class, and co-location of the steps.
Shared by every template of a Jup2Kub chart (split by concern, like bitnami's common chart).
The templates are generic: everything notebook-specific is read from .Values, which the
generator wrote. Lookups of optional keys go through hasKey/dig so `helm lint --strict` passes.
*/}}

{{/* Name of the PersistentVolumeClaim holding the shared state. */}}
{{- define "jup2kub.state.claimName" -}}
{{- if eq .Values.storage.mode "existingClaim" }}
{{- required "storage.existingClaim is required when storage.mode=existingClaim" .Values.storage.existingClaim }}
{{- else }}
{{- include "jup2kub.componentName" (dict "root" . "suffix" "state") }}
{{- end }}
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
