{{/*
NetworkPolicy rules shared by the release's policies (templates/networkpolicy.yaml).
*/}}

{{/* Egress rule to Kafka's client port: the in-cluster brokers, or the ports of an external
bootstrap list (to any address: its brokers' addresses are not known here). */}}
{{- define "jup2kub.networkPolicy.kafkaEgress" -}}
{{- if .Values.kafka.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "jup2kub.selectorLabels" . | nindent 10 }}
          app.kubernetes.io/component: kafka
  ports:
    - port: {{ .Values.kafka.ports.client | int }}
      protocol: TCP
{{- else }}
{{- $ports := dict }}
{{- range $server := splitList "," (include "jup2kub.kafka.bootstrapServers" .) }}
{{- $port := splitList ":" (trim $server) | last }}
{{- if not (regexMatch "^[0-9]+$" $port) }}
{{- fail (printf "kafka.bootstrapServers: %q has no port (HOST:PORT,...)" (trim $server)) }}
{{- end }}
{{- $_ := set $ports $port true }}
{{- end }}
- ports:
    {{- range $port := keys $ports | sortAlpha }}
    - port: {{ $port | int }}
      protocol: TCP
    {{- end }}
{{- end }}
{{- end }}

{{/* Egress rule to the cluster DNS: port 53 of any pod (CoreDNS); a node-local cache is on the
pod's node, which NetworkPolicies always allow. */}}
{{- define "jup2kub.networkPolicy.dnsEgress" -}}
- to:
    - namespaceSelector: {}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end }}

{{/* The API server's source addresses as a YAML list of CIDRs: networkPolicy.apiServer.cidrs
and, at install (lookup returns nothing under `helm template`), the addresses of the
default/kubernetes EndpointSlice. */}}
{{- define "jup2kub.networkPolicy.apiServerCIDRs" -}}
{{- $cidrs := list }}
{{- if .Values.networkPolicy.apiServer.lookup }}
{{- $slice := lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes" }}
{{- range $ep := dig "endpoints" list $slice }}
{{- range $addr := dig "addresses" list $ep }}
{{- $cidrs = append $cidrs (printf "%s/%s" $addr (ternary "128" "32" (contains ":" $addr))) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml (concat $cidrs .Values.networkPolicy.apiServer.cidrs | uniq) }}
{{- end }}

{{/* Egress rule to the OTLP endpoint's port (tracing.otlpEndpoint; to any address, as its
collector's addresses are not known here): its explicit port, else the scheme's (80, 443).
Nothing when tracing is off. */}}
{{- define "jup2kub.networkPolicy.tracingEgress" -}}
{{- with .Values.tracing.otlpEndpoint }}
{{- $url := urlParse . }}
{{- $port := regexFind ":[0-9]+$" $url.host | trimPrefix ":" }}
{{- if not $port }}
{{- $port = ternary "443" "80" (eq $url.scheme "https") }}
{{- end }}
- ports:
    - port: {{ $port | int }}
      protocol: TCP
{{- end }}
{{- end }}
