{{/*
A Deployment of one Switchboard service. Call with a dict:
  root:      the top-level context
  component: auth | persistence | gateway
  values:    the component's values
  args:      the command (tini stays the entrypoint)
  ports:     list of {name, port}
  env:       rendered env entries (YAML list) specific to the component
  replicas:  false to leave replicas to an HPA
*/}}
{{- define "switchboard.deployment" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $ctx := dict "root" $root "component" .component -}}
{{- /* HOST: listenAddress, "0.0.0.0" by default, "::" on IPv6-only and dual-stack clusters. */}}
{{- $chartEnv := printf "%s\n- name: HOST\n  value: %s\n%s" (include "switchboard.commonEnv" $ctx) ($root.Values.listenAddress | toString | quote) (.env | trim) -}}
{{- include "switchboard.refuseEnvOverrides" (dict "component" .component "chartEnv" $chartEnv "extra" $v.env) -}}
{{- $env := $chartEnv -}}
{{- with $v.env }}
{{- $env = printf "%s\n%s" $env (include "switchboard.extraEnv" . | trim) -}}
{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "switchboard.componentName" $ctx }}
  labels:
    {{- include "switchboard.labels" $ctx | nindent 4 }}
spec:
  {{- if .replicas }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 25%
  selector:
    matchLabels:
      {{- include "switchboard.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "switchboard.podLabels" $ctx | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- $checksum := include "switchboard.secretChecksum" (dict "root" $root "env" $env) }}
      {{- if or $checksum $v.podAnnotations }}
      annotations:
        {{- with $checksum }}
        {{- /* Only the Secret data this component reads: a new API key restarts auth, not the gateways. */}}
        checksum/secrets: {{ . }}
        {{- end }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
    spec:
      {{- include "switchboard.podServiceAccount" (dict "root" $root "name" (include "switchboard.serviceAccountName" $root)) | nindent 6 }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . | quote }}
      {{- end }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "switchboard.podSecurityContext" $root | nindent 8 }}
      {{- with .terminationGracePeriodSeconds }}
      terminationGracePeriodSeconds: {{ . }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "switchboard.image" $root | quote }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          ports:
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          env:
            {{- $env | nindent 12 }}
          {{- include "switchboard.probes" $v | nindent 10 }}
          {{- with .lifecycle }}
          lifecycle:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- include "switchboard.containerSecurityContext" $root | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- with include "switchboard.extraVolumeMounts" (dict "root" $root "component" .component "values" $v) }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        {{- with include "switchboard.extraVolumes" (dict "root" $root "component" .component "values" $v) }}
        {{- . | nindent 8 }}
        {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- include "switchboard.topologySpread" (dict "root" $root "component" $ctx.component "constraints" .) | trim | nindent 8 }}
      {{- end }}
      {{- with include "switchboard.scheduling" $v }}
      {{- . | trim | nindent 6 }}
      {{- end }}
{{- end -}}
