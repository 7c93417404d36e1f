/**
 * Baseline (a): a plain `ws` server that broadcasts each message to its session's sockets. No
 * broker, no database, one process: the floor for a Node WebSocket fan-out. Same frames as
 * Switchboard, simplified: `join` → `joined`; `send_message` → `new_message` to every member
 * (encoded once) and `message_ack` to the sender.
 */
import { createServer } from 'node:http';
import { type WebSocket, WebSocketServer } from 'ws';
import { listenPorts, startOpsPort } from './ops.js';

interface Room {
  members: Set<WebSocket>;
  seq: number;
}

const { port, opsPort, host } = listenPorts();
const rooms = new Map<number, Room>();
const server = createServer((_request, response) => response.writeHead(404).end());
const wss = new WebSocketServer({ server, perMessageDeflate: false, clientTracking: false });

wss.on('connection', (ws) => {
  const joined = new Set<Room>();
  ws.on('message', (data: Buffer) => {
    const frame = JSON.parse(data.toString('utf8')) as {
      type: string;
      req_id?: string;
      session_id: number;
      content?: string;
      client_msg_id?: string;
    };
    if (frame.type === 'join_session') {
      let room = rooms.get(frame.session_id);
      if (!room) {
        room = { members: new Set(), seq: 0 };
        rooms.set(frame.session_id, room);
      }
      room.members.add(ws);
      joined.add(room);
      ws.send(JSON.stringify({ type: 'joined_session', req_id: frame.req_id, session_id: frame.session_id, last_seq: room.seq }));
    } else if (frame.type === 'send_message') {
      const room = rooms.get(frame.session_id);
      if (!room) {
        ws.send(JSON.stringify({ type: 'error', code: 'not_found', client_msg_id: frame.client_msg_id }));
        return;
      }
      const seq = ++room.seq;
      const message = { session_id: frame.session_id, seq, content: frame.content, client_msg_id: frame.client_msg_id };
      const encoded = JSON.stringify({ type: 'new_message', message });
      for (const member of room.members) member.send(encoded);
      ws.send(JSON.stringify({ type: 'message_ack', session_id: frame.session_id, client_msg_id: frame.client_msg_id, seq }));
    }
  });
  ws.on('close', () => {
    for (const room of joined) room.members.delete(ws);
  });
});

server.listen(port, host);
startOpsPort(opsPort, host);
process.on('SIGTERM', () => process.exit(0));
