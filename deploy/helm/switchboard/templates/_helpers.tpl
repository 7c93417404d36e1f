{{/* Chart name, overridable with nameOverride. */}}
{{- define "switchboard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: release name, plus the chart name unless the release already contains it. */}}
{{- define "switchboard.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Chart name and version for the helm.sh/chart label. */}}
{{- define "switchboard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Name of one component's objects: <fullname>-<component>. Call with (dict "root" $ "component" "gateway"). */}}
{{- define "switchboard.componentName" -}}
{{- printf "%s-%s" (include "switchboard.fullname" .root | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{/* Selector labels of one component. Call with (dict "root" $ "component" "gateway"). */}}
{{- define "switchboard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "switchboard.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
The labels of a pod: those of every object but helm.sh/chart, so that a new chart version alone
(an alert, a note) rolls no pod, and the gateways' clients do not all reconnect for it. The
version is the image's tag, made a valid label value. Call with (dict "root" $ "component" "gateway").
*/}}
{{- define "switchboard.podLabels" -}}
{{ include "switchboard.selectorLabels" . }}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion }}
app.kubernetes.io/version: {{ regexReplaceAll "[^A-Za-z0-9._-]" $tag "_" | trunc 63 | trimAll "._-" | quote }}
app.kubernetes.io/part-of: {{ include "switchboard.name" .root }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* The standard labels of every object. Call with (dict "root" $ "component" "gateway"). */}}
{{- define "switchboard.labels" -}}
helm.sh/chart: {{ include "switchboard.chart" .root }}
{{ include "switchboard.podLabels" . }}
{{- end -}}

{{/*
The ServiceAccount of the services' pods and the test Pod: the chart's, or the one named, or empty
for the namespace's default.
*/}}
{{- define "switchboard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "switchboard.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The migrations Job's ServiceAccount. A hook runs before the release's objects exist, so when the
chart creates accounts the Job gets one of its own, made as a hook before it.
*/}}
{{- define "switchboard.migrationsServiceAccountName" -}}
{{- $name := include "switchboard.serviceAccountName" . -}}
{{- if .Values.serviceAccount.create -}}
{{- printf "%s-migrations" $name -}}
{{- else -}}
{{- $name -}}
{{- end -}}
{{- end -}}

{{/* A pod's ServiceAccount and token settings. Call with (dict "root" $ "name" <account name>). */}}
{{- define "switchboard.podServiceAccount" -}}
{{- with .name }}
serviceAccountName: {{ . }}
{{- end }}
automountServiceAccountToken: {{ .root.Values.serviceAccount.automountToken }}
{{- end -}}

{{/* The image reference; the tag defaults to the chart's appVersion. */}}
{{- define "switchboard.image" -}}
{{- $repository := required "image.repository must be set: the image you built from deploy/docker/Dockerfile and pushed (none is published)" .Values.image.repository -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Secret and key holding DATABASE_URL. */}}
{{- define "switchboard.databaseSecretName" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else -}}
{{- include "switchboard.componentName" (dict "root" . "component" "database") -}}
{{- end -}}
{{- end -}}

{{/* Fails the render when no database is configured. */}}
{{- define "switchboard.requireDatabase" -}}
{{- if not (or .Values.database.url .Values.database.existingSecret) -}}
{{- fail "database.url or database.existingSecret must be set (PostgreSQL is not bundled)" -}}
{{- end -}}
{{- end -}}

{{/* Secret of the auth service (JWT_PRIVATE_KEY, AUTH_API_KEYS). */}}
{{- define "switchboard.authSecretName" -}}
{{- if .Values.auth.existingSecret -}}
{{- .Values.auth.existingSecret -}}
{{- else -}}
{{- include "switchboard.componentName" (dict "root" . "component" "auth") -}}
{{- end -}}
{{- end -}}

{{/* True when the chart creates the auth Secret: values given and no existingSecret. */}}
{{- define "switchboard.createAuthSecret" -}}
{{- if and (not .Values.auth.existingSecret) (or .Values.auth.jwtPrivateKey .Values.auth.apiKeys) -}}true{{- end -}}
{{- end -}}

{{/* Secret holding the bootstrap admin's username and password. */}}
{{- define "switchboard.adminSecretName" -}}
{{- if .Values.auth.admin.existingSecret -}}
{{- .Values.auth.admin.existingSecret -}}
{{- else -}}
{{- include "switchboard.componentName" (dict "root" . "component" "admin") -}}
{{- end -}}
{{- end -}}

{{/* True when the chart creates the admin Secret. */}}
{{- define "switchboard.createAdminSecret" -}}
{{- if and (not .Values.auth.admin.existingSecret) .Values.auth.admin.username -}}true{{- end -}}
{{- end -}}

{{/* Environment shared by every service: dict "root" (the chart's context) and "component". */}}
{{- define "switchboard.commonEnv" -}}
{{- $values := .root.Values -}}
- name: NATS_URL
{{- if $values.nats.existingSecret }}
  valueFrom:
    secretKeyRef:
      name: {{ $values.nats.existingSecret | quote }}
      key: {{ .component | quote }}
{{- else }}
  value: {{ $values.nats.url | quote }}
{{- end }}
- name: NATS_SUBJECT_PREFIX
  value: {{ $values.nats.subjectPrefix | quote }}
- name: LOG_LEVEL
  value: {{ $values.logLevel | quote }}
{{- end -}}

{{/*
DATABASE_URL from its Secret. database.existingSecretKey names the key of an existing Secret; the
Secret the chart creates from database.url always has the key DATABASE_URL.
*/}}
{{- define "switchboard.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "switchboard.databaseSecretName" . }}
      {{- if .Values.database.existingSecret }}
      key: {{ .Values.database.existingSecretKey | default "DATABASE_URL" }}
      {{- else }}
      key: DATABASE_URL
      {{- end }}
{{- end -}}

{{/*
Extra env of a component: a map of name to value (string, number, boolean) or to a
valueFrom-style object. Numbers from values files arrive as float64, which toString would write as
4.194304e+06: whole ones are written as integers.
*/}}
{{- define "switchboard.extraEnv" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
{{- if kindIs "map" $value }}
  valueFrom:
    {{- toYaml $value | nindent 4 }}
{{- else if and (kindIs "float64" $value) (eq $value (floor $value)) }}
  value: {{ printf "%.0f" $value | quote }}
{{- else }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
Checksum of the data of the chart's Secrets (templates/secrets.yaml) that a component's env reads,
by Secret, key and value; empty when it reads none. Call with (dict "root" $ "env" <the env list
as YAML>). Secrets given as existingSecret are not the chart's: a change to them restarts nothing.
*/}}
{{- define "switchboard.secretChecksum" -}}
{{- $secrets := dict -}}
{{- range regexSplit "(?m)^---\\s*$" (include (print .root.Template.BasePath "/secrets.yaml") .root) -1 -}}
{{- $secret := fromYaml . -}}
{{- with $secret.metadata -}}
{{- $_ := set $secrets .name ($secret.stringData | default dict) -}}
{{- end -}}
{{- end -}}
{{- $read := list -}}
{{- range fromYamlArray .env -}}
{{- $ref := dig "valueFrom" "secretKeyRef" dict . -}}
{{- $data := get $secrets ($ref.name | default "") | default dict -}}
{{- if and $ref.key (hasKey $data $ref.key) -}}
{{- $read = append $read (list $ref.name $ref.key (get $data $ref.key)) -}}
{{- end -}}
{{- end -}}
{{- with $read -}}
{{- toJson . | sha256sum -}}
{{- end -}}
{{- end -}}

{{/*
A Service of one component's pods. Call with (dict "ctx" (dict "root" $ "component" "gateway")
"name" <its name> "type" ClusterIP|NodePort|LoadBalancer "ports" (list {name, port}) "annotations" <map or nil>
"externalTrafficPolicy" <"", Cluster or Local; NodePort and LoadBalancer only>).
*/}}
{{- define "switchboard.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}
  labels:
    {{- include "switchboard.labels" .ctx | nindent 4 }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .type }}
  {{- if and .externalTrafficPolicy (ne .type "ClusterIP") }}
  externalTrafficPolicy: {{ .externalTrafficPolicy }}
  {{- end }}
  {{- if eq .type "LoadBalancer" }}
  {{- with .loadBalancerClass }}
  loadBalancerClass: {{ . | quote }}
  {{- end }}
  {{- with .loadBalancerSourceRanges }}
  loadBalancerSourceRanges:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- end }}
  selector:
    {{- include "switchboard.selectorLabels" .ctx | nindent 4 }}
  ports:
    {{- range .ports }}
    - name: {{ .name }}
      port: {{ .port }}
      targetPort: {{ .name }}
      protocol: TCP
      {{- if eq .name "ws" }}
      appProtocol: kubernetes.io/ws
      {{- end }}
    {{- end }}
{{- end -}}

{{/* nodeSelector, affinity and tolerations of a pod spec, those given. Call with the component's values. */}}
{{- define "switchboard.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Pod-level security context. */}}
{{- define "switchboard.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{/* Container-level security context. */}}
{{- define "switchboard.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/*
Topology spread constraints of a component; an entry without labelSelector gets the component's
selector labels, and matchLabelKeys [pod-template-hash] unless it names its own, so that the
spread is counted within one rollout's pods: counted with the old ReplicaSet's, the new pods of a
rolling update can all land in one zone once the old ones go.
Call with (dict "root" $ "component" "gateway" "constraints" .Values.gateway.topologySpreadConstraints).
*/}}
{{- define "switchboard.topologySpread" -}}
{{- $ctx := . -}}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" (include "switchboard.selectorLabels" $ctx | fromYaml)) }}
{{- if not (hasKey $c "matchLabelKeys") }}
{{- $_ := set $c "matchLabelKeys" (list "pod-template-hash") }}
{{- end }}
{{- end }}
- {{ toYaml $c | nindent 2 | trim }}
{{- end }}
{{- end -}}

{{/* Probes on the ops port (named "ops"). Call with the component's values. */}}
{{- define "switchboard.probes" -}}
startupProbe:
  httpGet: { path: /healthz, port: ops }
  periodSeconds: {{ .probes.startup.periodSeconds }}
  failureThreshold: {{ .probes.startup.failureThreshold }}
  timeoutSeconds: 3
readinessProbe:
  httpGet: { path: /readyz, port: ops }
  periodSeconds: {{ .probes.readiness.periodSeconds }}
  failureThreshold: {{ .probes.readiness.failureThreshold }}
  timeoutSeconds: 3
livenessProbe:
  httpGet: { path: /healthz, port: ops }
  periodSeconds: {{ .probes.liveness.periodSeconds }}
  failureThreshold: {{ .probes.liveness.failureThreshold }}
  timeoutSeconds: 5
{{- end -}}

{{/*
The gateway's grace period: explicit, or preStop sleep + drainSeconds + margin. After the drain
the gateway still waits up to 2 s for sends in flight and frames being handled to be answered, up to a second for close
handshakes, and then drains its NATS connection: the chart refuses less than 5 s past preStop + drain.
*/}}
{{- define "switchboard.gatewayGracePeriod" -}}
{{- $g := .Values.gateway -}}
{{- $minMargin := 5 -}}
{{- $drained := add $g.preStopSleepSeconds $g.drainSeconds -}}
{{- $grace := $g.terminationGracePeriodSeconds | default (add $drained $g.shutdownMarginSeconds) -}}
{{- if lt (int $grace) (int (add $drained $minMargin)) -}}
{{- fail (printf "gateway.terminationGracePeriodSeconds (%v) must be at least preStopSleepSeconds + drainSeconds (%v) + %v s for the sends in flight, the close handshakes and the NATS drain" $grace $drained $minMargin) -}}
{{- end -}}
{{- $grace -}}
{{- end -}}

{{/*
The extra volumes of one pod: the top-level extraVolumes, then the component's. Call with (dict
"root" $ "component" "auth" "values" .Values.auth). Fails on a volume name given twice (the chart's
tmp included), which the API server would refuse.
*/}}
{{- define "switchboard.extraVolumes" -}}
{{- $volumes := concat (.root.Values.extraVolumes | default list) (.values.extraVolumes | default list) -}}
{{- $names := list "tmp" -}}
{{- range $volumes -}}
{{- if has .name $names -}}
{{- fail (printf "the %s pod would have two volumes named %s: rename one in extraVolumes or %s.extraVolumes (tmp is the chart's)" $.component .name $.component) -}}
{{- end -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- with $volumes }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/*
The extra volume mounts of every container of one pod: the top-level extraVolumeMounts, then the
component's. Call as switchboard.extraVolumes. Fails on a mount of a volume the pod does not have
and on a path mounted twice (/tmp included).
*/}}
{{- define "switchboard.extraVolumeMounts" -}}
{{- $names := list -}}
{{- range concat (.root.Values.extraVolumes | default list) (.values.extraVolumes | default list) -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- $mounts := concat (.root.Values.extraVolumeMounts | default list) (.values.extraVolumeMounts | default list) -}}
{{- $paths := list "/tmp" -}}
{{- range $mounts -}}
{{- if not (has .name $names) -}}
{{- fail (printf "extraVolumeMounts of %s: %s mounts the volume %s, which neither extraVolumes nor %s.extraVolumes defines" $.component .mountPath .name $.component) -}}
{{- end -}}
{{- if has (trimSuffix "/" .mountPath) $paths -}}
{{- fail (printf "extraVolumeMounts of %s: %s is mounted twice (/tmp is the chart's)" $.component .mountPath) -}}
{{- end -}}
{{- $paths = append $paths (trimSuffix "/" .mountPath) -}}
{{- end -}}
{{- with $mounts }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{/* Milliseconds of a duration value (10s, 2m, 1h, 7d, 500ms, or a bare number of seconds). */}}
{{- define "switchboard.milliseconds" -}}
{{- /* atoi: base 10, where int would read 010 as octal and 08 as nothing. */}}
{{- $number := regexFind "^[0-9]+" . | atoi -}}
{{- $unit := regexReplaceAll "^[0-9]+" . "" -}}
{{- $factor := get (dict "" 1000 "ms" 1 "s" 1000 "m" 60000 "h" 3600000 "d" 86400000) $unit -}}
{{- mul $number $factor -}}
{{- end -}}
