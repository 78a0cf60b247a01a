{{/*
Object names are fixed, as in deploy/base: the webhook configuration is
cluster-wide and one install serves the whole cluster.
*/}}

{{/* Labels of every object's metadata; .component is webhook, readiness or certs. */}}
{{- define "depends-on.labels" -}}
{{ include "depends-on.selectorLabels" . }}
{{ include "depends-on.commonLabels" .root }}
{{- end }}

{{/* Labels of objects that belong to no component (the Namespace). */}}
{{- define "depends-on.commonLabels" -}}
app.kubernetes.io/part-of: depends-on
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Selector and pod template labels (no Helm labels: they would change on upgrade). */}}
{{- define "depends-on.selectorLabels" -}}
app.kubernetes.io/name: depends-on
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "depends-on.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "depends-on.waitImage" -}}
{{ .Values.waitImage.repository }}:{{ .Values.waitImage.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "depends-on.clusterDomain" -}}
{{ .Values.webhook.clusterDomain | default "cluster.local" }}
{{- end }}

{{/*
The serving certificates, one Secret each, issued by cert-manager (Certificate
.certificate) or by the certs Job (--serving, Role resourceNames) from the
same CA; .component labels the Certificate.
*/}}
{{- define "depends-on.servings" -}}
- secret: depends-on-webhook-tls
  service: depends-on-webhook
  certificate: depends-on-webhook-serving
  component: webhook
{{- if .Values.readiness.enabled }}
- secret: depends-on-readiness-tls
  service: depends-on-readiness
  certificate: depends-on-readiness-serving
  component: readiness
{{- end }}
{{- end }}

{{- define "depends-on.readinessImage" -}}
{{ .Values.readiness.image.repository }}:{{ .Values.readiness.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Restricted Pod Security settings shared by every container. */}}
{{- define "depends-on.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
  - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}
