{{/* Environment of the auth service (besides NATS_URL, NATS_SUBJECT_PREFIX, LOG_LEVEL, HOST). */}}
{{- define "switchboard.authEnv" -}}
{{- $authSecret := include "switchboard.authSecretName" . -}}
- name: PORT
  value: "2347"
- name: OPS_PORT
  value: "9401"
{{ include "switchboard.databaseEnv" . }}
- name: DATABASE_POOL_SIZE
  value: {{ .Values.database.poolSize | quote }}
- name: JWT_ISSUER
  value: {{ .Values.jwt.issuer | quote }}
- name: JWT_AUDIENCE
  value: {{ .Values.jwt.audience | quote }}
- name: ACCESS_TOKEN_TTL
  value: {{ .Values.auth.accessTokenTtl | quote }}
- name: TRUST_PROXY
  value: {{ include "switchboard.trustProxy" . | quote }}
{{- if .Values.auth.existingSecret }}
- name: JWT_PRIVATE_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $authSecret }}
      key: {{ .Values.auth.existingSecretKeys.jwtPrivateKey }}
      optional: true
- name: AUTH_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ $authSecret }}
      key: {{ .Values.auth.existingSecretKeys.apiKeys }}
      optional: true
{{- else }}
{{- if .Values.auth.jwtPrivateKey }}
- name: JWT_PRIVATE_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $authSecret }}
      key: JWT_PRIVATE_KEY
{{- end }}
{{- if .Values.auth.apiKeys }}
- name: AUTH_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ $authSecret }}
      key: AUTH_API_KEYS
{{- end }}
{{- end }}
{{- if or .Values.auth.admin.existingSecret .Values.auth.admin.username }}
{{- $adminSecret := include "switchboard.adminSecretName" . }}
- name: ADMIN_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $adminSecret }}
      key: {{ .Values.auth.admin.usernameKey }}
- name: ADMIN_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $adminSecret }}
      key: {{ .Values.auth.admin.passwordKey }}
{{- end }}
{{- end -}}

{{/*
TRUST_PROXY of the auth service: auth.trustProxy as given (true, false, or a
comma-separated list of addresses, CIDRs and the presets loopback, linklocal, uniquelocal). Unset
(null or ""): "uniquelocal" behind the chart's auth ingress, whose controller pods have private
addresses, else "false".
*/}}
{{- define "switchboard.trustProxy" -}}
{{- $trustProxy := .Values.auth.trustProxy -}}
{{- if kindIs "invalid" $trustProxy -}}
{{- $trustProxy = "" -}}
{{- end -}}
{{- if eq (toString $trustProxy) "" -}}
{{- ternary "uniquelocal" "false" (.Values.auth.ingress.enabled | default false) -}}
{{- else -}}
{{- toString $trustProxy -}}
{{- end -}}
{{- end -}}

{{/* Environment of the persistence service. */}}
{{- define "switchboard.persistenceEnv" -}}
- name: OPS_PORT
  value: "9402"
{{ include "switchboard.databaseEnv" . }}
- name: DATABASE_POOL_SIZE
  value: {{ .Values.database.poolSize | quote }}
- name: BATCH_MAX
  value: {{ .Values.persistence.batchMax | quote }}
- name: INBOUND_REPLICAS
  value: {{ .Values.persistence.inbound.replicas | quote }}
- name: INBOUND_ACK_WAIT
  value: {{ .Values.persistence.inbound.ackWait | quote }}
- name: INBOUND_MAX_DELIVER
  value: {{ .Values.persistence.inbound.maxDeliver | quote }}
- name: INBOUND_DUPLICATE_WINDOW
  value: {{ .Values.persistence.inbound.duplicateWindow | quote }}
- name: INBOUND_MAX_AGE
  value: {{ .Values.persistence.inbound.maxAge | quote }}
{{- end -}}

{{/* Environment of the gateway. */}}
{{- define "switchboard.gatewayEnv" -}}
- name: PORT
  value: "2346"
- name: OPS_PORT
  value: "9403"
- name: JWT_ISSUER
  value: {{ .Values.jwt.issuer | quote }}
- name: JWT_AUDIENCE
  value: {{ .Values.jwt.audience | quote }}
- name: DRAIN_SECONDS
  value: {{ .Values.gateway.drainSeconds | quote }}
{{- with .Values.gateway.allowedOrigins }}
- name: ALLOWED_ORIGINS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.gateway.publicAuthUrl }}
- name: PUBLIC_AUTH_URL
  value: {{ . | quote }}
{{- end }}
{{- end -}}
