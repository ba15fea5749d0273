import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a server (PostgreSQL, for the tests of a database outage). Three ways to fail, as a
 * database can:
 * - `cut()` drops every connection through it and, until `restore()`, hangs up on new ones as they come, as a
 *   database restart or a refused connection does;
 * - `stall()` leaves every connection open and silent from then on, and new ones too until `restore()`: a failover,
 *   or a host or network gone without a trace, where nothing ever answers again on a connection that was open.
 *   Silenced connections stay silent after `restore()`; only new ones are passed on;
 * - `loseAnswers()` drops what the server answers on every connection open now: a connection lost between a
 *   statement reaching the database and its answer reaching the client.
 *
 * It keeps its port meanwhile, so that no other test takes it. Only what goes through the proxy fails: the server
 * itself, and every other test using it, go on.
 */
export class TcpProxy {
  readonly port: number;
  private readonly server: Server;
  private readonly target: { host: string; port: number };
  private readonly sockets = new Set<Socket>();
  /** The pairs passing bytes on, each as the function that silences it. */
  private readonly live = new Set<() => void>();
  /** The same pairs, each as the function that drops what its server answers. */
  private readonly deafening = new Set<() => void>();
  private state: 'passing' | 'cut' | 'stalled' = 'passing';

  private constructor(server: Server, port: number, target: { host: string; port: number }) {
    this.server = server;
    this.port = port;
    this.target = target;
  }

  /** A proxy on a free port of 127.0.0.1 to `host:port`. */
  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const server = createServer();
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port));
    });
    const proxy = new TcpProxy(server, port, target);
    server.on('connection', (client) => proxy.accept(client));
    return proxy;
  }

  /** `url` (a database URL) through this proxy. */
  through(url: string): string {
    const proxied = new URL(url);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(this.port);
    return proxied.toString();
  }

  /** Drops every connection, and every new one until `restore()`. */
  cut(): void {
    this.state = 'cut';
    for (const socket of this.sockets) socket.destroy();
  }

  /** Silences every connection for good, and every new one until `restore()`: none is closed. */
  stall(): void {
    this.state = 'stalled';
    for (const silence of this.live) silence();
    this.live.clear();
    this.deafening.clear();
  }

  /**
   * Every connection open now loses what the server answers from now on, while what it is sent still reaches it: a
   * statement is executed, and its answer never arrives. New connections are passed on as usual.
   */
  loseAnswers(): void {
    for (const loseAnswers of this.deafening) loseAnswers();
  }

  /** Passes new connections on again. */
  restore(): void {
    this.state = 'passing';
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    client.on('error', () => {});
    if (this.state === 'cut') {
      client.destroy();
      return;
    }
    this.sockets.add(client);
    client.once('close', () => this.sockets.delete(client));
    if (this.state === 'stalled') {
      client.resume(); // accepted, and never answered
      return;
    }
    const upstream = connect(this.target.port, this.target.host);
    this.sockets.add(upstream);
    upstream.on('error', () => {});
    // What either side sends from then on is read and dropped: each still sees the other one close.
    const silence = () => {
      client.unpipe(upstream);
      upstream.unpipe(client);
      client.resume();
      upstream.resume();
    };
    const loseAnswers = () => {
      upstream.unpipe(client);
      upstream.resume();
    };
    this.live.add(silence);
    this.deafening.add(loseAnswers);
    for (const socket of [client, upstream])
      socket.once('close', () => {
        this.sockets.delete(socket);
        this.live.delete(silence);
        this.deafening.delete(loseAnswers);
        client.destroy();
        upstream.destroy();
      });
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
