import type { FastifyInstance, FastifyReply } from 'fastify';
import { unixSeconds } from '../../domain/clock.ts';
import { invalidRequest, notFound } from '../../domain/errors.ts';
import { newId } from '../../domain/ids.ts';
import type { Thread } from '../../domain/objects.ts';
import type { Run, RunStatus } from '../../domain/runs.ts';
import type { RunEventBus } from '../../runs/run-event-bus.ts';
import type { RunService } from '../../runs/run-service.ts';
import type { Store } from '../../storage/store.ts';
import { pathId } from '../ids.ts';
import { parsePageRequest, toListObject } from '../pagination.ts';
import {
  createRunRequest,
  createThreadAndRunRequest,
  modifyRunRequest,
  submitToolOutputsRequest,
} from '../schemas/runs.ts';
import { serializeRun, serializeRunStep } from '../serializers.ts';
import { parseBody } from '../validation.ts';

export interface RunRouteDeps {
  store: Store;
  runs: RunService;
  bus: RunEventBus;
  /** Aborted when the server shuts down, so held polls answer at once. */
  closing: AbortSignal;
}

/** The statuses the SDK keeps polling through (lib/polling.js): a poll of a run in one of them may be held. */
const POLLED_THROUGH: ReadonlySet<RunStatus> = new Set(['queued', 'in_progress', 'cancelling']);
/** How long one held poll may wait for a change, and how often it re-reads the database meanwhile. */
const HOLD_MS = 10_000;
const RECHECK_MS = 1000;

/**
 * A run response: while the run is still moving, `openai-poll-after-ms: 0` makes the SDK's `createAndPoll`
 * ask again at once, and that next poll (marked `X-Stainless-Poll-Helper`) is held until the run changes; so a
 * polling client learns of the result within a round trip, without the SDK's default 5 s between polls.
 */
function sendRun(reply: FastifyReply, run: Run) {
  if (POLLED_THROUGH.has(run.status)) reply.header('openai-poll-after-ms', '0');
  return serializeRun(run);
}

export function registerRunRoutes(app: FastifyInstance, { store, runs, bus, closing }: RunRouteDeps): void {
  app.post('/v1/threads/:thread_id/runs', async (request, reply) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const body = parseBody(createRunRequest, request.body);
    refuseStreaming(body.stream);
    return sendRun(reply, await runs.createRun(request.scope, threadId, body));
  });

  app.post('/v1/threads/runs', async (request, reply) => {
    const body = parseBody(createThreadAndRunRequest, request.body);
    refuseStreaming(body.stream);
    const thread: Thread = {
      id: newId('thread'),
      created_at: unixSeconds(),
      tool_resources: body.tool_resources ?? body.thread?.tool_resources ?? {},
      metadata: body.thread?.metadata ?? {},
    };
    return sendRun(reply, await runs.createThreadAndRun(request.scope, thread, body.thread?.messages ?? [], body));
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
    const deadline = Date.now() + HOLD_MS;
    for (;;) {
      const change = held ? bus.nextChange(runId, RECHECK_MS, closing) : undefined;
      const run = await store.getRun(request.scope, threadId, runId);
      if (!run) throw notFound('run', runId);
      if (!held || !POLLED_THROUGH.has(run.status) || Date.now() >= deadline || closing.aborted)
        return sendRun(reply, run);
      await change;
    }
  });

  app.post('/v1/threads/:thread_id/runs/:run_id', async (request, reply) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const runId = pathId('run', request.params, 'run_id');
    const body = parseBody(modifyRunRequest, request.body);
    const metadata = body.metadata === undefined ? undefined : (body.metadata ?? {});
    return sendRun(reply, await runs.modifyRun(request.scope, threadId, runId, metadata));
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
    refuseStreaming(body.stream);
    return sendRun(reply, await runs.submitToolOutputs(request.scope, threadId, runId, body.tool_outputs));
  });

  app.get('/v1/threads/:thread_id/runs/:run_id/steps', async (request) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const runId = pathId('run', request.params, 'run_id');
    const query = request.query as Record<string, unknown>;
    const page = await store.listRunSteps(request.scope, threadId, runId, parsePageRequest(query));
    return toListObject(page, serializeRunStep);
  });

  app.get('/v1/threads/:thread_id/runs/:run_id/steps/:step_id', async (request) => {
    const threadId = pathId('thread', request.params, 'thread_id');
    const runId = pathId('run', request.params, 'run_id');
    const stepId = pathId('step', request.params, 'step_id');
    const step = await store.getRunStep(request.scope, threadId, runId, stepId);
    if (!step) throw notFound('run step', stepId);
    return serializeRunStep(step);
  });
}

function refuseStreaming(stream: boolean | null | undefined): void {
  if (stream)
    throw invalidRequest(
      "Streaming ('stream: true') is not supported by this server yet; create the run without it and poll.",
      'stream',
      'unsupported_parameter',
    );
}
