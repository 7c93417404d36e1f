import WebSocket from 'ws';

export type Frame = { type: string; [key: string]: unknown };

export interface TestClientOptions {
  origin?: string;
  /** Headers for the upgrade request. */
  headers?: Record<string, string>;
}

/**
 * A protocol client for tests: records every frame it receives and waits for the ones a test
 * expects. Speaks plain JSON over `ws`, as any client following the contract would.
 */
export class TestClient {
  readonly frames: Frame[] = [];
  closeCode: number | undefined;
  closeReason = '';
  private nextReqId = 1;
  private readonly listeners = new Set<() => void>();
  readonly closed: Promise<number>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      this.frames.push(JSON.parse(data.toString()) as Frame);
      for (const listener of this.listeners) listener();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        for (const listener of this.listeners) listener();
        resolve(code);
      });
    });
    ws.on('error', () => undefined);
  }

  /** Opens a socket and waits for `connected`. */
  static async connect(url: string, options: TestClientOptions = {}): Promise<TestClient> {
    const ws = new WebSocket(url, { headers: options.headers, ...(options.origin ? { origin: options.origin } : {}) });
    const client = new TestClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_request, response) => reject(new Error(`upgrade refused with ${response.statusCode}`)));
    });
    await client.waitFor((frame) => frame.type === 'connected');
    return client;
  }

  send(frame: Record<string, unknown> | string | Buffer): void {
    this.ws.send(typeof frame === 'string' || Buffer.isBuffer(frame) ? frame : JSON.stringify(frame));
  }

  /** Sends a frame with a fresh `req_id` and resolves with the reply carrying it (success or error). */
  async request(frame: Record<string, unknown>, timeoutMs = 5_000): Promise<Frame> {
    const reqId = `r${this.nextReqId++}`;
    this.send({ ...frame, req_id: reqId });
    return this.waitFor((reply) => reply.req_id === reqId, timeoutMs);
  }

  /** Sends `auth` and resolves with `auth_success`; any other reply is an error. */
  async authenticate(token: string): Promise<Frame> {
    const reply = await this.request({ type: 'auth', token });
    if (reply.type !== 'auth_success') throw new Error(`auth answered ${JSON.stringify(reply)}`);
    return reply;
  }

  /** Resolves with the first frame (received so far or later) that matches. */
  waitFor(match: (frame: Frame) => boolean, timeoutMs = 5_000): Promise<Frame> {
    const found = this.frames.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const check = () => {
        const frame = this.frames.find(match);
        if (frame) {
          done();
          resolve(frame);
        } else if (this.closeCode !== undefined) {
          done();
          reject(new Error(`socket closed (${this.closeCode} ${this.closeReason}) before the expected frame`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no matching frame within ${timeoutMs} ms; last frames: ${JSON.stringify(this.frames.slice(-5))}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Waits until `count` frames match. */
  async waitForCount(match: (frame: Frame) => boolean, count: number, timeoutMs = 10_000): Promise<Frame[]> {
    await this.waitFor(() => this.frames.filter(match).length >= count, timeoutMs).catch((error: Error) => {
      throw new Error(`expected ${count} matching frames, got ${this.frames.filter(match).length}: ${error.message}`);
    });
    return this.frames.filter(match);
  }

  /** `new_message` payloads received for a session, in arrival order. */
  messages(sessionId: number): { seq: number; content: string; client_msg_id: string; sender_id: number; id: number }[] {
    return this.frames
      .filter((frame) => frame.type === 'new_message' && (frame.message as { session_id: number }).session_id === sessionId)
      .map((frame) => frame.message as { seq: number; content: string; client_msg_id: string; sender_id: number; id: number });
  }

  close(): Promise<number> {
    if (this.closeCode === undefined) this.ws.close();
    return this.closed;
  }
}

/** The clients a test file opens, to close them all when it is done. */
export class TestClients {
  private readonly open: TestClient[] = [];

  /** Opens a client and tracks it. */
  async connect(url: string, options?: TestClientOptions): Promise<TestClient> {
    const client = await TestClient.connect(url, options);
    this.open.push(client);
    return client;
  }

  /** Opens a tracked client and authenticates it with `token`. */
  async authenticated(url: string, token: string, options?: TestClientOptions): Promise<TestClient> {
    const client = await this.connect(url, options);
    await client.authenticate(token);
    return client;
  }

  /** Closes every tracked client and forgets them. */
  async closeAll(): Promise<void> {
    await Promise.all(this.open.splice(0).map((client) => client.close()));
  }
}
