{{/*
Named templates shared by the chart's files. Only plain text/template and the functions listed in
README "Template functions" are used, so test/deploy/helm-render can render the chart without helm.
*/}}

{{/* ---- names */}}

{{/* The chart name, or nameOverride; 63 characters at most (a DNS label). */}}
{{- define "sdxl-lora-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or only the release when it already holds the chart name, or fullnameOverride. */}}
{{- define "sdxl-lora-service.fullname" -}}
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
<fullname>-<component>. The full name is cut to 52 characters first so that "-migrate" still fits
in 63 and two components never truncate to the same name.
Call: include "sdxl-lora-service.componentName" (dict "root" $ "component" "api")
*/}}
{{- define "sdxl-lora-service.componentName" -}}
{{- printf "%s-%s" (include "sdxl-lora-service.fullname" .root | trunc 52 | trimSuffix "-") .component }}
{{- end }}

{{- define "sdxl-lora-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sdxl-lora-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sdxl-lora-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* ---- labels */}}

{{/*
Labels of every resource; a component (api, worker, migrate) adds app.kubernetes.io/component.
Call: include "sdxl-lora-service.labels" (dict "root" $ "component" "api"), component optional.
*/}}
{{- define "sdxl-lora-service.labels" -}}
helm.sh/chart: {{ include "sdxl-lora-service.chart" .root }}
{{ include "sdxl-lora-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: {{ include "sdxl-lora-service.name" .root }}
{{- end }}

{{/* The labels selectors match on: stable across upgrades (no version). */}}
{{- define "sdxl-lora-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sdxl-lora-service.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* ---- image */}}

{{/*
repository:tag, the tag defaulting to the chart's appVersion; suffix (worker.image.tagSuffix) picks a
variant such as -cuda. Call: include "sdxl-lora-service.image" (dict "root" $ "suffix" "")
*/}}
{{- define "sdxl-lora-service.image" -}}
{{- $values := .root.Values.image }}
{{- printf "%s:%s%s" $values.repository (default .root.Chart.AppVersion $values.tag) .suffix }}
{{- end }}

{{/* ---- environment */}}

{{/* The pods listen here; Services and probes refer to the port by its name, http. */}}
{{- define "sdxl-lora-service.containerPort" -}}
3000
{{- end }}

{{/*
Variables every process gets, as a JSON object: the chart's fixed ones over .Values.config. The
ConfigMap holds them for the Deployments; the migration Job gets them inline (see migrate-job.yaml).
*/}}
{{- define "sdxl-lora-service.sharedConfig" -}}
{{- $config := dict }}
{{- range $name, $value := .Values.config }}
{{- $_ := set $config $name (toString $value) }}
{{- end }}
{{- $_ := set $config "HOST" "0.0.0.0" }}
{{- $_ := set $config "PORT" (include "sdxl-lora-service.containerPort" .) }}
{{- $_ := set $config "DATA_DIR" "/data" }}
{{- $_ := set $config "MODELS_DIR" "/models" }}
{{- /* The Job migrates before pods start; without it every pod migrates (under an advisory lock). */}}
{{- $_ := set $config "MIGRATE_ON_START" (toString (not .Values.migrate.enabled)) }}
{{- toJson $config }}
{{- end }}

{{/*
SHUTDOWN_GRACE_MS from a terminationGracePeriodSeconds: 10 s less, so the process closes before
the kubelet's SIGKILL. Call: include "sdxl-lora-service.shutdownGraceMs" .Values.worker.terminationGracePeriodSeconds
*/}}
{{- define "sdxl-lora-service.shutdownGraceMs" -}}
{{- mul (sub . 10) 1000 | quote }}
{{- end }}

{{/* Where the Anthropic Secret is mounted; its key appears there as the file api-key. */}}
{{- define "sdxl-lora-service.anthropicKeyDir" -}}
/etc/sdxl-lora-service/anthropic
{{- end }}

{{/*
Env entries from Secrets: DATABASE_URL and, when configured, the Anthropic key file for every pod;
METRICS_TOKEN for the pods that serve /metrics.
Call: include "sdxl-lora-service.secretEnv" (dict "root" $ "metrics" true)
*/}}
{{- define "sdxl-lora-service.secretEnv" -}}
{{- $values := .root.Values -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.existingSecret is required: a Secret with the postgres:// URL (README \"Secrets\")" $values.database.existingSecret }}
      key: {{ $values.database.existingSecretKey }}
{{- if $values.anthropic.existingSecret }}
- name: ANTHROPIC_API_KEY_FILE
  value: {{ include "sdxl-lora-service.anthropicKeyDir" .root }}/api-key
{{- end }}
{{- if and .metrics $values.metrics.token.existingSecret }}
- name: METRICS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $values.metrics.token.existingSecret }}
      key: {{ $values.metrics.token.existingSecretKey }}
{{- end }}
{{- end }}

{{/* ---- volumes */}}

{{/* The writable /tmp (the root file system is read-only) and the Anthropic key, for every pod. */}}
{{- define "sdxl-lora-service.baseVolumes" -}}
- name: tmp
  emptyDir:
    {{- with .Values.tmpVolume.sizeLimit }}
    sizeLimit: {{ . }}
    {{- else }} {}
    {{- end }}
{{- with .Values.anthropic.existingSecret }}
- name: anthropic
  secret:
    secretName: {{ . }}
    defaultMode: 288 {{- /* 0440: the pod's group (fsGroup) reads it, nobody writes */}}
    items:
      - key: {{ $.Values.anthropic.existingSecretKey }}
        path: api-key
{{- end }}
{{- end }}

{{- define "sdxl-lora-service.baseVolumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.anthropic.existingSecret }}
- name: anthropic
  mountPath: {{ include "sdxl-lora-service.anthropicKeyDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/* The shared claims of the api and worker pods: /data and /models. */}}
{{- define "sdxl-lora-service.dataVolumes" -}}
- name: data
  persistentVolumeClaim:
    claimName: {{ .Values.persistence.data.existingClaim | default (include "sdxl-lora-service.componentName" (dict "root" . "component" "data")) }}
- name: models
  persistentVolumeClaim:
    claimName: {{ .Values.persistence.models.existingClaim | default (include "sdxl-lora-service.componentName" (dict "root" . "component" "models")) }}
{{- end }}

{{- define "sdxl-lora-service.dataVolumeMounts" -}}
- name: data
  mountPath: /data
- name: models
  mountPath: /models
{{- end }}

{{/* ---- pod spec parts shared by the Deployments */}}

{{- define "sdxl-lora-service.podCommon" -}}
serviceAccountName: {{ include "sdxl-lora-service.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automount }}
{{- /* No <SERVICE>_PORT variables from other Services: the process reads only its own. */}}
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}
