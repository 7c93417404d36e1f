import { createServer, type Server } from 'node:http';

/**
 * The ops port of a baseline server, like the services': `/readyz` and `/metrics` with the
 * process's CPU and resident memory, so the bench reads every system the same way.
 */
export function startOpsPort(port: number, host: string): Server {
  const server = createServer((request, response) => {
    if (request.url === '/metrics') {
      const cpu = process.cpuUsage();
      const body = [
        '# TYPE process_cpu_seconds_total counter',
        `process_cpu_seconds_total ${(cpu.user + cpu.system) / 1e6}`,
        '# TYPE process_resident_memory_bytes gauge',
        `process_resident_memory_bytes ${process.memoryUsage.rss()}`,
        '# TYPE nodejs_heap_size_used_bytes gauge',
        `nodejs_heap_size_used_bytes ${process.memoryUsage().heapUsed}`,
        '# TYPE nodejs_external_memory_bytes gauge',
        `nodejs_external_memory_bytes ${process.memoryUsage().external}`,
        '',
      ].join('\n');
      response.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(body);
      return;
    }
    if (request.url === '/readyz' || request.url === '/healthz') {
      response.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    response.writeHead(404).end();
  });
  server.listen(port, host);
  return server;
}

export function listenPorts(): { port: number; opsPort: number; host: string } {
  return { port: Number(process.env.PORT ?? 0), opsPort: Number(process.env.OPS_PORT ?? 0), host: process.env.HOST ?? '127.0.0.1' };
}
