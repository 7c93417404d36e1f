/**
 * Baseline (b): Socket.IO with the Redis adapter, run as two processes. Rooms are sessions: a
 * client emits `send`, the server broadcasts `new_message` to the room across processes (through
 * Redis pub/sub) and acks the sender. Nothing is stored.
 */
import { createServer } from 'node:http';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient } from 'redis';
import { Server } from 'socket.io';
import { listenPorts, startOpsPort } from './ops.js';

const { port, opsPort, host } = listenPorts();
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const key = process.env.REDIS_KEY ?? 'bench-socket.io';

const pub = createClient({ url: redisUrl });
const sub = pub.duplicate();
pub.on('error', (error: unknown) => console.error('redis', error));
sub.on('error', (error: unknown) => console.error('redis', error));
await Promise.all([pub.connect(), sub.connect()]);

const server = createServer();
const io = new Server(server, { transports: ['websocket'], perMessageDeflate: false, serveClient: false });
io.adapter(createAdapter(pub, sub, { key }));

io.on('connection', (socket) => {
  socket.on('join_session', (sessionId: number, ack: (reply: unknown) => void) => {
    void socket.join(`s${sessionId}`);
    ack({ session_id: sessionId });
  });
  socket.on('send_message', (frame: { session_id: number; content: string; client_msg_id: string }, ack: (reply: unknown) => void) => {
    io.to(`s${frame.session_id}`).emit('new_message', {
      session_id: frame.session_id,
      content: frame.content,
      client_msg_id: frame.client_msg_id,
    });
    ack({ client_msg_id: frame.client_msg_id });
  });
});

server.listen(port, host);
startOpsPort(opsPort, host);
process.on('SIGTERM', () => {
  void io.close();
  void Promise.allSettled([pub.quit(), sub.quit()]).finally(() => process.exit(0));
});
