import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Run, RunStatus } from '../domain/runs.ts';
import { type ChatEvent, type ChatRequest, type ModelProvider, ProviderError } from '../providers/provider.ts';

/** A connection pool's use, as pg's Pool counts it. */
export interface PoolUse {
  /** Connections open (busy or idle). */
  total: number;
  idle: number;
  /** Queries waiting for a connection. */
  waiting: number;
}

/** What answered a held poll (`Metrics.heldPollAnswered`). */
export type HeldPollAnswer = 'notified' | 'rechecked' | 'deadline';

const TERMINAL: ReadonlySet<RunStatus> = new Set(['completed', 'failed', 'cancelled', 'expired', 'incomplete']);

/** HTTP answers take a millisecond; a streamed run's response lasts as long as the run. */
const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
/** Runs and model calls: from a cached answer in a tenth of a second to a long tool loop. */
const RUN_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/**
 * Model names are chosen by clients (a default route serves any name), so the first MAX_MODEL_LABELS names get
 * their own series and the rest share `other`: a client cannot grow the registry without bound.
 */
const MAX_MODEL_LABELS = 100;
/** How often the event loop's delay is sampled. */
const LOOP_RESOLUTION_MS = 10;
/** Runs whose queueing or start this process saw and whose end it has not (yet): bounded the same way. */
const MAX_TRACKED_RUNS = 10_000;

/**
 * The server's metrics, in Prometheus text format (README.md lists each). One registry per server, never
 * prom-client's global one: a process (a test) may run several servers, each counting its own.
 *
 * The observers called on hot paths (`httpResponse`, a provider's events) only add to a series; values that
 * already exist elsewhere (executing runs, the database pool, the event loop's delay) are read when scraped.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly eventLoop = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS });
  private readonly models = new Set<string>();
  private readonly queuedAt = new Map<string, number>();
  private readonly startedAt = new Map<string, number>();
  /** The requests a provider was already given: the executor sends the same request again to retry it. */
  private readonly sent = new WeakSet<ChatRequest>();
  private activeRuns: () => number = () => 0;
  private streams = 0;

  private readonly http = new Histogram({
    name: 'assistd_http_request_duration_seconds',
    help: 'HTTP requests by method, route template and status: time from receipt to the end of the response.',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: HTTP_BUCKETS,
    registers: [this.registry],
  });
  private readonly runsCreated = new Counter({
    name: 'assistd_runs_created_total',
    help: 'Runs created through this process.',
    registers: [this.registry],
  });
  private readonly runsFinished = new Counter({
    name: 'assistd_runs_finished_total',
    help: 'Runs that reached a terminal status here, by status.',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });
  private readonly runDuration = new Histogram({
    name: 'assistd_run_duration_seconds',
    help: 'From a run first starting (in_progress) to its terminal status, by status.',
    labelNames: ['status'] as const,
    buckets: RUN_BUCKETS,
    registers: [this.registry],
  });
  private readonly queueWait = new Histogram({
    name: 'assistd_run_queue_wait_seconds',
    help: 'How long a run stayed queued (after creation, or after its tool outputs) before a worker started it.',
    buckets: HTTP_BUCKETS,
    registers: [this.registry],
  });
  private readonly streamsOpened = new Counter({
    name: 'assistd_streams_total',
    help: 'Server-sent event streams opened (stream: true, and re-attached streams).',
    registers: [this.registry],
  });
  private readonly streamsUnread = new Counter({
    name: 'assistd_streams_unread_closed_total',
    help: 'Streams closed because their client did not read them: more than ASSISTD_STREAM_BUFFER_KB was waiting.',
    registers: [this.registry],
  });
  private readonly upstreamDuration = new Histogram({
    name: 'assistd_upstream_request_duration_seconds',
    help: 'One model call (one attempt), by model and outcome (completed, failed, aborted): to the end of its stream.',
    labelNames: ['model', 'outcome'] as const,
    buckets: RUN_BUCKETS,
    registers: [this.registry],
  });
  private readonly upstreamFirstEvent = new Histogram({
    name: 'assistd_upstream_first_event_seconds',
    help: 'From sending a model call to its first streamed event (the first token or tool call), by model.',
    labelNames: ['model'] as const,
    buckets: RUN_BUCKETS,
    registers: [this.registry],
  });
  private readonly upstreamErrors = new Counter({
    name: 'assistd_upstream_errors_total',
    help: "Model calls that failed, by model and the error code the run's last_error would carry.",
    labelNames: ['model', 'code'] as const,
    registers: [this.registry],
  });
  private readonly upstreamRetries = new Counter({
    name: 'assistd_upstream_retries_total',
    help: 'Model calls that were retries of a failed one, by model.',
    labelNames: ['model'] as const,
    registers: [this.registry],
  });
  private readonly upstreamTokens = new Counter({
    name: 'assistd_upstream_tokens_total',
    help: 'Tokens the model backends reported, by model and kind (prompt, completion).',
    labelNames: ['model', 'kind'] as const,
    registers: [this.registry],
  });
  private readonly heldPolls = new Counter({
    name: 'assistd_held_polls_total',
    help: "Polls of a moving run held until it changed (the SDK's createAndPoll), by what answered them: notified, rechecked (a re-read found the change no notification announced) or deadline (still moving when the hold ended).",
    labelNames: ['answered_by'] as const,
    registers: [this.registry],
  });
  private readonly leaseRenewals = new Counter({
    name: 'assistd_lease_renewals_total',
    help: "Renewals of a run's lease by this process's worker.",
    registers: [this.registry],
  });
  private readonly leasesLost = new Counter({
    name: 'assistd_leases_lost_total',
    help: 'Runs whose lease another worker took while this one executed them (their execution here stopped).',
    registers: [this.registry],
  });

  constructor() {
    const metrics = this;
    new Gauge({
      name: 'assistd_runs_active',
      help: 'Runs executing in this process now.',
      registers: [this.registry],
      collect() {
        this.set(metrics.activeRuns());
      },
    });
    new Gauge({
      name: 'assistd_streams_active',
      help: 'Server-sent event streams open now.',
      registers: [this.registry],
      collect() {
        this.set(metrics.streams);
      },
    });
    this.eventLoop.enable();
    const delay = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          // Node records the time between two ticks of its timer, the resolution included: the delay is the rest.
          this.set(Math.max(0, read() - LOOP_RESOLUTION_MS * 1e6) / 1e9);
        },
      });
    // Read in this order at a scrape: the maximum last, as it resets the histogram for the next interval.
    delay('assistd_event_loop_delay_p50_seconds', 'Median event-loop delay since the previous scrape.', () =>
      this.eventLoop.percentile(50),
    );
    delay(
      'assistd_event_loop_delay_p99_seconds',
      '99th percentile of event-loop delay since the previous scrape.',
      () => this.eventLoop.percentile(99),
    );
    delay('assistd_event_loop_delay_max_seconds', 'Largest event-loop delay since the previous scrape.', () => {
      const max = this.eventLoop.max;
      this.eventLoop.reset();
      return max;
    });
  }

  /** The Content-Type of `text()`: Prometheus text format 0.0.4. */
  get contentType(): string {
    return this.registry.contentType;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Stops the event-loop monitor; the registry stays readable. */
  close(): void {
    this.eventLoop.disable();
  }

  /** `route` is the route's template (`/v1/threads/:thread_id`), never the URL: one series per route. */
  httpResponse(method: string, route: string, status: number, seconds: number): void {
    this.http.observe({ method, route, status_code: status }, seconds);
  }

  /** Where runs execute: how many are executing now is read when scraped. */
  watchActiveRuns(count: () => number): void {
    this.activeRuns = count;
  }

  /** A database connection pool, read when scraped (PostgreSQL; SQLite has none). */
  watchPool(use: () => PoolUse): void {
    const gauge = (name: string, help: string, read: (pool: PoolUse) => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(read(use()));
        },
      });
    gauge('assistd_db_pool_connections', 'Database connections open (busy or idle).', (pool) => pool.total);
    gauge('assistd_db_pool_idle_connections', 'Database connections open and idle.', (pool) => pool.idle);
    gauge('assistd_db_pool_waiting_queries', 'Queries waiting for a database connection.', (pool) => pool.waiting);
  }

  /**
   * A run event (`thread.run.created`, `thread.run.<status>`): the event bus publishes each once, in the process
   * that committed it.
   */
  runEvent(event: string, run: Run): void {
    const now = performance.now();
    if (event === 'thread.run.created') this.runsCreated.inc();
    else if (run.status === 'queued') track(this.queuedAt, run.id, now);
    else if (run.status === 'in_progress') {
      const queued = this.queuedAt.get(run.id);
      if (queued !== undefined) this.queueWait.observe((now - queued) / 1000);
      this.queuedAt.delete(run.id);
      if (!this.startedAt.has(run.id)) track(this.startedAt, run.id, now);
    } else if (TERMINAL.has(run.status)) {
      this.runsFinished.inc({ status: run.status });
      const started = this.startedAt.get(run.id);
      // Started by another process, or before a restart: the run's own start, to the second.
      const seconds =
        started !== undefined
          ? (now - started) / 1000
          : run.started_at !== null
            ? Math.max(0, Date.now() / 1000 - run.started_at)
            : undefined;
      if (seconds !== undefined) this.runDuration.observe({ status: run.status }, seconds);
      this.queuedAt.delete(run.id);
      this.startedAt.delete(run.id);
    }
  }

  /** A stream was closed because its client did not read it (its run goes on). */
  streamUnreadClosed(): void {
    this.streamsUnread.inc();
  }

  /** A server-sent event stream opened; the function returned closes it. */
  streamOpened(): () => void {
    this.streams += 1;
    this.streamsOpened.inc();
    let open = true;
    return () => {
      if (open) this.streams -= 1;
      open = false;
    };
  }

  /**
   * A held poll was answered: after a notification of the run's change (`notified`), after a periodic re-read found
   * a change no notification announced (`rechecked`: notifications from other processes are lost or late), or with
   * the run still moving when the hold ended (`deadline`).
   */
  heldPollAnswered(by: HeldPollAnswer): void {
    this.heldPolls.inc({ answered_by: by });
  }

  leaseRenewed(): void {
    this.leaseRenewals.inc();
  }

  leaseLost(): void {
    this.leasesLost.inc();
  }

  /**
   * The provider, observed: every model call's duration, time to first event, failure, tokens, and whether it
   * retried an earlier call (the executor retries by sending the same request object again). Wrapping the provider
   * covers every backend alike, and leaves their code alone.
   */
  observeProvider(provider: ModelProvider): ModelProvider {
    const observed: ModelProvider = {
      get contextWindow() {
        return provider.contextWindow;
      },
      stream: (request, signal) => this.observeStream(provider, request, signal),
    };
    if (provider.tokenizer) observed.tokenizer = () => provider.tokenizer!();
    if (provider.toolTokens) observed.toolTokens = (request) => provider.toolTokens!(request);
    if (provider.close) observed.close = () => provider.close!();
    return observed;
  }

  /**
   * The provider's stream, observed: time to the first event, tokens reported, the outcome and duration. A plain
   * iterator around the provider's rather than a generator: every token passes here, and a generator layer costs
   * several promise hops per token where this costs one.
   */
  private observeStream(provider: ModelProvider, request: ChatRequest, signal: AbortSignal): AsyncIterable<ChatEvent> {
    const model = this.modelLabel(request.model);
    if (this.sent.has(request)) this.upstreamRetries.inc({ model });
    else this.sent.add(request);
    const start = performance.now();
    let first = true;
    let ended = false;
    const end = (outcome: string) => {
      if (ended) return;
      ended = true;
      this.upstreamDuration.observe({ model, outcome }, (performance.now() - start) / 1000);
    };
    const seen = (result: IteratorResult<ChatEvent>): IteratorResult<ChatEvent> => {
      if (result.done) {
        end('completed');
        return result;
      }
      const event = result.value;
      if (first) {
        first = false;
        this.upstreamFirstEvent.observe({ model }, (performance.now() - start) / 1000);
      }
      if (event.type === 'usage') {
        this.upstreamTokens.inc({ model, kind: 'prompt' }, event.usage.prompt_tokens);
        this.upstreamTokens.inc({ model, kind: 'completion' }, event.usage.completion_tokens);
      }
      return result;
    };
    const failed = (error: unknown): never => {
      if (signal.aborted) end('aborted');
      else {
        this.upstreamErrors.inc({ model, code: error instanceof ProviderError ? error.code : 'server_error' });
        end('failed');
      }
      throw error;
    };
    const inner = provider.stream(request, signal)[Symbol.asyncIterator]();
    const observed: AsyncIterableIterator<ChatEvent> = {
      next: () => inner.next().then(seen, failed),
      // The caller stopped reading before the stream ended.
      return: async (value?: unknown) => {
        end('aborted');
        return (await inner.return?.(value)) ?? { value: undefined, done: true };
      },
      [Symbol.asyncIterator]: () => observed,
    };
    return observed;
  }

  private modelLabel(model: string): string {
    if (this.models.has(model)) return model;
    if (this.models.size >= MAX_MODEL_LABELS) return 'other';
    this.models.add(model);
    return model;
  }
}

/** Remembers a run's time, forgetting the oldest run once MAX_TRACKED_RUNS are held (runs ended elsewhere). */
function track(times: Map<string, number>, runId: string, at: number): void {
  times.delete(runId);
  times.set(runId, at);
  if (times.size > MAX_TRACKED_RUNS) times.delete(times.keys().next().value!);
}
