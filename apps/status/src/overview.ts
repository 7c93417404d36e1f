import type { EndpointStats } from 'nats';

export interface InstanceRow {
  service: string;
  instance: string;
  version: string;
  uptimeSeconds: number;
  requests: number;
  errors: number;
  figures: Record<string, number>;
}

/** The services of an installation, each registered with the NATS services framework as `<prefix>-<service>`. */
export const SERVICES = ['auth', 'gateway', 'persistence'] as const;
export type Service = (typeof SERVICES)[number];

/** A service with no instance answering, as `--json` lists it beside the instances. */
export interface MissingService {
  service: Service;
  missing: true;
}

/**
 * Figures every instance reports of the same shared thing, the inbound consumer's backlog, which
 * the totals show once rather than once per persistence replica.
 */
const SHARED_FIGURES = new Set(['pending', 'ackPending']);
/** Figures whose sum over instances means nothing: a session with members on two gateways counts on both. */
const UNSUMMABLE_FIGURES = new Set(['sessions']);

/**
 * An endpoint's `data` in `$SRV.STATS`: the figures a Switchboard service reports, or none. Only
 * finite numbers count: anything else (from another version, or another program registered under
 * the name) would print as junk in the totals, which add the figures up.
 */
const figuresOf = (data: unknown): Record<string, number> =>
  typeof data === 'object' && data !== null && !Array.isArray(data)
    ? Object.fromEntries(Object.entries(data).filter((entry): entry is [string, number] => Number.isFinite(entry[1])))
    : {};

/**
 * One row per service instance of this installation, sorted. Only this installation's services
 * count: prefixes may contain `-`, so `switchboard-staging-gateway` is not a service of prefix
 * `switchboard`.
 */
export function toRows(stats: readonly EndpointStats[], prefix: string, now = Date.now()): InstanceRow[] {
  const names = new Set<string>(SERVICES.map((service) => `${prefix}-${service}`));
  return stats
    .filter((entry) => names.has(entry.name))
    .map((entry) => {
      const endpoints = entry.endpoints ?? [];
      // Each endpoint's data holds the service's figures and the endpoint's own error answers
      // (`errors`), which nats.js's `num_errors` does not count: the handlers answer asynchronously.
      const { errors: _errors, ...figures } = figuresOf(endpoints.find((endpoint) => endpoint.data)?.data);
      return {
        service: entry.name.slice(prefix.length + 1),
        instance: entry.id,
        version: entry.version,
        uptimeSeconds: Math.max(0, Math.round((now - Date.parse(entry.started)) / 1000)),
        requests: endpoints.reduce((sum, endpoint) => sum + endpoint.num_requests, 0),
        errors: endpoints.reduce((sum, endpoint) => sum + endpoint.num_errors + (figuresOf(endpoint.data).errors ?? 0), 0),
        figures,
      };
    })
    .sort((a, b) => a.service.localeCompare(b.service) || a.instance.localeCompare(b.instance));
}

/**
 * The services of the installation with no instance among the rows. A service that is down does
 * not answer `$SRV.STATS` at all, so it shows only by its absence; naming it is what lets an
 * operator, or a cron job, notice.
 */
export function missingServices(rows: readonly InstanceRow[]): Service[] {
  const answered = new Set(rows.map((row) => row.service));
  return SERVICES.filter((service) => !answered.has(service));
}

/**
 * What `--json` prints: the rows, and each missing service as `{ "service": "auth", "missing": true }`
 * in its place by service name. It stays one array of entries that each have a `service`, as it
 * was before missing services were listed, so that readers of the rows keep working.
 */
export function toJsonEntries(rows: readonly InstanceRow[]): (InstanceRow | MissingService)[] {
  const missing = missingServices(rows).map((service): MissingService => ({ service, missing: true }));
  return [...rows, ...missing].sort((a, b) => a.service.localeCompare(b.service));
}

const noInstanceLine = (service: Service) => `${service}: no instance answered`;

const formatUptime = (seconds: number) =>
  seconds >= 86_400
    ? `${Math.floor(seconds / 86_400)}d${Math.floor((seconds % 86_400) / 3600)}h`
    : seconds >= 3600
      ? `${Math.floor(seconds / 3600)}h${Math.floor((seconds % 3600) / 60)}m`
      : `${Math.floor(seconds / 60)}m${seconds % 60}s`;

/**
 * The table `npm run status` prints, with a line per service underneath: its totals (the shared
 * backlog once, sessions not at all), or that no instance of it answered.
 */
export function formatOverview(rows: readonly InstanceRow[]): string {
  if (rows.length === 0) return `No Switchboard service answered.\n\n${SERVICES.map(noInstanceLine).join('\n')}\n`;
  const header = ['SERVICE', 'INSTANCE', 'VERSION', 'UPTIME', 'REQUESTS', 'ERRORS', 'FIGURES'];
  const lines = rows.map((row) => [
    row.service,
    row.instance,
    row.version,
    formatUptime(row.uptimeSeconds),
    String(row.requests),
    String(row.errors),
    Object.entries(row.figures)
      .map(([key, value]) => `${key}=${value}`)
      .join(' '),
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => line[column]?.length ?? 0)));
  const render = (cells: string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd();

  const totals = new Map<string, { instances: number; figures: Record<string, number> }>();
  for (const row of rows) {
    const total = totals.get(row.service) ?? { instances: 0, figures: {} };
    total.instances++;
    for (const [key, value] of Object.entries(row.figures)) {
      if (UNSUMMABLE_FIGURES.has(key)) continue;
      total.figures[key] = SHARED_FIGURES.has(key) ? Math.max(total.figures[key] ?? 0, value) : (total.figures[key] ?? 0) + value;
    }
    totals.set(row.service, total);
  }
  const summary = SERVICES.map((service) => {
    const total = totals.get(service);
    if (!total) return noInstanceLine(service);
    return `${service}: ${total.instances} instance${total.instances === 1 ? '' : 's'}${Object.entries(total.figures)
      .map(([key, value]) => `, ${key} ${value}`)
      .join('')}`;
  });
  return `${[render(header), ...lines.map(render)].join('\n')}\n\n${summary.join('\n')}\n`;
}
