import { randomBytes } from 'node:crypto';
import { type ServiceProcess, startProcess } from '@switchboard/testing';
import { io, type Socket } from 'socket.io-client';
import { type EventSink, inPool, type System } from '../driver.js';
import type { Plan } from '../plan.js';
import { onCleanup, pidsListeningOn, trackChild } from '../processes.js';
import { type JsonFrame, JsonSocket } from './ws-client.js';

const CONNECT_CONCURRENCY = 256;

async function startBaseline(name: string, entry: string, env: Record<string, string> = {}): Promise<ServiceProcess> {
  const service = await startProcess(name, `tools/bench/dist/baselines/${entry}`, { env: { LOG_LEVEL: 'warn', ...env } });
  trackChild(service.child);
  return service;
}

/** Baseline (a): one plain `ws` process broadcasting to the sessions' sockets. */
export async function startPlainWs(): Promise<System> {
  const server = await startBaseline('ws', 'ws-server.js');
  const stop = onCleanup(async () => {
    await server.stop(5_000);
  });
  let sockets: (JsonSocket | undefined)[] = [];
  return {
    name: 'ws',
    label: 'plain ws (1 process)',
    processes: [{ name: 'ws', metricsUrl: server.opsUrl('/metrics'), pid: server.child.pid }],
    infraPids: async () => ({}),
    async connect(plan: Plan, sink: EventSink) {
      sockets = new Array(plan.connections);
      const onFrame = (connection: number) => (frame: JsonFrame) => {
        if (frame.type === 'new_message') {
          const message = frame.message as { client_msg_id: string; content: string; seq: number };
          sink.delivery(connection, message.client_msg_id, message.content, message.seq);
        } else if (frame.type === 'message_ack') sink.ack(connection, frame.client_msg_id as string);
        else if (frame.type === 'error') sink.error(connection, frame.client_msg_id as string | undefined, String(frame.code));
      };
      await inPool(
        Array.from({ length: plan.connections }, (_, i) => i),
        CONNECT_CONCURRENCY,
        async (connection) => {
          const socket = await JsonSocket.open(`ws://127.0.0.1:${server.port}/`, onFrame(connection));
          socket.ws.on('close', (code) => {
            if (!socket.closing) sink.closed(connection, code);
          });
          await socket.request({ type: 'join_session', session_id: (plan.sessionOf[connection] ?? 0) + 1 });
          sockets[connection] = socket;
        },
      );
    },
    send(connection, session, clientMsgId, content) {
      sockets[connection]?.send(
        `{"type":"send_message","session_id":${session + 1},"client_msg_id":"${clientMsgId}","content":${JSON.stringify(content)}}`,
      );
    },
    async disconnect() {
      await inPool(sockets, 1024, async (socket) => {
        await socket?.close();
      });
      sockets = [];
    },
    stop,
  };
}

/** Baseline (b): Socket.IO with the Redis adapter on `processes` processes; connections alternate between them. */
export async function startSocketIo(processes = 2): Promise<System> {
  const key = `bench-${randomBytes(4).toString('hex')}`;
  const servers: ServiceProcess[] = [];
  const stop = onCleanup(async () => {
    await Promise.all(servers.map((server) => server.stop(5_000)));
  });
  // startProcess passes on only the variables it is given, so the Redis address goes explicitly.
  const env: Record<string, string> = { REDIS_KEY: key };
  if (process.env.REDIS_URL) env.REDIS_URL = process.env.REDIS_URL;
  try {
    for (let i = 0; i < processes; i++) servers.push(await startBaseline(`socket.io-${i}`, 'socketio-server.js', env));
  } catch (error) {
    await stop();
    throw error;
  }
  let sockets: (Socket | undefined)[] = [];
  let sink: EventSink | undefined;
  const redisPids = pidsListeningOn('redis-server', Number(new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379').port || 6379));
  return {
    name: 'socketio',
    label: `Socket.IO + Redis (${processes} processes)`,
    processes: servers.map((server, index) => ({
      name: `socket.io-${index}`,
      metricsUrl: server.opsUrl('/metrics'),
      pid: server.child.pid,
    })),
    // Looked up once, before the load: the lookup reads every socket of the machine, synchronously.
    infraPids: async () => ({ redis: redisPids }),
    async connect(plan: Plan, events: EventSink) {
      sink = events;
      sockets = new Array(plan.connections);
      await inPool(
        Array.from({ length: plan.connections }, (_, i) => i),
        CONNECT_CONCURRENCY,
        async (connection) => {
          const server = servers[connection % servers.length] as ServiceProcess;
          const socket = io(`http://127.0.0.1:${server.port}`, {
            transports: ['websocket'],
            reconnection: false,
            forceNew: true,
            timeout: 20_000,
          });
          await new Promise<void>((resolve, reject) => {
            socket.once('connect', () => resolve());
            socket.once('connect_error', reject);
          });
          socket.on('new_message', (message: { client_msg_id: string; content: string }) =>
            events.delivery(connection, message.client_msg_id, message.content, undefined),
          );
          socket.on('disconnect', (reason) => {
            if (reason !== 'io client disconnect') events.closed(connection, 1006);
          });
          await socket.timeout(30_000).emitWithAck('join_session', (plan.sessionOf[connection] ?? 0) + 1);
          sockets[connection] = socket;
        },
      );
    },
    send(connection, session, clientMsgId, content) {
      sockets[connection]?.emit(
        'send_message',
        { session_id: session + 1, content, client_msg_id: clientMsgId },
        (reply: { client_msg_id: string }) => sink?.ack(connection, reply.client_msg_id),
      );
    },
    async disconnect() {
      for (const socket of sockets) socket?.disconnect();
      sockets = [];
    },
    stop,
  };
}
