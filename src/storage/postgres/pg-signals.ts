import { randomUUID } from 'node:crypto';
import type { PostgresPool } from 'kysely';
import pg from 'pg';
import type { RunSignal, SignalChannel } from '../store.ts';
import { answerWithin } from './kysely-pool.ts';

const CHANNEL = 'assistd_runs';
const RECONNECT_MS = 1000;
/** How often the other listening processes are counted (see `peers`), and the listening connection is checked. */
const PEER_CHECK_MS = 2000;
/**
 * The other sessions on this database that are listening on the channel: a listening connection runs nothing after
 * its LISTEN, so that is its last query. A session of another role shows `<insufficient privilege>` and counts too.
 */
const COUNT_PEERS = `
  select count(*)::int as peers from pg_stat_activity
  where datname = current_database() and pid <> $1 and backend_type = 'client backend'
    and query in ('listen ${CHANNEL}', '<insufficient privilege>')`;

/**
 * RunSignals between processes over PostgreSQL LISTEN/NOTIFY. Sending goes through the pool (`pg_notify`, delivered
 * when the sending transaction — here, the statement — commits); receiving holds one dedicated connection. A signal
 * only nudges: if the listening connection drops, it reconnects, and what was missed meanwhile is found by the
 * workers' polling and the held polls' re-reads, only later. A listening connection is idle, so one whose database
 * went away without closing it would wait for ever: it says its LISTEN again every PEER_CHECK_MS (the same
 * statement, so pg_stat_activity still shows it, for COUNT_PEERS), and one that does not answer within the
 * database's timeout is given up and opened anew.
 *
 * A process alone on its database sends nothing: every NOTIFY is a round trip and work for the server, for
 * nobody. Whether others listen is counted every PEER_CHECK_MS; a process announces itself when it starts
 * listening, and any signal from another process shows that one is there, so a newcomer is signalled at once.
 */
export class PgSignals implements SignalChannel {
  private readonly origin = randomUUID();
  private readonly pool: PostgresPool;
  private readonly url: string;
  private readonly timeoutMs: number;
  private readonly receivers: Array<(signal: RunSignal) => void> = [];
  private client: pg.Client | undefined;
  private closed = false;
  /** Other processes listening, as last counted; unknown (assume some) until the first count. */
  private peers = 1;
  private peerTimer: NodeJS.Timeout | undefined;
  private listenerPid: number | undefined;
  /** A check of the listening connection under way. */
  private checking = false;
  /** A count of the peers under way. */
  private counting = false;

  /** `pool`: the store's (kyselyPool); `timeoutMs`: how long a statement or a connection attempt may go unanswered. */
  constructor(pool: PostgresPool, url: string, timeoutMs: number) {
    this.pool = pool;
    this.url = url;
    this.timeoutMs = timeoutMs;
  }

  async start(): Promise<void> {
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: this.timeoutMs });
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
      if (parsed.origin === this.origin) return;
      this.peers = Math.max(this.peers, 1);
      if (!parsed.signal) return; // a newcomer's greeting
      for (const receive of this.receivers) receive(parsed.signal);
    });
    try {
      await client.connect();
      // The pid first: the LISTEN must stay this session's last query (COUNT_PEERS).
      const backend = await answerWithin(
        client,
        this.timeoutMs,
        client.query<{ pid: number }>('select pg_backend_pid() as pid'),
      );
      this.listenerPid = backend.rows[0]?.pid;
      await answerWithin(client, this.timeoutMs, client.query(`listen ${CHANNEL}`));
    } catch (error) {
      client.end().catch(() => {});
      throw error;
    }
    if (this.closed) {
      client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.notify({ origin: this.origin });
    await this.countPeers();
    this.peerTimer ??= setInterval(() => {
      void this.countPeers();
      this.checkListener();
    }, PEER_CHECK_MS).unref();
  }

  get othersListening(): boolean {
    return this.peers > 0;
  }

  send(signal: RunSignal): void {
    if (this.othersListening) this.notify({ origin: this.origin, signal });
  }

  private notify(payload: { origin: string; signal?: RunSignal }): void {
    this.query('select pg_notify($1, $2)', [CHANNEL, JSON.stringify(payload)]).catch(() => {}); // a lost nudge only delays: polling finds the work
  }

  private async countPeers(): Promise<void> {
    const pid = this.listenerPid;
    // One count at a time: while the database does not answer, each would hold a connection of the pool for long.
    if (pid === undefined || this.counting) return;
    this.counting = true;
    try {
      const rows = await this.query<{ peers: number }>(COUNT_PEERS, [pid]);
      this.peers = rows[0]?.peers ?? 1;
    } catch {
      this.peers = 1; // unknown: signal, as if there were others
    } finally {
      this.counting = false;
    }
  }

  /** Says the LISTEN again on the listening connection: unanswered, the connection is closed, and reopened ('error'). */
  private checkListener(): void {
    const client = this.client;
    if (client === undefined || this.checking) return;
    this.checking = true;
    answerWithin(client, this.timeoutMs, client.query(`listen ${CHANNEL}`))
      .catch(() => {}) // a lost connection is handled by its 'error' and 'end' listeners
      .finally(() => {
        this.checking = false;
      });
  }

  private async query<R>(sql: string, values: unknown[]): Promise<R[]> {
    const client = await this.pool.connect();
    try {
      return (await client.query<R>(sql, values)).rows;
    } finally {
      client.release();
    }
  }

  listen(receive: (signal: RunSignal) => void): void {
    this.receivers.push(receive);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.peerTimer);
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
