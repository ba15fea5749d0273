import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a server (PostgreSQL, for the tests of a database outage): `cut()` drops every connection
 * through it and refuses new ones (ECONNREFUSED), as a database restart or a network cut does; `restore()` accepts
 * connections again on the same port. Only what goes through the proxy is cut: the server itself, and every other
 * test using it, go on.
 */
export class TcpProxy {
  readonly port: number;
  private server: Server;
  private readonly target: { host: string; port: number };
  private readonly sockets = new Set<Socket>();
  private isCut = false;

  private constructor(server: Server, port: number, target: { host: string; port: number }) {
    this.server = server;
    this.port = port;
    this.target = target;
  }

  /** A proxy on a free port of 127.0.0.1 to `host:port`. */
  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const probe = createServer();
    const port = await listen(probe, 0);
    const proxy = new TcpProxy(probe, port, target);
    probe.on('connection', (client) => proxy.pipe(client));
    return proxy;
  }

  /** `url` (a database URL) through this proxy. */
  through(url: string): string {
    const proxied = new URL(url);
    proxied.hostname = '127.0.0.1';
    proxied.port = String(this.port);
    return proxied.toString();
  }

  /** Drops every connection and refuses new ones until `restore()`. */
  async cut(): Promise<void> {
    if (this.isCut) return;
    this.isCut = true;
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }

  /** Accepts connections again, on the same port (if they were cut). */
  async restore(): Promise<void> {
    if (!this.isCut) return;
    this.isCut = false;
    this.server = createServer((client) => this.pipe(client));
    await listen(this.server, this.port);
  }

  async close(): Promise<void> {
    await this.cut();
  }

  private pipe(client: Socket): void {
    const upstream = connect(this.target.port, this.target.host);
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('error', () => {});
      socket.once('close', () => {
        this.sockets.delete(socket);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    });
  });
}
