{{/* Chart name, truncated to a DNS label. */}}
{{- define "kube-otel-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; room is left for "-shard-NN" and "-metrics". */}}
{{- define "kube-otel-bridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kube-otel-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the bridge's pods (all shards). */}}
{{- define "kube-otel-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kube-otel-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: bridge
{{- end }}

{{- define "kube-otel-bridge.labels" -}}
helm.sh/chart: {{ include "kube-otel-bridge.chart" . }}
{{ include "kube-otel-bridge.selectorLabels" . }}
app.kubernetes.io/part-of: kube-otel-bridge
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kube-otel-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kube-otel-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kube-otel-bridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}
{{- end }}

{{/* Namespace of the Lease and checkpoint ConfigMap (and of the Role). */}}
{{- define "kube-otel-bridge.stateNamespace" -}}
{{- default .Release.Namespace .Values.stateNamespace }}
{{- end }}

{{- define "kube-otel-bridge.configName" -}}
{{- printf "%s-config" (include "kube-otel-bridge.fullname" .) }}
{{- end }}

{{/* Number of shards, validated. */}}
{{- define "kube-otel-bridge.shards" -}}
{{- $n := int .Values.sharding.shards }}
{{- if lt $n 1 }}
{{- fail "sharding.shards must be at least 1" }}
{{- end }}
{{- $n }}
{{- end }}

{{/* Where the chart mounts secrets. */}}
{{- define "kube-otel-bridge.secretsDir" -}}
/var/run/secrets/kube-otel-bridge
{{- end }}

{{/* A sink name, checked: it becomes part of a path. */}}
{{- define "kube-otel-bridge.sinkName" -}}
{{- $s := index . 0 }}
{{- $where := index . 1 }}
{{- if not $s.name }}
{{- fail (printf "%s.name is required" $where) }}
{{- end }}
{{- if not (regexMatch "^[A-Za-z0-9][A-Za-z0-9._-]*$" (toString $s.name)) }}
{{- fail (printf "%s.name %q: use letters, digits, '.', '_' and '-'" $where (toString $s.name)) }}
{{- end }}
{{- toString $s.name }}
{{- end }}

{{/*
The config file (/etc/kube-otel-bridge/config.yaml): clusterName, otlp, sinks.
Chart-only keys (existingSecret, secretKey, passwordKey, caKey, certKey,
keyKey) are replaced by the paths where the chart mounts those Secrets.
*/}}
{{- define "kube-otel-bridge.config" -}}
{{- $dir := include "kube-otel-bridge.secretsDir" . }}
{{- $cfg := dict }}
{{- with .Values.clusterName }}
{{- $_ := set $cfg "clusterName" . }}
{{- end }}
{{- /* otlp */}}
{{- $o := .Values.otlp }}
{{- $otlp := dict }}
{{- with $o.endpoint }}{{ $_ := set $otlp "endpoint" . }}{{ end }}
{{- if $o.insecure }}{{ $_ := set $otlp "insecure" true }}{{ end }}
{{- with $o.compression }}{{ $_ := set $otlp "compression" . }}{{ end }}
{{- with $o.timeout }}{{ $_ := set $otlp "timeout" . }}{{ end }}
{{- with $o.batchTimeout }}{{ $_ := set $otlp "batchTimeout" . }}{{ end }}
{{- with $o.batchSize }}{{ $_ := set $otlp "batchSize" (int .) }}{{ end }}
{{- with $o.queueSize }}{{ $_ := set $otlp "queueSize" (int .) }}{{ end }}
{{- with $o.caFile }}{{ $_ := set $otlp "caFile" . }}{{ end }}
{{- with $o.clientCert }}{{ $_ := set $otlp "clientCert" . }}{{ end }}
{{- with $o.clientKey }}{{ $_ := set $otlp "clientKey" . }}{{ end }}
{{- if $o.tls.existingSecret }}
{{- if $o.insecure }}
{{- fail "otlp.tls.existingSecret cannot be used with otlp.insecure=true" }}
{{- end }}
{{- with $o.tls.caKey }}{{ $_ := set $otlp "caFile" (printf "%s/otlp-tls/%s" $dir .) }}{{ end }}
{{- with $o.tls.certKey }}{{ $_ := set $otlp "clientCert" (printf "%s/otlp-tls/%s" $dir .) }}{{ end }}
{{- with $o.tls.keyKey }}{{ $_ := set $otlp "clientKey" (printf "%s/otlp-tls/%s" $dir .) }}{{ end }}
{{- end }}
{{- with $o.headers }}{{ $_ := set $otlp "headers" . }}{{ end }}
{{- if $otlp }}
{{- $_ := set $cfg "otlp" $otlp }}
{{- end }}
{{- /* sinks.dingtalk */}}
{{- $sinks := dict }}
{{- $dingtalk := list }}
{{- range $i, $s := .Values.sinks.dingtalk }}
{{- $name := include "kube-otel-bridge.sinkName" (list $s (printf "sinks.dingtalk[%d]" $i)) }}
{{- $c := omit $s "existingSecret" "secretKey" }}
{{- if $s.existingSecret }}
{{- $_ := set $c "secretFile" (printf "%s/dingtalk/%s/%s" $dir $name ($s.secretKey | default "secret")) }}
{{- end }}
{{- $dingtalk = append $dingtalk $c }}
{{- end }}
{{- if $dingtalk }}
{{- $_ := set $sinks "dingtalk" $dingtalk }}
{{- end }}
{{- /* sinks.kafka */}}
{{- $kafka := list }}
{{- range $i, $s := .Values.sinks.kafka }}
{{- $name := include "kube-otel-bridge.sinkName" (list $s (printf "sinks.kafka[%d]" $i)) }}
{{- $c := omit $s "sasl" "tls" }}
{{- with $s.sasl }}
{{- $sasl := omit . "existingSecret" "passwordKey" }}
{{- if .existingSecret }}
{{- $_ := set $sasl "passwordFile" (printf "%s/kafka/%s/sasl/%s" $dir $name (.passwordKey | default "password")) }}
{{- end }}
{{- $_ := set $c "sasl" $sasl }}
{{- end }}
{{- if hasKey $s "tls" }}
{{- $t := $s.tls | default dict }}
{{- $tls := omit $t "existingSecret" "caKey" "certKey" "keyKey" }}
{{- if $t.existingSecret }}
{{- with $t.caKey }}{{ $_ := set $tls "caFile" (printf "%s/kafka/%s/tls/%s" $dir $name .) }}{{ end }}
{{- with $t.certKey }}{{ $_ := set $tls "certFile" (printf "%s/kafka/%s/tls/%s" $dir $name .) }}{{ end }}
{{- with $t.keyKey }}{{ $_ := set $tls "keyFile" (printf "%s/kafka/%s/tls/%s" $dir $name .) }}{{ end }}
{{- end }}
{{- $_ := set $c "tls" $tls }}
{{- end }}
{{- $kafka = append $kafka $c }}
{{- end }}
{{- if $kafka }}
{{- $_ := set $sinks "kafka" $kafka }}
{{- end }}
{{- if $sinks }}
{{- $_ := set $cfg "sinks" $sinks }}
{{- end }}
{{- if $cfg }}
{{- toYaml $cfg }}
{{- else }}
{{- "{}" }}
{{- end }}
{{- end }}

{{/*
Arguments of shard $shard: (dict "root" $ "shard" $i).
*/}}
{{- define "kube-otel-bridge.args" -}}
{{- $v := .root.Values }}
{{- $shards := int (include "kube-otel-bridge.shards" .root) -}}
- run
- --config=/etc/kube-otel-bridge/config.yaml
- --metrics-addr=:{{ $v.metrics.port }}
{{- if $v.metrics.pprof }}
- --pprof=true
{{- end }}
{{- if $v.leaderElection.enabled }}
- --leader-elect=true
- --lease-name={{ $v.leaderElection.leaseName }}
{{- end }}
{{- with $v.stateNamespace }}
- --state-namespace={{ . }}
{{- end }}
{{- if gt $shards 1 }}
- --shard={{ .shard }}/{{ $shards }}
{{- end }}
{{- with $v.namespaces }}
- --namespaces={{ join "," . }}
{{- end }}
{{- with $v.excludeNamespaces }}
- --exclude-namespaces={{ join "," . }}
{{- end }}
{{- with $v.eventsAPI }}
- --events-api={{ . }}
{{- end }}
{{- with $v.initialLookback }}
- --initial-lookback={{ . }}
{{- end }}
{{- with $v.episode.idle }}
- --episode-idle={{ . }}
{{- end }}
{{- with $v.episode.max }}
- --episode-max={{ . }}
{{- end }}
{{- with $v.episode.maxOpen }}
- --max-open-episodes={{ int64 . }}
{{- end }}
{{- with $v.ownerWait }}
- --owner-wait={{ . }}
{{- end }}
{{- with $v.tombstoneTTL }}
- --tombstone-ttl={{ . }}
{{- end }}
{{- with $v.maxMessageBytes }}
- --max-message-bytes={{ int64 . }}
{{- end }}
{{- with $v.kubeAPI.qps }}
- --kube-api-qps={{ . }}
{{- end }}
{{- with $v.kubeAPI.burst }}
- --kube-api-burst={{ int64 . }}
{{- end }}
{{- with $v.kubeAPI.eventsReadDelay }}
- --events-read-delay={{ . }}
{{- end }}
{{- with $v.serviceName }}
- --service-name={{ . }}
{{- end }}
{{- if not $v.export.logs }}
- --no-logs
{{- end }}
{{- if not $v.export.traces }}
- --no-traces
{{- end }}
{{- with $v.shutdownTimeout }}
- --shutdown-timeout={{ . }}
{{- end }}
{{- with $v.logLevel }}
- --log-level={{ . }}
{{- end }}
{{- with $v.logFormat }}
- --log-format={{ . }}
{{- end }}
{{- range $v.extraArgs }}
- {{ . }}
{{- end }}
{{- end }}

{{/* Lease and checkpoint names per shard, for the Role's resourceNames. */}}
{{- define "kube-otel-bridge.stateNames" -}}
{{- $shards := int (include "kube-otel-bridge.shards" .) }}
{{- $leases := list }}
{{- $cms := list }}
{{- if gt $shards 1 }}
{{- range $i := until $shards }}
{{- $leases = append $leases (printf "%s-shard-%d-of-%d" $.Values.leaderElection.leaseName $i $shards) }}
{{- $cms = append $cms (printf "%s-shard-%d-of-%d" $.Values.checkpoint.configMapName $i $shards) }}
{{- end }}
{{- else }}
{{- $leases = list .Values.leaderElection.leaseName }}
{{- $cms = list .Values.checkpoint.configMapName }}
{{- end }}
{{- toJson (dict "leases" $leases "configmaps" $cms) }}
{{- end }}
