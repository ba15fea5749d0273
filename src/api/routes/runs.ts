import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { unixSeconds } from '../../domain/clock.ts';
import { notFound, threadHasActiveRun } from '../../domain/errors.ts';
import { newId } from '../../domain/ids.ts';
import type { Thread } from '../../domain/objects.ts';
import {
  isRunEvent,
  RUN_STREAM_END,
  type RunStreamEvent,
  runDeletedEvent,
  serverClosingEvent,
} from '../../domain/run-events.ts';
import type { Run, RunStatus } from '../../domain/runs.ts';
import type { FileService } from '../../files/file-service.ts';
import type { RunEventBus } from '../../runs/run-event-bus.ts';
import type { RunService } from '../../runs/run-service.ts';
import type { Store } from '../../storage/store.ts';
import { checkFileReferences, messagesFileReferences, toolResourcesFileReferences } from '../file-references.ts';
import { FollowedRuns } from '../followed-runs.ts';
import { pathId } from '../ids.ts';
import { parseInclude } from '../include.ts';
import { parsePageRequest, toListObject } from '../pagination.ts';
import { queueRequested } from '../queue-header.ts';
import {
  createRunRequest,
  createThreadAndRunRequest,
  modifyRunRequest,
  submitToolOutputsRequest,
} from '../schemas/runs.ts';
import { NO_INCLUDE, type StepInclude, serializeRun, serializeRunStep } from '../serializers.ts';
import { openSse, type SseStream, type StreamSettings } from '../sse.ts';
import { type ToolResourceHelpers, toolByTool } from '../tool-resources.ts';
import { parseBody } from '../validation.ts';
import { checkModel, type ModelCatalog } from './models.ts';

export interface RunRouteDeps {
  store: Store;
  runs: RunService;
  bus: RunEventBus;
  files: FileService;
  /** Makes the vector stores of new threads and of files attached for file_search. */
  helpers: ToolResourceHelpers;
  /** Aborted when the server shuts down, so held polls answer at once. */
  closing: AbortSignal;
  /** How streams are written (sse.ts). */
  stream: StreamSettings;
  /** ASSISTD_QUEUE_RUNS: whether a run created on a busy thread waits without `x-assistd-queue` (queue-header.ts). */
  queueRuns: boolean;
  /** The models the backends serve: a run's `model` override must be one. */
  models: ModelCatalog;
}

/** The statuses the SDK keeps polling through (lib/polling.js): a poll of a run in one of them may be held. */
const POLLED_THROUGH: ReadonlySet<RunStatus> = new Set(['queued', 'in_progress', 'cancelling']);
/**
 * How long one held poll may wait for a change, and how often it re-reads the database meanwhile. A waiting client
 * makes one request per HOLD_MS, as many as the SDK makes against OpenAI (5 s between polls).
 */
const HOLD_MS = 5000;
const RECHECK_MS = 1000;
/**
 * The hold of a client that does not say its timeout: the Python SDK before 1.62 and the node SDK before 4.83 say
 * none, and the Python SDK's README of then set a read timeout of 5 s.
 */
const UNSAID_HOLD_MS = 2000;
/**
 * How often a stream following a run re-reads it when changes made elsewhere come as signals (PostgreSQL), which
 * can be lost. An end is acted on when a second read still finds it, and the stream has not ended meanwhile: the
 * events of a change made here follow its commit at once.
 */
const FOLLOW_RECHECK_MS = 2000;
/** A stated timeout this large is in milliseconds: the node SDK from 4.83 to 4.91 sent its default as `600000`. */
const MILLISECONDS_FROM = 1000;

/**
 * How long this poll may be held: HOLD_MS, or half the client's own timeout when it is shorter (UNSAID_HOLD_MS when
 * it says none). The SDKs say theirs (node: `X-Stainless-Timeout`, whole seconds; Python: `x-stainless-read-timeout`,
 * from 1.62); a client held past it gives up, retries into another hold, and fails a run that would have completed.
 * A timeout of MILLISECONDS_FROM seconds or more, so taken for milliseconds, only makes the hold shorter.
 */
function holdMs(headers: IncomingHttpHeaders): number {
  const timeouts = [headers['x-stainless-timeout'], headers['x-stainless-read-timeout']]
    .map((value) => (typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN))
    .filter((timeout) => timeout >= 0)
    .map((timeout) => (timeout >= MILLISECONDS_FROM ? timeout / 1000 : timeout));
  if (timeouts.length === 0) return UNSAID_HOLD_MS;
  return Math.min(HOLD_MS, ...timeouts.map((seconds) => seconds * 500));
}

/**
 * A run response: while the run is still moving, `openai-poll-after-ms: 0` makes the SDK's `createAndPoll`
 * ask again at once, and that next poll (marked `X-Stainless-Poll-Helper`) is held until the run changes; so a
 * polling client learns of the result within a round trip, without the SDK's default 5 s between polls.
 */
function sendRun(reply: FastifyReply, run: Run) {
  if (POLLED_THROUGH.has(run.status)) reply.header('openai-poll-after-ms', '0');
  return serializeRun(run);
}

export function registerRunRoutes(
  app: FastifyInstance,
  { store, runs, bus, files, helpers, closing, stream, queueRuns, models }: RunRouteDeps,
): void {
  // Only where changes made elsewhere come as signals, which can be lost.
  const followed = bus.acrossProcesses
    ? new FollowedRuns(
        (ids) => store.findRuns(ids),
        () => bus.othersNow,
        FOLLOW_RECHECK_MS,
      )
    : undefined;
  const streaming: Streaming = { bus, closing, settings: stream, followed };
  app.post('/v1/threads/:thread_id/runs', async (request, reply) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    // `include[]` shapes the steps this request's stream shows (a polled run's steps are listed with their own).
    const include = parseInclude(request.query as Record<string, unknown>);
    const queue = queueRequested(request.headers, queueRuns);
    const body = parseBody(createRunRequest, request.body);
    checkModel(models, body.model);
    await checkFileReferences(
      files,
      request.scope,
      messagesFileReferences(body.additional_messages, 'additional_messages'),
    );
    // What the run's creation would refuse is refused before its attachments make or fill a store.
    if (helpers.writes(body.additional_messages)) await runs.checkCreation(request.scope, threadId, body);
    await helpers.attachToThread(
      request.scope,
      threadId,
      body.additional_messages,
      queue ? undefined : threadHasActiveRun,
    );
    const create = () => runs.createRun(request.scope, threadId, body, { executeHere: Boolean(body.stream), queue });
    if (body.stream) return streamRun(reply, streaming, threadId, create, [], include);
    return sendRun(reply, await create());
  });

  app.post('/v1/threads/runs', async (request, reply) => {
    const body = parseBody(createThreadAndRunRequest, request.body);
    checkModel(models, body.model);
    await checkFileReferences(files, request.scope, [
      ...messagesFileReferences(body.thread?.messages, 'thread.messages'),
      ...toolResourcesFileReferences(body.thread?.tool_resources, 'thread.tool_resources'),
      ...toolResourcesFileReferences(body.tool_resources),
    ]);
    await helpers.checkVectorStores(request.scope, body.thread?.tool_resources, body.tool_resources);
    const id = newId('thread');
    const resources = toolByTool(body.thread?.tool_resources, body.tool_resources);
    if (helpers.writes(body.thread?.messages, resources)) await runs.checkCreation(request.scope, id, body);
    const toolResources = await helpers.forNewThread(request.scope, id, resources, body.thread?.messages);
    const thread: Thread = {
      id,
      created_at: unixSeconds(),
      tool_resources: toolResources ?? {},
      metadata: body.thread?.metadata ?? {},
    };
    const create = () =>
      runs.createThreadAndRun(request.scope, thread, body.thread?.messages ?? [], body, {
        executeHere: Boolean(body.stream),
      });
    if (body.stream) return streamRun(reply, streaming, thread.id, create, [{ event: 'thread.created', data: thread }]);
    return sendRun(reply, await create());
  });

  app.get('/v1/threads/:thread_id/runs', async (request) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const page = await store.listRuns(
      request.scope,
      threadId,
      parsePageRequest(request.query as Record<string, unknown>),
    );
    return toListObject(page, serializeRun);
  });

  app.get('/v1/threads/:thread_id/runs/:run_id', async (request, reply) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const runId = pathId('run', request.params, 'run_id');
    const held = request.headers['x-stainless-poll-helper'] === 'true';
    const deadline = Date.now() + holdMs(request.headers);
    // What ended the last wait of this poll: a notification of the run's change, or the re-read's timer.
    let waited: 'notified' | 'rechecked' | undefined;
    for (;;) {
      // Listen before reading, so a change between the read and the wait is not missed.
      const stop = new AbortController();
      // Waits no longer than the hold has left: a client whose timeout is near a second is answered within it.
      const wait = Math.min(RECHECK_MS, Math.max(0, deadline - Date.now()));
      const change = held ? bus.nextChange(runId, wait, [closing, stop.signal]) : undefined;
      const run = await store.getRun(request.scope, threadId, runId);
      const moving = run !== undefined && POLLED_THROUGH.has(run.status);
      if (!run || !held || !moving || Date.now() >= deadline || closing.aborted) {
        stop.abort();
        if (!run) throw notFound('run', runId);
        if (waited !== undefined && !closing.aborted) app.metrics?.heldPollAnswered(moving ? 'deadline' : waited);
        return sendRun(reply, run);
      }
      // The change carries the committed run (this run, already found in the caller's scope above): a run that
      // has stopped moving is answered at once, without another read queued behind the worker's next claim.
      const changed = await change;
      waited = changed ? 'notified' : 'rechecked';
      if (changed && !POLLED_THROUGH.has(changed.status)) {
        app.metrics?.heldPollAnswered('notified');
        return sendRun(reply, changed);
      }
    }
  });

  app.post('/v1/threads/:thread_id/runs/:run_id', async (request, reply) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const runId = pathId('run', request.params, 'run_id');
    const body = parseBody(modifyRunRequest, request.body);
    return sendRun(reply, await runs.modifyRun(request.scope, threadId, runId, body.metadata));
  });

  app.post('/v1/threads/:thread_id/runs/:run_id/cancel', async (request, reply) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const runId = pathId('run', request.params, 'run_id');
    return sendRun(reply, await runs.cancelRun(request.scope, threadId, runId));
  });

  app.post('/v1/threads/:thread_id/runs/:run_id/submit_tool_outputs', async (request, reply) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const runId = pathId('run', request.params, 'run_id');
    const body = parseBody(submitToolOutputsRequest, request.body);
    const submit = () =>
      runs.submitToolOutputs(request.scope, threadId, runId, body.tool_outputs, { executeHere: Boolean(body.stream) });
    if (body.stream) return streamRun(reply, streaming, threadId, submit);
    return sendRun(reply, await submit());
  });

  /**
   * assistd extension: re-attach to a run. Streams a snapshot — `thread.run.<status>` with the run as it is, and
   * the step and message the model is writing, with their content so far — then the run's events from now on,
   * ending with `done` once the run pauses or ends.
   */
  app.get('/v1/threads/:thread_id/runs/:run_id/events', async (request, reply) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const runId = pathId('run', request.params, 'run_id');
    const include = parseInclude(request.query as Record<string, unknown>);
    // Subscribe and copy the live turn in one synchronous step, before any wait: the deltas published from now on
    // extend exactly this snapshot (one taken after the run is read would hold those of the read, and they would be
    // sent twice).
    const follow = followRun(streaming, threadId);
    const live = bus.liveTurn(runId);
    let run: Run | undefined;
    try {
      run = await store.getRun(request.scope, threadId, runId);
    } finally {
      if (!run) follow.stop();
    }
    if (!run) throw notFound('run', runId);
    const snapshot: RunStreamEvent[] = [{ event: `thread.run.${run.status}`, data: run }];
    if (!RUN_STREAM_END.has(`thread.run.${run.status}`) && live) {
      if (live.step) snapshot.push({ event: 'thread.run.step.created', data: live.step });
      if (live.message) snapshot.push({ event: 'thread.message.created', data: live.message });
    }
    follow.start(openSse(reply, include, stream), run, snapshot, { isSnapshot: true });
  });

  app.get('/v1/threads/:thread_id/runs/:run_id/steps', async (request) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const runId = pathId('run', request.params, 'run_id');
    const query = request.query as Record<string, unknown>;
    const include = parseInclude(query);
    await bus.written(threadId);
    const page = await store.listRunSteps(request.scope, threadId, runId, parsePageRequest(query));
    return toListObject(page, (step) => serializeRunStep(step, include));
  });

  app.get('/v1/threads/:thread_id/runs/:run_id/steps/:step_id', async (request) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const runId = pathId('run', request.params, 'run_id');
    const stepId = pathId('step', request.params, 'step_id');
    const include = parseInclude(request.query as Record<string, unknown>);
    await bus.written(threadId);
    const step = await store.getRunStep(request.scope, threadId, runId, stepId);
    if (!step) throw notFound('run step', stepId);
    return serializeRunStep(step, include);
  });
}

/** What a streamed response needs besides its request. */
interface Streaming {
  bus: RunEventBus;
  closing: AbortSignal;
  settings: StreamSettings;
  /** Across processes: what re-reads the followed runs. */
  followed: FollowedRuns | undefined;
}

/**
 * Streams a run that `start` creates (or continues): subscribes to the thread first, so nothing published while
 * the run is being created is missed, and answers with an ordinary JSON error if `start` fails.
 */
async function streamRun(
  reply: FastifyReply,
  streaming: Streaming,
  threadId: string,
  start: () => Promise<Run>,
  prelude: RunStreamEvent[] = [],
  include: StepInclude = NO_INCLUDE,
): Promise<void> {
  const follow = followRun(streaming, threadId);
  let run: Run;
  try {
    run = await start();
  } catch (error) {
    follow.stop();
    throw error;
  }
  follow.start(openSse(reply, include, streaming.settings), run, prelude);
}

/**
 * The events of one run on its thread, buffered from the moment of subscription until the stream is open. The
 * stream ends after the run pauses (`requires_action`) or ends, a failed run as any other (no `error` event after
 * it: see `send`); a run gone with its deleted thread ends it with an `error` event (RunEventBus.runsDeleted). A
 * client that goes away only unsubscribes: the run goes on. When the server shuts down, open streams end at once
 * with an `error` event saying so (their runs resume after the restart), so that shutdown never waits on a stream
 * that waits on a run. Across processes, where the word of a change made elsewhere can be lost, the stream also
 * is told what its run is now (FollowedRuns, every FOLLOW_RECHECK_MS) and ends with the end it finds.
 */
function followRun({ bus, closing, followed }: Streaming, threadId: string) {
  const buffered: Array<[string | undefined, RunStreamEvent]> = [];
  let deliver: ((runId: string | undefined, event: RunStreamEvent) => void) | undefined;
  const unsubscribe = bus.subscribeThread(threadId, (runId, event) => {
    if (deliver) deliver(runId, event);
    else buffered.push([runId, event]);
  });
  return {
    stop: unsubscribe,
    /**
     * `isSnapshot`: the prelude shows the run as it was read, after the subscription began. The status events
     * received up to the last one that shows the status read are not sent (the snapshot shows where they led), nor
     * is one that would take the stream back (another process's, brought late by its signal): within a snapshot
     * stream, which ends at the run's first pause, statuses only move on.
     */
    start(sse: SseStream, run: Run, prelude: RunStreamEvent[], { isSnapshot = false } = {}) {
      const endOnShutdown = () => {
        if (sse.closed) return;
        sse.send(serverClosingEvent(run.thread_id, run.id));
        sse.end({ closeConnection: true });
      };
      closing.addEventListener('abort', endOnShutdown, { once: true });
      sse.onClose(() => {
        unsubscribe();
        closing.removeEventListener('abort', endOnShutdown);
      });
      const send = (event: RunStreamEvent) => {
        if (sse.closed) return;
        sse.send(event);
        if (event.event === 'error') return sse.end(); // the run went with its deleted thread (runDeletedEvent)
        // A failed run ends as any run: its event (`last_error` says why), then done. An `error` event after it made
        // the SDK throw (its stream turns `error` into an APIError), so finalRun() never gave programs the failed run.
        if (RUN_STREAM_END.has(event.event)) sse.end();
      };
      for (const event of prelude) send(event);
      if (sse.closed) return; // the snapshot was already final
      let shown = isSnapshot ? statusRank(prelude[0]!)! : -1;
      deliver = (runId, event) => {
        if (runId !== run.id) return;
        const rank = statusRank(event);
        if (rank !== undefined) {
          if (rank <= shown) return;
          shown = rank;
        }
        send(event);
      };
      let held = buffered.splice(0);
      if (isSnapshot) {
        // What led up to the read: the run's statuses up to the last that shows the one read (a pause and its going
        // on among them) are in the snapshot.
        const readAt = held.findLastIndex(([id, e]) => id === run.id && isRunEvent(e) && e.data.status === run.status);
        held = held.filter(([id, e], i) => i > readAt || id !== run.id || !isRunEvent(e));
      }
      for (const [runId, event] of held) deliver(runId, event);
      // The shutdown began while the run was being created: a listener added now would never be called.
      if (closing.aborted) endOnShutdown();
      if (followed && !sse.closed) endWhenFound(sse, run, followed, send);
    },
  };
}

/** Where a run event comes in a run's life as one stream shows it (a pause or an end last); undefined: a step's. */
function statusRank(event: RunStreamEvent): number | undefined {
  if (!isRunEvent(event)) return undefined;
  const rank = ['created', 'queued', 'in_progress', 'cancelling'].indexOf(event.event.slice('thread.run.'.length));
  return rank === -1 ? 4 : rank;
}

/**
 * Ends the stream of `run` with the end its re-reads find twice running (the run paused or ended, or gone with its
 * thread), sent as the event its signal would have brought.
 */
function endWhenFound(sse: SseStream, run: Run, followed: FollowedRuns, send: (event: RunStreamEvent) => void): void {
  let found: RunStreamEvent | undefined;
  const unfollow = followed.follow(run.id, (now) => {
    const end = !now
      ? runDeletedEvent(run.thread_id, run.id)
      : RUN_STREAM_END.has(`thread.run.${now.status}`)
        ? ({ event: `thread.run.${now.status}`, data: now } as RunStreamEvent)
        : undefined;
    if (end && found?.event === end.event) send(end);
    found = end;
  });
  sse.onClose(unfollow);
}
