{{/* Names, labels and the pod template shared by the Deployment and the StatefulSet. */}}

{{- define "cce-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cce-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "cce-exporter.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "cce-exporter.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "cce-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cce-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cce-exporter.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{ include "cce-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cce-exporter
{{- end }}

{{- define "cce-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cce-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cce-exporter.credentialsSecret" -}}
{{- default (printf "%s-credentials" (include "cce-exporter.fullname" .)) .Values.credentials.existingSecret }}
{{- end }}

{{- define "cce-exporter.configData" -}}
config.yaml: |
  {{- toYaml .Values.config | nindent 2 }}
policy.yaml: |
  {{- toYaml .Values.policy | nindent 2 }}
{{- end }}

{{- define "cce-exporter.probe" -}}
port: http
scheme: {{ .Values.probes.scheme }}
{{- if .Values.probes.httpHeaders }}
httpHeaders:
  {{- toYaml .Values.probes.httpHeaders | nindent 2 }}
{{- end }}
{{- end }}

{{- define "cce-exporter.podTemplate" -}}
metadata:
  labels:
    {{- include "cce-exporter.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: exporter
    {{- if .Values.podLabels }}
    {{- toYaml .Values.podLabels | nindent 4 }}
    {{- end }}
  annotations:
    # Roll the pods when the configuration or the policy changes.
    checksum/config: {{ include "cce-exporter.configData" . | sha256sum }}
    {{- if .Values.podAnnotations }}
    {{- toYaml .Values.podAnnotations | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "cce-exporter.serviceAccountName" . }}
  # The token is read only by the hibernation leader election (the Lease).
  automountServiceAccountToken: true
  enableServiceLinks: false
  terminationGracePeriodSeconds: 30
  {{- if .Values.priorityClassName }}
  priorityClassName: {{ .Values.priorityClassName }}
  {{- end }}
  {{- if .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml .Values.imagePullSecrets | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: cce-exporter
      image: {{ printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["run"]
      ports:
        - name: http
          containerPort: {{ .Values.port }}
          protocol: TCP
      env:
        - name: CCE_EXPORTER_CONFIG
          value: /etc/cce-exporter/config/config.yaml
        - name: CCE_EXPORTER_POLICY_FILE
          value: /etc/cce-exporter/config/policy.yaml
        - name: CCE_EXPORTER_STATE_FILE
          value: /var/lib/cce-exporter/state.json
        - name: CCE_EXPORTER_LISTEN
          value: {{ printf "0.0.0.0:%v" .Values.port | quote }}
        - name: CCE_EXPORTER_LOG_FORMAT
          value: {{ .Values.logFormat | quote }}
        # Identity for the Lease holder and the 503 answer of a non-leader.
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        {{- if .Values.sharding.enabled }}
        - name: CCE_EXPORTER_SHARD
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['apps.kubernetes.io/pod-index']
        - name: CCE_EXPORTER_TOTAL_SHARDS
          value: {{ .Values.sharding.shards | quote }}
        {{- end }}
        {{- if .Values.hookToken.existingSecret }}
        - name: CCE_EXPORTER_HOOK_TOKEN_FILE
          value: {{ printf "/etc/cce-exporter/hook/%s" .Values.hookToken.key | quote }}
        {{- end }}
        {{- if .Values.webConfig.existingSecret }}
        - name: CCE_EXPORTER_WEB_CONFIG_FILE
          value: {{ printf "/etc/cce-exporter/web/%s" .Values.webConfig.key | quote }}
        {{- end }}
        {{- if .Values.extraEnv }}
        {{- toYaml .Values.extraEnv | nindent 8 }}
        {{- end }}
      envFrom:
        - secretRef:
            name: {{ include "cce-exporter.credentialsSecret" . }}
      startupProbe:
        httpGet:
          path: /healthz
          {{- include "cce-exporter.probe" . | nindent 10 }}
        periodSeconds: 2
        failureThreshold: 30
      livenessProbe:
        httpGet:
          path: /healthz
          {{- include "cce-exporter.probe" . | nindent 10 }}
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /readyz
          {{- include "cce-exporter.probe" . | nindent 10 }}
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/cce-exporter/config
          readOnly: true
        - name: state
          mountPath: /var/lib/cce-exporter
        - name: tmp
          mountPath: /tmp
        {{- if .Values.hookToken.existingSecret }}
        - name: hook-token
          mountPath: /etc/cce-exporter/hook
          readOnly: true
        {{- end }}
        {{- if .Values.webConfig.existingSecret }}
        - name: web-config
          mountPath: /etc/cce-exporter/web
          readOnly: true
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "cce-exporter.fullname" . }}-config
    - name: state
      emptyDir:
        sizeLimit: {{ .Values.state.sizeLimit }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if .Values.hookToken.existingSecret }}
    - name: hook-token
      secret:
        secretName: {{ .Values.hookToken.existingSecret }}
    {{- end }}
    {{- if .Values.webConfig.existingSecret }}
    - name: web-config
      secret:
        secretName: {{ .Values.webConfig.existingSecret }}
    {{- end }}
  {{- if .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml .Values.nodeSelector | nindent 4 }}
  {{- end }}
  {{- if .Values.tolerations }}
  tolerations:
    {{- toYaml .Values.tolerations | nindent 4 }}
  {{- end }}
  {{- if .Values.affinity }}
  affinity:
    {{- toYaml .Values.affinity | nindent 4 }}
  {{- end }}
  {{- if .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml .Values.topologySpreadConstraints | nindent 4 }}
  {{- end }}
{{- end }}

{{- define "cce-exporter.dashboardLabels" -}}
{{ include "cce-exporter.labels" . }}
app.kubernetes.io/component: dashboards
{{ .Values.grafanaDashboards.label }}: {{ .Values.grafanaDashboards.labelValue | quote }}
{{- end }}

{{- define "cce-exporter.dashboardAnnotations" -}}
{{ .Values.grafanaDashboards.folderAnnotation }}: {{ .Values.grafanaDashboards.folder | quote }}
{{- end }}
