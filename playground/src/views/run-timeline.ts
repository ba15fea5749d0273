import { html } from 'htm/preact';
import type { Run } from 'openai/resources/beta/threads/runs/runs';
import type { RunStep, ToolCall } from 'openai/resources/beta/threads/runs/steps';
import { useEffect, useState } from 'preact/hooks';
import { get, getAll } from '../api.ts';
import { isActive } from '../chat-events.ts';
import { ErrorAlert, FileImage, timeOfDay } from '../components.ts';
import { href } from '../router.ts';
import { runEvents } from '../sse.ts';

/**
 * The run's moments the API keeps, in order: `created 12:00:01`, `in_progress …`, each wait for the client's tool
 * outputs (a step with function calls: the run asked for them when the step began and went on when it completed),
 * then how it ended. Moments within the same second keep this order (the sort is stable).
 */
function statusHistory(run: Run, steps: RunStep[]): Array<{ status: string; at: number }> {
  const moments: Array<[string, number | null | undefined]> = [
    ['created', run.created_at],
    ['in_progress', run.started_at],
  ];
  for (const step of steps) {
    const details = step.step_details;
    if (details.type !== 'tool_calls' || !details.tool_calls.some((call) => call.type === 'function')) continue;
    moments.push(['requires_action', step.created_at]);
    if (step.status === 'completed') moments.push(['in_progress', step.completed_at]);
  }
  moments.push(
    ['completed', run.completed_at],
    ['failed', run.failed_at],
    ['cancelled', run.cancelled_at],
    ['expired', run.expires_at !== null && run.status === 'expired' ? run.expires_at : null],
    ['incomplete', (run as Run & { incomplete_at?: number | null }).incomplete_at],
  );
  return moments
    .filter((moment): moment is [string, number] => typeof moment[1] === 'number')
    .map(([status, at]) => ({ status, at }))
    .sort((a, b) => a.at - b.at);
}

function upsertStep(steps: RunStep[], step: RunStep): RunStep[] {
  return steps.some((s) => s.id === step.id) ? steps.map((s) => (s.id === step.id ? step : s)) : [...steps, step];
}

/**
 * What a run did and why: its status history, each step with its tool calls (arguments and outputs, code and logs,
 * search results with scores), the tokens each step used and the total. A run still going is followed live through
 * `GET …/runs/{id}/events`.
 */
export function RunTimelineView({ threadId, runId }: { threadId: string; runId: string }) {
  const path = `/threads/${encodeURIComponent(threadId)}/runs/${encodeURIComponent(runId)}`;
  const [run, setRun] = useState<Run>();
  const [steps, setSteps] = useState<RunStep[]>([]);
  const [error, setError] = useState<unknown>();
  const [live, setLive] = useState(false);

  // Once: the view is keyed by its run.
  useEffect(() => {
    const controller = new AbortController();
    const load = async () => {
      const [loadedRun, loadedSteps] = await Promise.all([
        get<Run>(path),
        getAll<RunStep>(`${path}/steps`, {
          order: 'asc',
          include: ['step_details.tool_calls[*].file_search.results[*].content'],
        }),
      ]);
      setRun(loadedRun);
      setSteps(loadedSteps);
      return loadedRun;
    };
    (async () => {
      const loaded = await load();
      if (!isActive(loaded)) return;
      setLive(true);
      try {
        for await (const { event, data } of runEvents('GET', `${path}/events`, undefined, controller.signal)) {
          if (event.startsWith('thread.run.step.') && event !== 'thread.run.step.delta')
            setSteps((current) => upsertStep(current, data as RunStep));
          else if (event.startsWith('thread.run.') && !event.startsWith('thread.run.step.')) setRun(data as Run);
        }
      } finally {
        setLive(false);
      }
      if (!controller.signal.aborted) await load();
    })().catch((failure: unknown) => {
      if (!controller.signal.aborted) setError(failure);
    });
    return () => controller.abort();
  }, []);

  return html`
    <section class="timeline">
      <p class="small"><a href=${href.thread(threadId)}>← Thread ${threadId}</a></p>
      <h1>Run ${runId}</h1>
      <${ErrorAlert} error=${error} />
      ${run && html`<${RunSummary} run=${run} live=${live} />`}
      ${run && html`<${StatusHistory} run=${run} steps=${steps} />`}
      ${
        run &&
        html`
          <h2>Steps</h2>
          ${steps.length === 0 && html`<p class="muted">No steps yet.</p>`}
          <ol aria-label="Steps" class="plain-list steps">
            ${steps.map((step) => html`<li key=${step.id}><${StepView} step=${step} /></li>`)}
          </ol>
          <${UsageTable} run=${run} steps=${steps} />
        `
      }
    </section>
  `;
}

function RunSummary({ run, live }: { run: Run; live: boolean }) {
  return html`
    <div class="card stack">
      <p><strong>Status: ${run.status}</strong>${live && html` <span class="live">(following live)</span>`}</p>
      <p class="small muted">
        Assistant <code>${run.assistant_id}</code> · model ${run.model}
        ${run.temperature !== null && run.temperature !== undefined && ` · temperature ${run.temperature}`}
      </p>
      ${run.last_error && html`<p class="problem">Last error (${run.last_error.code}): ${run.last_error.message}</p>`}
      ${
        run.incomplete_details &&
        html`<p class="problem">Incomplete: ${run.incomplete_details.reason ?? 'no reason given'}</p>`
      }
    </div>
  `;
}

function StatusHistory({ run, steps }: { run: Run; steps: RunStep[] }) {
  return html`
    <h2>Status history</h2>
    <ol aria-label="Status history" class="history">
      ${statusHistory(run, steps).map(
        ({ status, at }, index) => html`<li key=${index}>${status} <time>${timeOfDay(at)}</time></li>`,
      )}
    </ol>
  `;
}

function StepView({ step }: { step: RunStep }) {
  const details = step.step_details;
  return html`
    <article aria-label=${`Step ${step.id}`} class="card stack step">
      <p class="step-head">
        <strong>${step.type}</strong> <span class=${`status status-${step.status}`}>${step.status}</span>
        <code class="muted small">${step.id}</code>
      </p>
      ${
        details.type === 'message_creation' &&
        html`<p class="small">Message <code>${details.message_creation.message_id}</code></p>`
      }
      ${details.type === 'tool_calls' && details.tool_calls.map((call) => html`<${ToolCallView} key=${call.id} call=${call} />`)}
      ${step.last_error && html`<p class="problem">Error (${step.last_error.code}): ${step.last_error.message}</p>`}
      ${
        step.usage &&
        html`<p class="small muted">
          ${`Usage: ${step.usage.prompt_tokens} prompt + ${step.usage.completion_tokens} completion = ${step.usage.total_tokens} tokens`}
        </p>`
      }
    </article>
  `;
}

function pretty(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function ToolCallView({ call }: { call: ToolCall }) {
  switch (call.type) {
    case 'function':
      return html`
        <div class="tool-call stack">
          <p>Function <strong>${call.function.name}</strong></p>
          <p class="small">Arguments</p>
          <pre><code>${pretty(call.function.arguments)}</code></pre>
          <p class="small">Output</p>
          <pre><code>${call.function.output ?? '(none yet)'}</code></pre>
        </div>
      `;
    case 'code_interpreter':
      return html`
        <div class="tool-call stack">
          <p><strong>code_interpreter</strong></p>
          <p class="small">Input</p>
          <pre><code>${call.code_interpreter.input}</code></pre>
          ${call.code_interpreter.outputs.map((output, index) =>
            output.type === 'logs'
              ? html`<div key=${index}><p class="small">Logs</p><pre><code>${output.logs}</code></pre></div>`
              : html`<${FileImage} key=${index} fileId=${output.image.file_id} />`,
          )}
        </div>
      `;
    case 'file_search':
      return html`
        <div class="tool-call stack">
          <p><strong>file_search</strong></p>
          <ol class="results">
            ${(call.file_search.results ?? []).map(
              (result, index) => html`
                <li key=${index}>
                  ${result.file_name} <span class="muted">(score ${result.score.toFixed(3)})</span>
                  ${result.content?.map(
                    (part, at) => html`<blockquote key=${at} class="small">${part.text}</blockquote>`,
                  )}
                </li>
              `,
            )}
          </ol>
        </div>
      `;
  }
}

function UsageTable({ run, steps }: { run: Run; steps: RunStep[] }) {
  const counted = steps.filter((step) => step.usage);
  const sum = (pick: (usage: NonNullable<RunStep['usage']>) => number) =>
    counted.reduce((total, step) => total + (step.usage ? pick(step.usage) : 0), 0);
  const total = run.usage ?? {
    prompt_tokens: sum((u) => u.prompt_tokens),
    completion_tokens: sum((u) => u.completion_tokens),
    total_tokens: sum((u) => u.total_tokens),
  };
  return html`
    <div class="table-scroll">
      <table class="usage">
        <caption>Usage</caption>
        <thead>
          <tr><th scope="col">Step</th><th scope="col">Prompt</th><th scope="col">Completion</th><th scope="col">Total</th></tr>
        </thead>
        <tbody>
          ${counted.map(
            (step) => html`
              <tr key=${step.id}>
                <th scope="row"><code>${step.id}</code></th>
                <td>${step.usage?.prompt_tokens}</td>
                <td>${step.usage?.completion_tokens}</td>
                <td>${step.usage?.total_tokens}</td>
              </tr>
            `,
          )}
        </tbody>
        <tfoot>
          <tr>
            <th scope="row">Total</th>
            <td>${total.prompt_tokens}</td>
            <td>${total.completion_tokens}</td>
            <td>${total.total_tokens}</td>
          </tr>
        </tfoot>
      </table>
    </div>
  `;
}
