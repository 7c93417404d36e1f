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
{{- with .Values.auth.corsOrigins }}
- name: CORS_ORIGINS
  value: {{ join "," . | quote }}
{{- end }}
{{- if .Values.auth.existingSecret }}
{{- /*
Each key named is required: a Secret misnamed, or without the key, keeps the pod from starting
(CreateContainerConfigError names it), where an optional one started auth without API keys and
with a signing key of its own making. A key set to "" is not read.
*/}}
{{- with .Values.auth.existingSecretKeys.jwtPrivateKey }}
- name: JWT_PRIVATE_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $authSecret }}
      key: {{ . }}
{{- end }}
{{- with .Values.auth.existingSecretKeys.apiKeys }}
- name: AUTH_API_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ $authSecret }}
      key: {{ . }}
{{- end }}
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
- name: MAX_CONNECTION_AGE_S
  {{- $age := .Values.gateway.maxConnectionAgeSeconds }}
  {{- if kindIs "invalid" $age }}
  {{- $age = ternary 3600 0 .Values.gateway.autoscaling.enabled }}
  {{- end }}
  value: {{ $age | int | toString | quote }}
{{- with .Values.gateway.allowedOrigins }}
- name: ALLOWED_ORIGINS
  value: {{ join "," . | quote }}
{{- end }}
{{- with .Values.gateway.publicAuthUrl }}
- name: PUBLIC_AUTH_URL
  value: {{ . | quote }}
{{- end }}
{{- end -}}

{{/*
The values behind the variables the chart sets, named in the error that refuses a <component>.env
entry overriding one of them. A variable missing here (PORT, OPS_PORT) is fixed by the chart.
*/}}
{{- define "switchboard.envSources" -}}
HOST: listenAddress
NATS_URL: nats.url or nats.existingSecret
NATS_SUBJECT_PREFIX: nats.subjectPrefix
LOG_LEVEL: logLevel
DATABASE_URL: database.url or database.existingSecret
DATABASE_POOL_SIZE: database.poolSize
JWT_ISSUER: jwt.issuer
JWT_AUDIENCE: jwt.audience
ACCESS_TOKEN_TTL: auth.accessTokenTtl
TRUST_PROXY: auth.trustProxy
CORS_ORIGINS: auth.corsOrigins
JWT_PRIVATE_KEY: auth.jwtPrivateKey or auth.existingSecret
AUTH_API_KEYS: auth.apiKeys or auth.existingSecret
ADMIN_USERNAME: auth.admin.username or auth.admin.existingSecret
ADMIN_PASSWORD: auth.admin.password or auth.admin.existingSecret
BATCH_MAX: persistence.batchMax
INBOUND_REPLICAS: persistence.inbound.replicas
INBOUND_ACK_WAIT: persistence.inbound.ackWait
INBOUND_MAX_DELIVER: persistence.inbound.maxDeliver
INBOUND_DUPLICATE_WINDOW: persistence.inbound.duplicateWindow
INBOUND_MAX_AGE: persistence.inbound.maxAge
DRAIN_SECONDS: gateway.drainSeconds
MAX_CONNECTION_AGE_S: gateway.maxConnectionAgeSeconds
ALLOWED_ORIGINS: gateway.allowedOrigins
PUBLIC_AUTH_URL: gateway.publicAuthUrl
{{- end -}}

{{/*
Fails the render when <component>.env names a variable the chart already sets for that component:
the later entry would win in the pod while the chart goes on computing from its own value (the
gateway's grace period from gateway.drainSeconds, for one). The names are those of the rendered env.
Call with (dict "component" "gateway" "chartEnv" <the chart's env list as YAML> "extra" .Values.gateway.env).
*/}}
{{- define "switchboard.refuseEnvOverrides" -}}
{{- $sources := include "switchboard.envSources" . | fromYaml -}}
{{- $chartNames := list -}}
{{- range fromYamlArray .chartEnv -}}
{{- $chartNames = append $chartNames .name -}}
{{- end -}}
{{- range $name, $_ := .extra -}}
{{- if has $name $chartNames -}}
{{- $source := get $sources $name -}}
{{- $instead := ternary (printf "set %s instead" $source) "remove it, the chart fixes its value" (ne $source "") -}}
{{- fail (printf "%s.env.%s would override %s, which the chart sets for %s: %s" $.component $name $name $.component $instead) -}}
{{- end -}}
{{- end -}}
{{- end -}}
