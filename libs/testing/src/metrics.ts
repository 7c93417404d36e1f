import type { ServiceProcess } from './service-process.js';

/** The sum of a Prometheus metric's samples whose labels include `labels`; 0 when it has none. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`))) continue;
    total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

/** A metric from a service's ops `/metrics`, summed over the samples whose labels include `labels`; 0 when it has none. */
export async function metric(service: ServiceProcess, name: string, labels: Record<string, string> = {}): Promise<number> {
  return metricValue(await (await fetch(service.opsUrl('/metrics'))).text(), name, labels);
}
