{{/*
The pod template shared by the single node's StatefulSet and the cluster's Deployment. The data dir
(/data) is the StatefulSet's claim (or an emptyDir without persistence) for the single node, and an
emptyDir in cluster mode, where every durable byte is in CQL and S3.
*/}}
{{- define "spacecast.podTemplate" -}}
metadata:
  labels:
    {{- include "spacecast.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  serviceAccountName: {{ include "spacecast.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  # preStop sleep + up to 3 x SPACECAST_SHUTDOWN_TIMEOUT of drain (values.yaml, `drain`).
  terminationGracePeriodSeconds: {{ include "spacecast.terminationGracePeriodSeconds" . }}
  containers:
    - name: spacecast
      image: {{ include "spacecast.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      {{- with .Values.args }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      ports:
        - name: http
          containerPort: {{ .Values.containerPort }}
          protocol: TCP
      env:
        {{- include "spacecast.env" . | nindent 8 }}
      {{- with .Values.extraEnvFrom }}
      envFrom:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if gt (int .Values.drain.preStopSleepSeconds) 0 }}
      lifecycle:
        # Keep serving while Services and ingresses drop this pod; then SIGTERM starts the drain.
        preStop:
          sleep:
            seconds: {{ int .Values.drain.preStopSleepSeconds }}
      {{- end }}
      startupProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml .Values.startupProbe | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: data
          mountPath: /data
        - name: tmp
          mountPath: /tmp
        {{- if .Values.jwt.publicKey.existingSecret }}
        - name: jwt-public-key
          mountPath: /etc/spacecast/jwt
          readOnly: true
        {{- end }}
  volumes:
    # Writable scratch space: the root filesystem is read-only.
    - name: tmp
      emptyDir: {}
    {{- if or .Values.cluster.enabled (not .Values.persistence.enabled) }}
    - name: data
      emptyDir: {}
    {{- end }}
    {{- if .Values.jwt.publicKey.existingSecret }}
    - name: jwt-public-key
      secret:
        secretName: {{ .Values.jwt.publicKey.existingSecret }}
        items:
          - key: {{ .Values.jwt.publicKey.key }}
            path: {{ .Values.jwt.publicKey.key }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- else if and .Values.cluster.enabled (ne .Values.podAntiAffinity "none") }}
  affinity:
    podAntiAffinity:
      {{- if eq .Values.podAntiAffinity "hard" }}
      requiredDuringSchedulingIgnoredDuringExecution:
        - topologyKey: {{ .Values.podAntiAffinityTopologyKey }}
          labelSelector:
            matchLabels:
              {{- include "spacecast.selectorLabels" . | nindent 14 }}
      {{- else }}
      preferredDuringSchedulingIgnoredDuringExecution:
        - weight: 100
          podAffinityTerm:
            topologyKey: {{ .Values.podAntiAffinityTopologyKey }}
            labelSelector:
              matchLabels:
                {{- include "spacecast.selectorLabels" . | nindent 16 }}
      {{- end }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
