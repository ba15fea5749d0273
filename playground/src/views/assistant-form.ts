import { html } from 'htm/preact';
import type { Assistant, AssistantTool, FunctionTool } from 'openai/resources/beta/assistants';
import type { FileObject } from 'openai/resources/files';
import type { VectorStore } from 'openai/resources/vector-stores/vector-stores';
import { useState } from 'preact/hooks';
import { get, getAll, type Page, post } from '../api.ts';
import { ErrorAlert, useLoad } from '../components.ts';

interface FunctionDraft {
  name: string;
  description: string;
  parameters: string;
  /** The saved function this draft edits, whose other fields (`strict`) are saved again as they were. */
  kept?: FunctionTool['function'];
}

const EMPTY_PARAMETERS = JSON.stringify({ type: 'object', properties: {} }, null, 2);

/** The form's choices of the three response formats it offers; any other (a json_schema) is kept as it was. */
const FORMATS = ['auto', 'text', 'json_object'];

function formatOf(assistant: Assistant | null): string {
  const format = assistant?.response_format;
  if (!format || format === 'auto') return 'auto';
  return format.type;
}

/**
 * The assistant's tool of this type, to be saved again with what the form changes: an update replaces the tools
 * wholesale, so a field the form does not show (file_search's `max_num_results`, `ranking_options`) would be lost.
 */
function keptTool<T extends AssistantTool['type']>(
  tools: AssistantTool[],
  type: T,
): Extract<AssistantTool, { type: T }> {
  const tool = tools.find((candidate) => candidate.type === type);
  return (tool ?? { type }) as Extract<AssistantTool, { type: T }>;
}

/** A function tool as the form edits it: its other fields kept, its description left out when blank. */
function functionTool(draft: FunctionDraft, index: number): FunctionTool {
  const { description: _, ...kept } = draft.kept ?? {};
  return {
    type: 'function',
    function: {
      ...kept,
      name: draft.name.trim(),
      ...(draft.description.trim() === '' ? {} : { description: draft.description.trim() }),
      parameters: parseParameters(draft.parameters, `Function ${index + 1}`),
    },
  };
}

/**
 * A function's parameters as the API wants them: a JSON object whose `type` is "object". Checked before saving, so a
 * typo is said here, next to the field, not by the server.
 */
function parseParameters(text: string, label: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new Error(`Parameters (JSON schema) of ${label} is not valid JSON: ${(error as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw new Error(`Parameters (JSON schema) of ${label} must be a JSON object.`);
  if ((parsed as { type?: unknown }).type !== 'object')
    throw new Error(`Parameters (JSON schema) of ${label} must have "type": "object".`);
  return parsed as Record<string, unknown>;
}

function value(event: Event): string {
  return (event.currentTarget as HTMLInputElement).value;
}

/** Creates an assistant (`assistant` null) or edits one: model, instructions, temperature, format and tools. */
export function AssistantForm({
  assistant,
  onSaved,
  onCancel,
}: {
  assistant: Assistant | null;
  onSaved: () => void;
  onCancel: () => void;
}) {
  const models = useLoad(() => get<Page<{ id: string }>>('/models').then((page) => page.data), []);
  const stores = useLoad(() => getAll<VectorStore>('/vector_stores', { order: 'desc' }), []);
  const files = useLoad(
    () => get<Page<FileObject>>('/files', { purpose: 'assistants', limit: 100, order: 'desc' }).then((p) => p.data),
    [],
  );
  const tools = assistant?.tools ?? [];
  const [name, setName] = useState(assistant?.name ?? '');
  const [model, setModel] = useState(assistant?.model ?? '');
  const [instructions, setInstructions] = useState(assistant?.instructions ?? '');
  const [temperature, setTemperature] = useState(assistant?.temperature?.toString() ?? '');
  const [format, setFormat] = useState(formatOf(assistant));
  const [fileSearch, setFileSearch] = useState(tools.some((tool) => tool.type === 'file_search'));
  const [storeId, setStoreId] = useState(assistant?.tool_resources?.file_search?.vector_store_ids?.[0] ?? '');
  const [codeInterpreter, setCodeInterpreter] = useState(tools.some((tool) => tool.type === 'code_interpreter'));
  const [codeFiles, setCodeFiles] = useState<string[]>(assistant?.tool_resources?.code_interpreter?.file_ids ?? []);
  const [functions, setFunctions] = useState<FunctionDraft[]>(
    tools.flatMap((tool) =>
      tool.type === 'function'
        ? [
            {
              name: tool.function.name,
              description: tool.function.description ?? '',
              parameters: JSON.stringify(tool.function.parameters ?? {}, null, 2),
              kept: tool.function,
            },
          ]
        : [],
    ),
  );
  const [error, setError] = useState<unknown>();
  const [saving, setSaving] = useState(false);

  const changeFunction = (index: number, change: Partial<FunctionDraft>) =>
    setFunctions(functions.map((draft, i) => (i === index ? { ...draft, ...change } : draft)));

  /** The request body, or throws what is wrong with the form. */
  const body = () => {
    if (model.trim() === '') throw new Error('Choose or type a Model.');
    const chosen: AssistantTool[] = functions.map(functionTool);
    if (fileSearch) chosen.push(keptTool(tools, 'file_search'));
    if (codeInterpreter) chosen.push(keptTool(tools, 'code_interpreter'));
    const responseFormat = FORMATS.includes(format)
      ? format === 'auto'
        ? 'auto'
        : { type: format }
      : assistant?.response_format;
    return {
      name: name.trim() === '' ? null : name.trim(),
      model: model.trim(),
      instructions: instructions === '' ? null : instructions,
      // Blank: the server's default; on an edit, null clears a temperature set before.
      ...(temperature.trim() !== '' ? { temperature: Number(temperature) } : assistant ? { temperature: null } : {}),
      response_format: responseFormat,
      tools: chosen,
      tool_resources: {
        ...(fileSearch ? { file_search: { vector_store_ids: storeId ? [storeId] : [] } } : {}),
        ...(codeInterpreter ? { code_interpreter: { file_ids: codeFiles } } : {}),
      },
    };
  };

  const save = async (event: Event) => {
    event.preventDefault();
    setError(undefined);
    try {
      const request = body();
      setSaving(true);
      await post(assistant ? `/assistants/${assistant.id}` : '/assistants', request);
      onSaved();
    } catch (failure) {
      setError(failure);
    } finally {
      setSaving(false);
    }
  };

  return html`
    <form aria-label="Assistant" class="card stack assistant-form" onSubmit=${save}>
      <h2>${assistant ? `Edit ${assistant.name || assistant.id}` : 'New assistant'}</h2>
      <div class="grid-2">
        <div class="field">
          <label for="assistant-name">Name</label>
          <input id="assistant-name" value=${name} onInput=${(e: Event) => setName(value(e))} />
        </div>
        <div class="field">
          <label for="assistant-model">Model</label>
          <input
            id="assistant-model"
            list="assistant-models"
            required
            autocomplete="off"
            value=${model}
            onInput=${(e: Event) => setModel(value(e))}
          />
          <datalist id="assistant-models">
            ${(models.value ?? []).map((m) => html`<option key=${m.id} value=${m.id}></option>`)}
          </datalist>
        </div>
      </div>
      <div class="field">
        <label for="assistant-instructions">Instructions</label>
        <textarea
          id="assistant-instructions"
          rows="4"
          value=${instructions}
          onInput=${(e: Event) => setInstructions(value(e))}
        ></textarea>
      </div>
      <div class="grid-2">
        <div class="field">
          <label for="assistant-temperature">Temperature</label>
          <input
            id="assistant-temperature"
            type="number"
            min="0"
            max="2"
            step="0.1"
            value=${temperature}
            onInput=${(e: Event) => setTemperature(value(e))}
          />
        </div>
        <div class="field">
          <label for="assistant-format">Response format</label>
          <select id="assistant-format" value=${format} onChange=${(e: Event) => setFormat(value(e))}>
            ${FORMATS.map((f) => html`<option key=${f} value=${f}>${f}</option>`)}
            ${!FORMATS.includes(format) && html`<option value=${format}>${format} (kept)</option>`}
          </select>
        </div>
      </div>
      <fieldset class="stack">
        <legend>Tools</legend>
        <label class="check">
          <input type="checkbox" checked=${fileSearch} onChange=${() => setFileSearch(!fileSearch)} />
          file_search
        </label>
        ${
          fileSearch &&
          html`<div class="field nested">
            <label for="assistant-store">Vector store</label>
            <select id="assistant-store" value=${storeId} onChange=${(e: Event) => setStoreId(value(e))}>
              <option value="">None</option>
              ${(stores.value ?? []).map((s) => html`<option key=${s.id} value=${s.id}>${s.name || s.id}</option>`)}
            </select>
          </div>`
        }
        <label class="check">
          <input type="checkbox" checked=${codeInterpreter} onChange=${() => setCodeInterpreter(!codeInterpreter)} />
          code_interpreter
        </label>
        ${
          codeInterpreter &&
          html`<fieldset class="nested">
            <legend>Code interpreter files</legend>
            ${files.value?.length === 0 && html`<p class="muted small">No files with purpose assistants.</p>`}
            ${(files.value ?? []).map(
              (file) => html`
                <label class="check" key=${file.id}>
                  <input
                    type="checkbox"
                    checked=${codeFiles.includes(file.id)}
                    onChange=${() =>
                      setCodeFiles(
                        codeFiles.includes(file.id)
                          ? codeFiles.filter((id) => id !== file.id)
                          : [...codeFiles, file.id],
                      )}
                  />
                  ${file.filename}
                </label>
              `,
            )}
          </fieldset>`
        }
        ${functions.map(
          (draft, index) => html`
            <fieldset class="stack function" key=${index}>
              <legend>Function ${index + 1}</legend>
              <div class="field">
                <label for=${`fn-name-${index}`}>Function name</label>
                <input
                  id=${`fn-name-${index}`}
                  required
                  value=${draft.name}
                  onInput=${(e: Event) => changeFunction(index, { name: value(e) })}
                />
              </div>
              <div class="field">
                <label for=${`fn-description-${index}`}>Function description</label>
                <input
                  id=${`fn-description-${index}`}
                  value=${draft.description}
                  onInput=${(e: Event) => changeFunction(index, { description: value(e) })}
                />
              </div>
              <div class="field">
                <label for=${`fn-parameters-${index}`}>Parameters (JSON schema)</label>
                <textarea
                  id=${`fn-parameters-${index}`}
                  class="code"
                  rows="6"
                  spellcheck="false"
                  value=${draft.parameters}
                  onInput=${(e: Event) => changeFunction(index, { parameters: value(e) })}
                ></textarea>
              </div>
              <div class="actions">
                <button
                  type="button"
                  class="secondary"
                  onClick=${() => setFunctions(functions.filter((_, i) => i !== index))}
                >
                  Remove function
                </button>
              </div>
            </fieldset>
          `,
        )}
        <div class="actions">
          <button
            type="button"
            class="secondary"
            onClick=${() => setFunctions([...functions, { name: '', description: '', parameters: EMPTY_PARAMETERS }])}
          >
            Add function
          </button>
        </div>
      </fieldset>
      <${ErrorAlert} error=${error ?? models.error} />
      <div class="actions">
        <button type="submit" disabled=${saving}>Save assistant</button>
        <button type="button" class="secondary" onClick=${onCancel}>Cancel</button>
      </div>
    </form>
  `;
}
