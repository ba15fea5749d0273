import { randomUUID } from 'node:crypto';
import pg from 'pg';
import type { RunSignal, SignalChannel } from '../store.ts';

const CHANNEL = 'assistd_runs';
const RECONNECT_MS = 1000;

/**
 * RunSignals between processes over PostgreSQL LISTEN/NOTIFY. Sending goes through the pool (`pg_notify`, delivered
 * when the sending transaction — here, the statement — commits); receiving holds one dedicated connection. A signal
 * only nudges: if the listening connection drops, it reconnects, and what was missed meanwhile is found by the
 * workers' polling and the held polls' re-reads, only later.
 */
export class PgSignals implements SignalChannel {
  private readonly origin = randomUUID();
  private readonly pool: pg.Pool;
  private readonly url: string;
  private readonly receivers: Array<(signal: RunSignal) => void> = [];
  private client: pg.Client | undefined;
  private closed = false;

  constructor(pool: pg.Pool, url: string) {
    this.pool = pool;
    this.url = url;
  }

  async start(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url });
    client.on('error', () => this.reconnect(client));
    client.on('end', () => this.reconnect(client));
    client.on('notification', (message) => {
      if (message.channel !== CHANNEL || !message.payload) return;
      let parsed: { origin?: string; signal?: RunSignal };
      try {
        parsed = JSON.parse(message.payload);
      } catch {
        return;
      }
      if (parsed.origin === this.origin || !parsed.signal) return;
      for (const receive of this.receivers) receive(parsed.signal);
    });
    await client.connect();
    await client.query(`listen ${CHANNEL}`);
    this.client = client;
  }

  send(signal: RunSignal): void {
    this.pool
      .query('select pg_notify($1, $2)', [CHANNEL, JSON.stringify({ origin: this.origin, signal })])
      .catch(() => {}); // a lost nudge only delays: polling finds the work
  }

  listen(receive: (signal: RunSignal) => void): void {
    this.receivers.push(receive);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client?.end().catch(() => {});
  }

  private reconnect(broken: pg.Client): void {
    if (this.closed || this.client !== broken) return;
    this.client = undefined;
    broken.end().catch(() => {});
    setTimeout(() => {
      if (!this.closed) this.start().catch(() => this.retryLater());
    }, RECONNECT_MS).unref();
  }

  private retryLater(): void {
    setTimeout(() => {
      if (!this.closed) this.start().catch(() => this.retryLater());
    }, RECONNECT_MS).unref();
  }
}
