import { html } from 'htm/preact';
import type { Run } from 'openai/resources/beta/threads/runs/runs';
import { useState } from 'preact/hooks';

/** Arguments as the model sent them, pretty-printed when they are JSON. */
function pretty(args: string): string {
  try {
    return JSON.stringify(JSON.parse(args), null, 2);
  } catch {
    return args;
  }
}

/**
 * The form of a run that `requires_action`: each function call the model made, its name and arguments, and a box for
 * its output. Submitting continues the run (streaming).
 */
export function ToolOutputsForm({
  run,
  onSubmit,
}: {
  run: Run;
  onSubmit: (outputs: Array<{ tool_call_id: string; output: string }>) => void;
}) {
  const calls = run.required_action?.submit_tool_outputs.tool_calls ?? [];
  const [outputs, setOutputs] = useState<Record<string, string>>({});
  return html`
    <form
      aria-label="Tool outputs"
      class="card stack tool-outputs"
      onSubmit=${(event: Event) => {
        event.preventDefault();
        onSubmit(calls.map((call) => ({ tool_call_id: call.id, output: outputs[call.id] ?? '' })));
      }}
    >
      <h2>The run needs tool outputs</h2>
      ${calls.map(
        (call) => html`
          <div key=${call.id} class="tool-call stack">
            <p><strong>${call.function.name}</strong> <code class="muted">${call.id}</code></p>
            <pre><code>${pretty(call.function.arguments)}</code></pre>
            <label for=${`output-${call.id}`}>Output for ${call.function.name}</label>
            <textarea
              id=${`output-${call.id}`}
              rows="3"
              value=${outputs[call.id] ?? ''}
              onInput=${(event: Event) =>
                setOutputs({ ...outputs, [call.id]: (event.currentTarget as HTMLTextAreaElement).value })}
            ></textarea>
          </div>
        `,
      )}
      <div class="actions"><button type="submit">Submit outputs</button></div>
    </form>
  `;
}
