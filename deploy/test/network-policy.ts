/**
 * Kubernetes NetworkPolicy semantics (networking.k8s.io/v1), enough to ask of rendered policies
 * whether one endpoint may open a connection to another: policies are additive allow-lists; a pod
 * no policy selects for a direction is open in it; a connection needs the source's egress and the
 * destination's ingress. Endpoints outside the cluster are addresses with no policies of their own.
 */

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'; values?: string[] }[];
}

interface Peer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
  ipBlock?: { cidr: string; except?: string[] };
}

interface PolicyPort {
  port?: number | string;
  endPort?: number;
  protocol?: string;
}

interface Rule {
  ports?: PolicyPort[];
  from?: Peer[];
  to?: Peer[];
}

/** A policy with its namespace: the release's, where the chart leaves it out. */
export interface NetworkPolicy {
  metadata: { name: string; namespace: string };
  spec: {
    podSelector: LabelSelector;
    policyTypes?: ('Ingress' | 'Egress')[];
    ingress?: Rule[] | null;
    egress?: Rule[] | null;
  };
}

/** A pod: its namespace, its labels and its namespace's labels. */
export interface Pod {
  kind: 'pod';
  namespace: string;
  labels: Record<string, string>;
  namespaceLabels?: Record<string, string>;
  ip?: string;
}

/** A pod, or an address outside the cluster. */
export type Endpoint = Pod | { kind: 'address'; ip: string };

export function matchesSelector(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return true;
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) if (labels[key] !== value) return false;
  for (const { key, operator, values = [] } of selector.matchExpressions ?? []) {
    const has = key in labels;
    const value = labels[key] ?? '';
    if (operator === 'In' && !(has && values.includes(value))) return false;
    if (operator === 'NotIn' && has && values.includes(value)) return false;
    if (operator === 'Exists' && !has) return false;
    if (operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

function ipv4(address: string): number {
  const parts = address.split('.').map(Number);
  if (parts.length !== 4 || parts.some((part) => !Number.isInteger(part) || part < 0 || part > 255)) {
    throw new Error(`not an IPv4 address: ${address}`);
  }
  return parts.reduce((sum, part) => sum * 256 + part, 0);
}

function inCidr(address: string, cidr: string): boolean {
  const [base = '', bits = '32'] = cidr.split('/');
  const size = 2 ** (32 - Number(bits));
  const start = Math.floor(ipv4(base) / size) * size;
  const value = ipv4(address);
  return value >= start && value < start + size;
}

function namespaceLabels(endpoint: Pod): Record<string, string> {
  // The label every namespace carries since Kubernetes 1.22.
  return { 'kubernetes.io/metadata.name': endpoint.namespace, ...endpoint.namespaceLabels };
}

/** Whether `peer`, written in a policy of `policyNamespace`, names `endpoint`. */
function peerMatches(peer: Peer, policyNamespace: string, endpoint: Endpoint): boolean {
  if (peer.ipBlock) {
    // Pod addresses are meant to be named by selectors; an ipBlock is read for outside addresses.
    if (!endpoint.ip) return false;
    return inCidr(endpoint.ip, peer.ipBlock.cidr) && !(peer.ipBlock.except ?? []).some((cidr) => inCidr(endpoint.ip ?? '', cidr));
  }
  if (endpoint.kind !== 'pod') return false;
  if (peer.namespaceSelector) {
    if (!matchesSelector(peer.namespaceSelector, namespaceLabels(endpoint))) return false;
  } else if (endpoint.namespace !== policyNamespace) {
    return false;
  }
  return matchesSelector(peer.podSelector, endpoint.labels);
}

function portMatches(ports: PolicyPort[] | undefined, port: number, protocol: string): boolean {
  if (!ports || ports.length === 0) return true;
  return ports.some((entry) => {
    if ((entry.protocol ?? 'TCP') !== protocol) return false;
    if (entry.port === undefined) return true;
    if (typeof entry.port === 'string') throw new Error(`named port ${entry.port}: give numbers`);
    return entry.endPort === undefined ? entry.port === port : port >= entry.port && port <= entry.endPort;
  });
}

function policyTypes(policy: NetworkPolicy): string[] {
  // The API's default: Egress only with egress rules.
  return policy.spec.policyTypes ?? ((policy.spec.egress?.length ?? 0) > 0 ? ['Ingress', 'Egress'] : ['Ingress']);
}

/** Whether `pod`'s side of the connection lets it through, in `direction`. */
function sideAllows(
  policies: NetworkPolicy[],
  direction: 'Ingress' | 'Egress',
  pod: Endpoint,
  peer: Endpoint,
  port: number,
  protocol: string,
): boolean {
  if (pod.kind !== 'pod') return true;
  const selecting = policies.filter(
    (policy) =>
      policy.metadata.namespace === pod.namespace &&
      policyTypes(policy).includes(direction) &&
      matchesSelector(policy.spec.podSelector, pod.labels),
  );
  if (selecting.length === 0) return true;
  return selecting.some((policy) => {
    const rules = (direction === 'Ingress' ? policy.spec.ingress : policy.spec.egress) ?? [];
    const namespace = policy.metadata.namespace;
    return rules.some((rule) => {
      const peers = direction === 'Ingress' ? rule.from : rule.to;
      const peerAllowed = !peers || peers.length === 0 || peers.some((candidate) => peerMatches(candidate, namespace, peer));
      return peerAllowed && portMatches(rule.ports, port, protocol);
    });
  });
}

/** Whether `from` may open a connection to `to` on `port`. */
export function allows(policies: NetworkPolicy[], from: Endpoint, to: Endpoint, port: number, protocol = 'TCP'): boolean {
  return sideAllows(policies, 'Egress', from, to, port, protocol) && sideAllows(policies, 'Ingress', to, from, port, protocol);
}
