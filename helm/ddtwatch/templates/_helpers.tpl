{{/* Names and labels. */}}
{{- define "ddtwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ddtwatch.fullname" -}}
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

{{- define "ddtwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ddtwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "ddtwatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ddtwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: monitor
app.kubernetes.io/part-of: ddtwatch
{{- end }}

{{- define "ddtwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ddtwatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The rendered ddtwatch.yaml: the user's `config` plus what the chart owns. */}}
{{- define "ddtwatch.config" -}}
{{- $c := deepCopy .Values.config }}
{{- $http := dict "listen" (printf "0.0.0.0:%d" (int .Values.port)) }}
{{- if .Values.httpToken.secretName }}
{{- $_ := set $http "token_file" "/etc/ddtwatch/http-token/token" }}
{{- end }}
{{- if .Values.httpToken.anonymousReads }}
{{- $_ := set $http "anonymous_reads" true }}
{{- end }}
{{- $_ := set $c "http" $http }}
{{- $_ := set $c "state_dir" "/var/lib/ddtwatch" }}
{{- $_ := set $c "profiles_dir" "../profiles" }}
{{- $k := .Values.kafka }}
{{- $secretProps := dict }}
{{- range $prop, $ref := $k.secretProperties }}
{{- $_ := set $secretProps $prop (dict "file" (printf "/etc/ddtwatch/kafka/%s" $prop)) }}
{{- end }}
{{- $src := dict "kind" "kafka" "brokers" $k.brokers "topics" $k.topics "group_id" $k.groupId "state_topic" $k.stateTopic "properties" $k.properties "secret_properties" $secretProps }}
{{- $_ := set $c "sources" (list $src) }}
{{- $_ := set $c "dead_letter" (dict "kind" "kafka" "topic" $k.deadLetterTopic) }}
{{- if $k.auditTopic }}
{{- $audit := deepCopy (default dict $c.audit) }}
{{- $_ := set $audit "topic" $k.auditTopic }}
{{- $_ := set $c "audit" $audit }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/* The ddtwatch container (standalone Deployment and native sidecar). Context: the chart's root
     context, or a dict with Values (ddtwatch values), Release, Chart from a parent chart. */}}
{{- define "ddtwatch.container" -}}
name: ddtwatch
{{- if .Values.image.digest }}
image: "{{ .Values.image.repository }}@{{ .Values.image.digest }}"
{{- else }}
image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
{{- end }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args: ["run", "--config", "/etc/ddtwatch/config/ddtwatch.yaml"]
env:
  # The log filter ddtwatch reads (a tracing filter, e.g. "info" or "debug,rdkafka=info").
  - name: DDTWATCH_LOG
    value: {{ .Values.logLevel | quote }}
  - name: DDTWATCH_LOG_FORMAT
    value: {{ .Values.logFormat | default "json" | quote }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
ports:
  - name: http
    containerPort: {{ .Values.port }}
    protocol: TCP
startupProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: {{ .Values.probes.startup.periodSeconds }}
  failureThreshold: {{ .Values.probes.startup.failureThreshold }}
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
resources:
  {{- toYaml .Values.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - {name: ddtwatch-config, mountPath: /etc/ddtwatch/config, readOnly: true}
  - {name: ddtwatch-profiles, mountPath: /etc/ddtwatch/profiles, readOnly: true}
  - {name: ddtwatch-state, mountPath: /var/lib/ddtwatch}
  {{- if .Values.kafka.secretProperties }}
  - {name: ddtwatch-kafka-secrets, mountPath: /etc/ddtwatch/kafka, readOnly: true}
  {{- end }}
  {{- if .Values.httpToken.secretName }}
  - {name: ddtwatch-http-token, mountPath: /etc/ddtwatch/http-token, readOnly: true}
  {{- end }}
  {{- if .Values.secretFiles }}
  - {name: ddtwatch-secret-files, mountPath: /etc/ddtwatch/secrets, readOnly: true}
  {{- end }}
  {{- with .Values.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/* Native sidecar: the container as an init container that keeps running (Kubernetes ≥ 1.29). */}}
{{- define "ddtwatch.sidecar" -}}
{{ include "ddtwatch.container" . }}
restartPolicy: Always
{{- end }}

{{/* Standalone with a chart-made volume: a StatefulSet, one claim per replica (instances must
     never share an outbox or audit log). Non-empty string = true. */}}
{{- define "ddtwatch.statefulSet" -}}
{{- if and (eq .Values.mode "standalone") .Values.persistence.enabled (not .Values.persistence.existingClaim) }}true{{ end }}
{{- end }}

{{/* Volumes the container mounts. */}}
{{- define "ddtwatch.volumes" -}}
# Whole ConfigMaps as directories (no subPath), so updates reach the pod and hot-reload.
- name: ddtwatch-config
  configMap:
    name: {{ include "ddtwatch.fullname" . }}
- name: ddtwatch-profiles
  configMap:
    name: {{ include "ddtwatch.fullname" . }}-profiles
{{- if not (include "ddtwatch.statefulSet" .) }}
- name: ddtwatch-state
  {{- if .Values.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.persistence.existingClaim | default (printf "%s-state" (include "ddtwatch.fullname" .)) }}
  {{- else }}
  emptyDir: {}
  {{- end }}
{{- end }}
{{- if .Values.kafka.secretProperties }}
- name: ddtwatch-kafka-secrets
  projected:
    sources:
      {{- range $prop, $ref := .Values.kafka.secretProperties }}
      - secret:
          name: {{ $ref.secretName }}
          items: [{key: {{ $ref.key }}, path: {{ $prop }}}]
      {{- end }}
{{- end }}
{{- if .Values.httpToken.secretName }}
- name: ddtwatch-http-token
  secret:
    secretName: {{ .Values.httpToken.secretName }}
    items: [{key: {{ .Values.httpToken.key }}, path: token}]
{{- end }}
{{- if .Values.secretFiles }}
- name: ddtwatch-secret-files
  projected:
    sources:
      {{- range $name, $ref := .Values.secretFiles }}
      - secret:
          name: {{ $ref.secretName }}
          items: [{key: {{ $ref.key }}, path: {{ $name }}}]
      {{- end }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* name → profile text: values.profiles, else the shipped files. */}}
{{- define "ddtwatch.profiles" -}}
{{- if .Values.profiles }}
{{- toYaml .Values.profiles }}
{{- else }}
{{- $files := dict }}
{{- range $path, $_ := .Files.Glob "profiles/*.yaml" }}
{{- $_ := set $files (base $path | trimSuffix ".yaml") ($.Files.Get $path) }}
{{- end }}
{{- toYaml $files }}
{{- end }}
{{- end }}

{{/* Seconds of a duration string as ddtwatch parses them (ms, s, m, h; a bare number is seconds),
rounded up. */}}
{{- define "ddtwatch.seconds" -}}
{{- $d := toString . -}}
{{- if hasSuffix "ms" $d -}}{{ div (add (trimSuffix "ms" $d | int) 999) 1000 }}
{{- else if hasSuffix "s" $d -}}{{ trimSuffix "s" $d | int }}
{{- else if hasSuffix "m" $d -}}{{ mul (trimSuffix "m" $d | int) 60 }}
{{- else if hasSuffix "h" $d -}}{{ mul (trimSuffix "h" $d | int) 3600 }}
{{- else -}}{{ $d | int }}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: the value when set, else what `run` may take after SIGTERM:
up to 10 s for HTTP connections to drain (service::DRAIN_LIMIT), then engine.shutdown_grace
(default 10s) for the sources to stop and checkpoint, then engine.shutdown_grace again for the
outbox to drain, and once more for the last audit records to reach the audit topic, plus 5 s for
the last snapshot, so Kubernetes never SIGKILLs a pod that is still handing its work over. */}}
{{- define "ddtwatch.terminationGrace" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- $engine := .Values.config.engine | default dict -}}
{{- $grace := include "ddtwatch.seconds" ($engine.shutdown_grace | default "10s") | int -}}
{{- add (mul $grace 3) 15 -}}
{{- else -}}
{{- .Values.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}
