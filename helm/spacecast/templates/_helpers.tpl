{{/*
Chart name, truncated to the 63 characters a DNS label allows.
*/}}
{{- define "spacecast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, plus the chart name unless the release name contains it.
*/}}
{{- define "spacecast.fullname" -}}
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

{{/*
Name of the headless Service that governs the StatefulSet (stable pod DNS names).
*/}}
{{- define "spacecast.headlessName" -}}
{{- printf "%s-headless" (include "spacecast.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Chart label value.
*/}}
{{- define "spacecast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "spacecast.labels" -}}
helm.sh/chart: {{ include "spacecast.chart" . }}
{{ include "spacecast.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels (immutable on a StatefulSet: never add to these).
*/}}
{{- define "spacecast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "spacecast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "spacecast.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "spacecast.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference.
*/}}
{{- define "spacecast.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the value given, or preStop sleep + 3 x the shutdown timeout + 10 s
(the server's three bounded drain phases, then the store's flush).
*/}}
{{- define "spacecast.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add (int .Values.drain.preStopSleepSeconds) (mul 3 (int .Values.drain.shutdownTimeoutSeconds)) 10 }}
{{- else }}
{{- int .Values.terminationGracePeriodSeconds }}
{{- end }}
{{- end }}

{{/*
Refuses inconsistent values with a message that names the fix. Cluster mode (a Deployment of
stateless nodes) needs a shared store (cql), a shared bus (NATS), shared media (s3) and a shared JWT
key; the single node (a StatefulSet) has one replica, since its store, media and secret are on its
own volume.
*/}}
{{- define "spacecast.validate" -}}
{{- if not (has .Values.config.store (list "embedded" "cql")) }}
{{- fail (printf "config.store must be \"embedded\" or \"cql\", got %q" .Values.config.store) }}
{{- end }}
{{- if and (eq .Values.config.store "cql") (not .Values.config.cqlNodes) }}
{{- fail "config.store is \"cql\": set config.cqlNodes" }}
{{- end }}
{{- if not (has .Values.config.mediaStore (list "local" "s3")) }}
{{- fail (printf "config.mediaStore must be \"local\" or \"s3\", got %q" .Values.config.mediaStore) }}
{{- end }}
{{- if eq .Values.config.mediaStore "s3" }}
{{- if not .Values.config.s3.bucket }}
{{- fail "config.mediaStore is \"s3\": set config.s3.bucket" }}
{{- end }}
{{- if not .Values.config.s3.endpoint }}
{{- fail "config.mediaStore is \"s3\": set config.s3.endpoint (http(s)://host[:port])" }}
{{- end }}
{{- if not .Values.config.s3.credentials.existingSecret }}
{{- fail "config.mediaStore is \"s3\": set config.s3.credentials.existingSecret (a Secret with the access key id and secret access key)" }}
{{- end }}
{{- end }}
{{- if not (has .Values.config.logFormat (list "json" "text")) }}
{{- fail (printf "config.logFormat must be \"json\" or \"text\", got %q" .Values.config.logFormat) }}
{{- end }}
{{- if and .Values.config.otlp.protocol (not (has .Values.config.otlp.protocol (list "grpc" "http"))) }}
{{- fail (printf "config.otlp.protocol must be \"grpc\" or \"http\", got %q" .Values.config.otlp.protocol) }}
{{- end }}
{{- if and (or .Values.config.otlp.protocol .Values.config.otlp.sampleRatio) (not .Values.config.otlp.endpoint) }}
{{- fail "config.otlp.protocol / config.otlp.sampleRatio are set but config.otlp.endpoint is empty: no trace would be exported; set the collector's endpoint" }}
{{- end }}
{{- if .Values.cluster.enabled }}
{{- if ne .Values.config.store "cql" }}
{{- fail "cluster.enabled needs config.store=cql (and config.cqlNodes): the embedded store lives on one pod's disk, so the nodes cannot share it" }}
{{- end }}
{{- if not .Values.config.natsUrl }}
{{- fail "cluster.enabled needs config.natsUrl (NATS with JetStream): the nodes forward sends and events to each other over it" }}
{{- end }}
{{- if ne .Values.config.mediaStore "s3" }}
{{- fail "cluster.enabled needs config.mediaStore=s3 (with config.s3.*): cluster pods have no volume, and local media would be served by one pod only" }}
{{- end }}
{{- if not (or .Values.jwt.existingSecret .Values.jwt.publicKey.existingSecret) }}
{{- fail "cluster.enabled needs a shared JWT key: set jwt.existingSecret or jwt.publicKey.existingSecret (a generated secret would differ per pod)" }}
{{- end }}
{{- if .Values.config.nodeId }}
{{- fail "config.nodeId must be empty in cluster mode: every pod would get the same node id; each pod's name is its id" }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- if lt (int .Values.autoscaling.minReplicas) 2 }}
{{- fail "autoscaling.minReplicas must be at least 2 in cluster mode (one pod has no failover)" }}
{{- end }}
{{- if lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- else if lt (int .Values.replicaCount) 2 }}
{{- fail "cluster.enabled needs replicaCount >= 2 (one pod has no failover; for one node use the single-node mode, cluster.enabled=false)" }}
{{- end }}
{{- else }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail "replicaCount > 1 needs cluster mode: set cluster.enabled=true with config.store=cql, config.natsUrl, config.mediaStore=s3 and a JWT Secret; a single node's embedded store, media and secret are on its own volume" }}
{{- end }}
{{- if .Values.config.natsUrl }}
{{- fail "config.natsUrl is set, which makes the server a cluster node: set cluster.enabled=true (a Deployment with config.store=cql and S3 media), or unset config.natsUrl for a single node" }}
{{- end }}
{{- if .Values.autoscaling.enabled }}
{{- fail "autoscaling.enabled needs cluster mode (cluster.enabled=true): a single node with the embedded store cannot scale out" }}
{{- end }}
{{- end }}
{{- if and (not .Values.config.nodeId) (not (regexMatch "^[A-Za-z0-9_-]+$" (include "spacecast.fullname" .))) }}
{{- fail (printf "the pods' names become their node ids (SPACECAST_NODE_ID: letters, digits, - and _ only), and %q has other characters: set fullnameOverride (or config.nodeId for a single node)" (include "spacecast.fullname" .)) }}
{{- end }}
{{- if lt (int .Values.drain.shutdownTimeoutSeconds) 1 }}
{{- fail "drain.shutdownTimeoutSeconds must be at least 1" }}
{{- end }}
{{- $needed := add (int .Values.drain.preStopSleepSeconds) (mul 3 (int .Values.drain.shutdownTimeoutSeconds)) }}
{{- if lt (int (include "spacecast.terminationGracePeriodSeconds" .)) $needed }}
{{- fail (printf "terminationGracePeriodSeconds (%d) is shorter than drain.preStopSleepSeconds + 3 x drain.shutdownTimeoutSeconds (%d): Kubernetes would kill the server mid-drain; raise it or leave it empty (computed)" (int .Values.terminationGracePeriodSeconds) $needed) }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set only one of maxUnavailable and minAvailable (set the other to null)" }}
{{- end }}
{{- end }}

{{/*
The container environment: every Spacecast option as SPACECAST_<NAME>.
*/}}
{{- define "spacecast.env" -}}
- name: SPACECAST_LISTEN
  value: {{ .Values.config.listen | default (printf "0.0.0.0:%d" (int .Values.containerPort)) | quote }}
- name: SPACECAST_DATA_DIR
  value: "/data"
- name: SPACECAST_STORE
  value: {{ .Values.config.store | quote }}
{{- with .Values.config.cqlNodes }}
- name: SPACECAST_CQL_NODES
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.cqlKeyspace }}
- name: SPACECAST_CQL_KEYSPACE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.cqlReplication }}
- name: SPACECAST_CQL_REPLICATION
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.natsUrl }}
- name: SPACECAST_NATS_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.leaseTtl }}
- name: SPACECAST_LEASE_TTL
  value: {{ . | quote }}
{{- end }}
- name: SPACECAST_MEDIA_STORE
  value: {{ .Values.config.mediaStore | quote }}
{{- if eq .Values.config.mediaStore "s3" }}
- name: SPACECAST_S3_BUCKET
  value: {{ .Values.config.s3.bucket | quote }}
- name: SPACECAST_S3_ENDPOINT
  value: {{ .Values.config.s3.endpoint | quote }}
- name: SPACECAST_S3_REGION
  value: {{ .Values.config.s3.region | default "us-east-1" | quote }}
{{- with .Values.config.s3.prefix }}
- name: SPACECAST_S3_PREFIX
  value: {{ . | quote }}
{{- end }}
- name: SPACECAST_S3_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.config.s3.credentials.existingSecret }}
      key: {{ .Values.config.s3.credentials.accessKeyIdKey }}
- name: SPACECAST_S3_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.config.s3.credentials.existingSecret }}
      key: {{ .Values.config.s3.credentials.secretAccessKeyKey }}
{{- end }}
- name: SPACECAST_NODE_ID
{{- if .Values.config.nodeId }}
  value: {{ .Values.config.nodeId | quote }}
{{- else }}
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- with .Values.config.publicUrl }}
- name: SPACECAST_PUBLIC_URL
  value: {{ . | quote }}
{{- end }}
- name: SPACECAST_LOG_FORMAT
  value: {{ .Values.config.logFormat | quote }}
{{- with .Values.config.rustLog }}
- name: RUST_LOG
  value: {{ . | quote }}
{{- end }}
- name: SPACECAST_SHUTDOWN_TIMEOUT
  value: {{ printf "%ds" (int .Values.drain.shutdownTimeoutSeconds) | quote }}
{{- with .Values.config.otlp.endpoint }}
- name: SPACECAST_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.otlp.protocol }}
- name: SPACECAST_OTLP_PROTOCOL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.config.otlp.sampleRatio }}
- name: SPACECAST_TRACE_SAMPLE_RATIO
  value: {{ . | quote }}
{{- end }}
{{- if .Values.jwt.existingSecret }}
- name: SPACECAST_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.jwt.existingSecret }}
      key: {{ .Values.jwt.secretKey }}
{{- end }}
{{- if .Values.jwt.publicKey.existingSecret }}
- name: SPACECAST_JWT_PUBLIC_KEY
  value: {{ printf "/etc/spacecast/jwt/%s" .Values.jwt.publicKey.key | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
