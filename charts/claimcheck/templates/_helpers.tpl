{{/* The prefix of every resource name: the release name, or <release>-claimcheck. */}}
{{- define "claimcheck.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "claimcheck.controller" -}}{{ include "claimcheck.fullname" . }}-controller{{- end -}}
{{- define "claimcheck.webhookService" -}}{{ include "claimcheck.fullname" . }}-webhook{{- end -}}
{{- define "claimcheck.webhookSecret" -}}{{ include "claimcheck.fullname" . }}-webhook-tls{{- end -}}
{{- define "claimcheck.webhookConfiguration" -}}{{ include "claimcheck.fullname" . }}{{- end -}}
{{- define "claimcheck.serviceAccount" -}}
{{- default (include "claimcheck.controller" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Labels that select the operator's pods: stable across upgrades. */}}
{{- define "claimcheck.selectorLabels" -}}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "claimcheck.labels" -}}
{{ include "claimcheck.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* repository[:tag][@digest] of an image value; the tag defaults to appVersion. */}}
{{- define "claimcheck.imageRef" -}}
{{- $image := index . 0 -}}{{- $chart := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "claimcheck.image" -}}
{{- include "claimcheck.imageRef" (list .Values.image .Chart) -}}
{{- end -}}

{{/* The sidecar's image: its own when set, the operator's otherwise. */}}
{{- define "claimcheck.sidecarImage" -}}
{{- if .Values.sidecar.image.repository -}}
{{- include "claimcheck.imageRef" (list .Values.sidecar.image .Chart) -}}
{{- else -}}
{{- include "claimcheck.image" . -}}
{{- end -}}
{{- end -}}

{{/* Namespaces the webhook never sees: kube-system, the operator's own, and the extra ones. */}}
{{- define "claimcheck.excludedNamespaces" -}}
{{- $excluded := list "kube-system" .Release.Namespace -}}
{{- range .Values.webhook.excludedNamespaces -}}{{- $excluded = append $excluded . -}}{{- end -}}
{{- toJson (uniq $excluded) -}}
{{- end -}}
