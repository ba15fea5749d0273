import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config.ts';
import {
  type GgufRouteConfig,
  loadModelsConfig,
  ModelsConfigError,
  type ModelsEnv,
  type OpenAICompatibleRouteConfig,
  type RouteConfig,
} from '../../src/models-config.ts';

let dir: string;

before(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'assistd-models-'));
  mkdirSync(path.join(dir, 'weights'));
  writeFileSync(path.join(dir, 'weights', 'small.gguf'), 'GGUF');
  writeFileSync(path.join(dir, 'other.gguf'), 'GGUF');
});

after(() => {
  rmSync(dir, { recursive: true, force: true });
});

function settings(overrides: Partial<ModelsEnv> = {}): ModelsEnv {
  return {
    modelsFile: undefined,
    modelFile: undefined,
    upstreamBaseUrl: undefined,
    upstreamApiKey: undefined,
    upstreamTimeoutMs: 120_000,
    contextWindow: 128_000,
    llamaThreads: undefined,
    llamaContextSize: undefined,
    env: {},
    ...overrides,
  };
}

let fileCounter = 0;
/** Writes a models file into the temp dir and returns its path. */
function modelsFile(extension: 'yaml' | 'yml' | 'json', text: string): string {
  const file = path.join(dir, `models-${++fileCounter}.${extension}`);
  writeFileSync(file, text);
  return file;
}

function asOpenAI(route: RouteConfig | undefined): OpenAICompatibleRouteConfig {
  assert.ok(route, 'expected a route');
  assert.equal(route.type, 'openai-compatible');
  return route as OpenAICompatibleRouteConfig;
}

function asGguf(route: RouteConfig | undefined): GgufRouteConfig {
  assert.ok(route, 'expected a route');
  assert.equal(route.type, 'gguf');
  return route as GgufRouteConfig;
}

/** Asserts that loading throws a ModelsConfigError for `setting` whose message matches every pattern. */
function assertModelsError(run: () => unknown, setting: string, ...patterns: Array<string | RegExp>) {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof ModelsConfigError, `expected ModelsConfigError, got ${String(error)}`);
    assert.equal(error.name, 'ModelsConfigError');
    assert.equal(error.setting, setting);
    for (const pattern of patterns) {
      if (typeof pattern === 'string')
        assert.ok(error.message.includes(pattern), `"${error.message}" lacks "${pattern}"`);
      else assert.match(error.message, pattern);
    }
    return true;
  });
}

const YAML_FILE = `
models:
  gpt-4o:
    type: openai-compatible
    base_url: https://api.example.com/v1/
    api_key_env: EXAMPLE_KEY
    model: gpt-4o-2024-08-06
    context_window: 64000
    timeout_s: 30
  local:
    type: gguf
    path: weights/small.gguf
    context_size: 4096
    threads: 3
default: local
`;

const JSON_FILE = JSON.stringify({
  models: {
    'gpt-4o': {
      type: 'openai-compatible',
      base_url: 'https://api.example.com/v1/',
      api_key_env: 'EXAMPLE_KEY',
      model: 'gpt-4o-2024-08-06',
      context_window: 64000,
      timeout_s: 30,
    },
    local: { type: 'gguf', path: 'weights/small.gguf', context_size: 4096, threads: 3 },
  },
  default: 'local',
});

describe('loadModelsConfig: a models file', () => {
  for (const [format, extension, text] of [
    ['YAML', 'yaml', YAML_FILE],
    ['JSON', 'json', JSON_FILE],
  ] as const) {
    test(`reads the routes of a ${format} file`, () => {
      const file = modelsFile(extension, text);
      const config = loadModelsConfig(settings({ modelsFile: file, env: { EXAMPLE_KEY: '  sk-example  ' } }));

      assert.deepEqual([...config.routes.keys()], ['gpt-4o', 'local']);
      assert.deepEqual(asOpenAI(config.routes.get('gpt-4o')), {
        type: 'openai-compatible',
        baseUrl: 'https://api.example.com/v1',
        apiKey: 'sk-example',
        model: 'gpt-4o-2024-08-06',
        timeoutMs: 30_000,
        contextWindow: 64_000,
        reasoningOpened: false,
      });
      const local = asGguf(config.routes.get('local'));
      assert.ok(path.isAbsolute(local.path));
      assert.deepEqual(local, {
        type: 'gguf',
        path: path.join(dir, 'weights', 'small.gguf'),
        contextSize: 4096,
        threads: 3,
        origin: { setting: 'ASSISTD_MODELS_FILE', label: "model 'local'" },
      });
      // `default: local` names a route: the fallback is that very route.
      assert.equal(config.fallback, config.routes.get('local'));
    });
  }

  test('resolves a gguf path against the models file, not the working directory', () => {
    const nested = path.join(dir, 'nested');
    mkdirSync(nested, { recursive: true });
    const file = path.join(nested, 'models.yaml');
    writeFileSync(file, 'models:\n  up:\n    type: gguf\n    path: ../other.gguf\n');
    const config = loadModelsConfig(settings({ modelsFile: file }));
    assert.equal(asGguf(config.routes.get('up')).path, path.join(dir, 'other.gguf'));
  });

  test('a route without optional fields takes the defaults from the settings', () => {
    const file = modelsFile(
      'yaml',
      'models:\n  remote:\n    type: openai-compatible\n    base_url: http://127.0.0.1:11434/v1\n' +
        '  local:\n    type: gguf\n    path: other.gguf\n',
    );
    const config = loadModelsConfig(
      settings({
        modelsFile: file,
        upstreamTimeoutMs: 45_000,
        contextWindow: 32_000,
        llamaThreads: 5,
        llamaContextSize: 2048,
      }),
    );
    assert.deepEqual(asOpenAI(config.routes.get('remote')), {
      type: 'openai-compatible',
      baseUrl: 'http://127.0.0.1:11434/v1',
      apiKey: undefined,
      model: undefined,
      timeoutMs: 45_000,
      contextWindow: 32_000,
      reasoningOpened: false,
    });
    const local = asGguf(config.routes.get('local'));
    assert.equal(local.threads, 5);
    assert.equal(local.contextSize, 2048);
    assert.equal(config.fallback, undefined);
  });

  test("reasoning_opened: a route whose model's chat template opens its reasoning in the prompt", () => {
    const file = modelsFile(
      'yaml',
      'models:\n  r1:\n    type: openai-compatible\n    base_url: http://127.0.0.1:8000/v1\n    reasoning_opened: true\n' +
        '  plain:\n    type: openai-compatible\n    base_url: http://127.0.0.1:8000/v1\n    reasoning_opened: false\n',
    );
    const config = loadModelsConfig(settings({ modelsFile: file }));
    assert.equal(asOpenAI(config.routes.get('r1')).reasoningOpened, true);
    assert.equal(asOpenAI(config.routes.get('plain')).reasoningOpened, false);
  });

  test('default given as a route object', () => {
    const file = modelsFile(
      'yaml',
      'models:\n  local:\n    type: gguf\n    path: other.gguf\n' +
        'default:\n  type: openai-compatible\n  base_url: https://fallback.example.com/v1//\n  timeout_s: 5\n',
    );
    const config = loadModelsConfig(settings({ modelsFile: file }));
    assert.deepEqual(asOpenAI(config.fallback), {
      type: 'openai-compatible',
      baseUrl: 'https://fallback.example.com/v1',
      apiKey: undefined,
      model: undefined,
      timeoutMs: 5_000,
      contextWindow: 128_000,
      reasoningOpened: false,
    });
    assert.deepEqual([...config.routes.keys()], ['local']);
  });

  test('a gguf default object is labelled as the default route', () => {
    const file = modelsFile('json', JSON.stringify({ default: { type: 'gguf', path: 'other.gguf', threads: 2 } }));
    const config = loadModelsConfig(settings({ modelsFile: file }));
    const fallback = asGguf(config.fallback);
    assert.equal(fallback.path, path.join(dir, 'other.gguf'));
    assert.equal(fallback.threads, 2);
    assert.deepEqual(fallback.origin, { setting: 'ASSISTD_MODELS_FILE', label: 'default' });
    assert.equal(config.routes.size, 0);
  });

  test('an empty file has no routes and no fallback', () => {
    const file = modelsFile('yaml', '');
    const config = loadModelsConfig(settings({ modelsFile: file }));
    assert.equal(config.routes.size, 0);
    assert.equal(config.fallback, undefined);
  });
});

describe('loadModelsConfig: mistakes in a models file', () => {
  test('default naming a missing route', () => {
    const file = modelsFile('yaml', 'models:\n  local:\n    type: gguf\n    path: other.gguf\ndefault: missing\n');
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file })),
      'ASSISTD_MODELS_FILE',
      "'missing'",
      'is not one of the models',
      'local',
    );
  });

  test('a gguf path that does not exist', () => {
    const file = modelsFile('yaml', 'models:\n  local:\n    type: gguf\n    path: weights/nope.gguf\n');
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file })),
      'ASSISTD_MODELS_FILE',
      path.join(dir, 'weights', 'nope.gguf'),
      'does not exist',
      "model 'local'",
    );
  });

  test('a gguf path that is a directory', () => {
    const file = modelsFile('yaml', 'models:\n  local:\n    type: gguf\n    path: weights\n');
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file })),
      'ASSISTD_MODELS_FILE',
      path.join(dir, 'weights'),
      'is not a file',
    );
  });

  test('a key pasted into api_key_env is refused without being written out', () => {
    const file = modelsFile(
      'yaml',
      'models:\n  remote:\n    type: openai-compatible\n    base_url: https://api.example.com/v1\n' +
        '    api_key_env: sk-proj-PASTEDSECRET123\n',
    );
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file, env: {} })),
      'ASSISTD_MODELS_FILE',
      "model 'remote'",
      'is not the name of an environment variable',
      /^(?![\s\S]*PASTEDSECRET)/,
    );
  });

  test('api_key_env naming an unset variable', () => {
    const file = modelsFile(
      'yaml',
      'models:\n  remote:\n    type: openai-compatible\n    base_url: https://api.example.com/v1\n' +
        '    api_key_env: MISSING_KEY\n',
    );
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file, env: { OTHER_KEY: 'x' } })),
      'ASSISTD_MODELS_FILE',
      "model 'remote'",
      'MISSING_KEY',
      'not set',
    );
    // A blank value counts as unset.
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file, env: { MISSING_KEY: '   ' } })),
      'ASSISTD_MODELS_FILE',
      'MISSING_KEY',
    );
  });

  test('an unknown field in a route', () => {
    const file = modelsFile('yaml', 'models:\n  local:\n    type: gguf\n    path: other.gguf\n    gpu_layers: 10\n');
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file })),
      'ASSISTD_MODELS_FILE',
      'models.local',
      "unknown field 'gpu_layers'",
    );
  });

  test('an unknown top-level field', () => {
    const file = modelsFile('json', JSON.stringify({ modles: {} }));
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file })),
      'ASSISTD_MODELS_FILE',
      "unknown field 'modles'",
    );
  });

  test('a bad type', () => {
    const file = modelsFile('yaml', 'models:\n  remote:\n    type: ollama\n    base_url: http://127.0.0.1:11434/v1\n');
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file })),
      'ASSISTD_MODELS_FILE',
      'models.remote',
      'type must be "openai-compatible" or "gguf"',
    );
  });

  test('a reasoning_opened that is not true or false', () => {
    const file = modelsFile(
      'yaml',
      'models:\n  r1:\n    type: openai-compatible\n    base_url: http://127.0.0.1:8000/v1\n    reasoning_opened: yes\n',
    );
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file })),
      'ASSISTD_MODELS_FILE',
      'models.r1.reasoning_opened',
      'must be true or false',
    );
  });

  test('a base_url that is not an http(s) URL', () => {
    const bad = modelsFile('yaml', 'models:\n  remote:\n    type: openai-compatible\n    base_url: not a url\n');
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: bad })),
      'ASSISTD_MODELS_FILE',
      "model 'remote': base_url:",
      'is not a valid URL',
    );
    const ftp = modelsFile(
      'yaml',
      'models:\n  remote:\n    type: openai-compatible\n    base_url: ftp://example.com/v1\n',
    );
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: ftp })),
      'ASSISTD_MODELS_FILE',
      "unsupported scheme 'ftp:'",
    );
  });

  test('a YAML file that does not parse', () => {
    const file = modelsFile('yaml', 'models: [\n  a: b\n');
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file })),
      'ASSISTD_MODELS_FILE',
      file,
      'does not parse as YAML',
    );
  });

  test('a JSON file that does not parse', () => {
    const file = modelsFile('json', '{"models": ');
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file })),
      'ASSISTD_MODELS_FILE',
      file,
      'does not parse as JSON',
    );
  });

  test('a models file that does not exist', () => {
    const file = path.join(dir, 'no-such-models.yaml');
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file })),
      'ASSISTD_MODELS_FILE',
      `cannot read ${file}`,
    );
  });

  test('a default in the file plus ASSISTD_UPSTREAM_BASE_URL', () => {
    const file = modelsFile('yaml', 'models:\n  local:\n    type: gguf\n    path: other.gguf\ndefault: local\n');
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file, upstreamBaseUrl: 'http://127.0.0.1:11434/v1' })),
      'ASSISTD_MODELS_FILE',
      'has a default route',
      'ASSISTD_UPSTREAM_BASE_URL',
    );
  });

  test('a default in the file plus ASSISTD_MODEL_FILE', () => {
    const file = modelsFile('yaml', 'default:\n  type: gguf\n  path: other.gguf\n');
    assertModelsError(
      () => loadModelsConfig(settings({ modelsFile: file, modelFile: path.join(dir, 'other.gguf') })),
      'ASSISTD_MODELS_FILE',
      'has a default route',
      'ASSISTD_MODEL_FILE',
    );
  });

  test('a models file without a default leaves the fallback to ASSISTD_UPSTREAM_BASE_URL', () => {
    const file = modelsFile('yaml', 'models:\n  local:\n    type: gguf\n    path: other.gguf\n');
    const config = loadModelsConfig(settings({ modelsFile: file, upstreamBaseUrl: 'http://127.0.0.1:11434/v1/' }));
    assert.equal(asOpenAI(config.fallback).baseUrl, 'http://127.0.0.1:11434/v1');
    assert.deepEqual([...config.routes.keys()], ['local']);
  });
});

describe('loadModelsConfig: without a models file', () => {
  test('nothing set: no routes and no fallback', () => {
    const config = loadModelsConfig(settings());
    assert.equal(config.routes.size, 0);
    assert.equal(config.fallback, undefined);
  });

  test('ASSISTD_MODEL_FILE and ASSISTD_UPSTREAM_BASE_URL both set', () => {
    assertModelsError(
      () =>
        loadModelsConfig(
          settings({ modelFile: path.join(dir, 'other.gguf'), upstreamBaseUrl: 'http://127.0.0.1:11434/v1' }),
        ),
      'ASSISTD_MODEL_FILE',
      'both ASSISTD_MODEL_FILE and ASSISTD_UPSTREAM_BASE_URL are set',
    );
  });

  test('ASSISTD_MODEL_FILE alone: a gguf fallback with threads from llamaThreads', () => {
    const file = path.join(dir, 'other.gguf');
    const config = loadModelsConfig(settings({ modelFile: file, llamaThreads: 7, llamaContextSize: 1024 }));
    assert.equal(config.routes.size, 0);
    assert.deepEqual(asGguf(config.fallback), {
      type: 'gguf',
      path: file,
      contextSize: 1024,
      threads: 7,
      origin: { setting: 'ASSISTD_MODEL_FILE' },
    });
  });

  test('ASSISTD_MODEL_FILE alone without llamaThreads: as many threads as the machine runs in parallel', () => {
    const config = loadModelsConfig(settings({ modelFile: path.join(dir, 'other.gguf') }));
    const fallback = asGguf(config.fallback);
    assert.equal(fallback.threads, os.availableParallelism());
    assert.equal(fallback.contextSize, undefined);
  });

  test('ASSISTD_MODEL_FILE naming a missing file', () => {
    const file = path.join(dir, 'missing.gguf');
    assertModelsError(
      () => loadModelsConfig(settings({ modelFile: file })),
      'ASSISTD_MODEL_FILE',
      file,
      'does not exist',
    );
  });

  test('ASSISTD_UPSTREAM_BASE_URL alone: an openai-compatible fallback without the trailing slash', () => {
    const config = loadModelsConfig(
      settings({
        upstreamBaseUrl: 'http://127.0.0.1:11434/v1/',
        upstreamApiKey: 'sk-up',
        upstreamTimeoutMs: 9_000,
        contextWindow: 8_000,
      }),
    );
    assert.equal(config.routes.size, 0);
    assert.deepEqual(asOpenAI(config.fallback), {
      type: 'openai-compatible',
      baseUrl: 'http://127.0.0.1:11434/v1',
      apiKey: 'sk-up',
      model: undefined,
      timeoutMs: 9_000,
      contextWindow: 8_000,
      reasoningOpened: false,
    });
  });

  test('ASSISTD_UPSTREAM_BASE_URL that is not a URL', () => {
    assertModelsError(
      () => loadModelsConfig(settings({ upstreamBaseUrl: 'localhost:11434' })),
      'ASSISTD_UPSTREAM_BASE_URL',
      'unsupported scheme',
    );
    assertModelsError(
      () => loadModelsConfig(settings({ upstreamBaseUrl: 'no url at all' })),
      'ASSISTD_UPSTREAM_BASE_URL',
      'is not a valid URL',
    );
  });

  test('a base URL with a user and password is refused, and the password is not repeated', () => {
    // Every request sends the API key in a header, which would override the URL's Basic credentials, and the
    // models list (fetch) refuses such a URL outright; the password must not reach the startup log either.
    const refused = (run: () => unknown, setting: string) => {
      assertModelsError(run, setting, 'a user or password', 'ASSISTD_UPSTREAM_API_KEY');
      assert.throws(run, (error: Error) => !error.message.includes('s3cret'));
    };
    refused(
      () => loadModelsConfig(settings({ upstreamBaseUrl: 'http://user:s3cret@127.0.0.1:11434/v1' })),
      'ASSISTD_UPSTREAM_BASE_URL',
    );
    const file = modelsFile(
      'yaml',
      'models:\n  remote:\n    type: openai-compatible\n    base_url: https://s3cret@example.com/v1\n',
    );
    refused(() => loadModelsConfig(settings({ modelsFile: file })), 'ASSISTD_MODELS_FILE');
    // Nor when the URL does not parse at all.
    assertModelsError(
      () => loadModelsConfig(settings({ upstreamBaseUrl: 'http://user:s3cret@exa mple.com/v1' })),
      'ASSISTD_UPSTREAM_BASE_URL',
      'is not a valid URL',
    );
    assert.throws(
      () => loadModelsConfig(settings({ upstreamBaseUrl: 'http://user:s3cret@exa mple.com/v1' })),
      (error: Error) => !error.message.includes('s3cret'),
    );
  });
});

describe('loadConfig: models settings', () => {
  test('a mistake in the models file surfaces as a ConfigError naming ASSISTD_MODELS_FILE', () => {
    const file = modelsFile('yaml', 'models:\n  local:\n    type: gguf\n    path: other.gguf\ndefault: missing\n');
    assert.throws(
      () => loadConfig({ ASSISTD_MODELS_FILE: file }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
        assert.ok(!(error instanceof ModelsConfigError));
        assert.equal(error.setting, 'ASSISTD_MODELS_FILE');
        assert.ok(error.message.startsWith('ASSISTD_MODELS_FILE: '), error.message);
        assert.ok(error.message.includes("'missing'"), error.message);
        return true;
      },
    );
  });

  test('a missing ASSISTD_MODEL_FILE surfaces as a ConfigError naming ASSISTD_MODEL_FILE', () => {
    const file = path.join(dir, 'missing.gguf');
    assert.throws(
      () => loadConfig({ ASSISTD_MODEL_FILE: file }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.setting, 'ASSISTD_MODEL_FILE');
        assert.ok(error.message.startsWith('ASSISTD_MODEL_FILE: '), error.message);
        assert.ok(error.message.includes('does not exist'), error.message);
        return true;
      },
    );
  });

  test('passes the environment and the numeric settings through', () => {
    const file = modelsFile(
      'yaml',
      'models:\n  remote:\n    type: openai-compatible\n    base_url: https://api.example.com/v1\n' +
        '    api_key_env: ROUTE_KEY\n  local:\n    type: gguf\n    path: other.gguf\n',
    );
    const config = loadConfig({
      ASSISTD_MODELS_FILE: ` ${file} `,
      ROUTE_KEY: 'sk-route',
      ASSISTD_UPSTREAM_TIMEOUT_S: '12',
      ASSISTD_CONTEXT_WINDOW: '16000',
      ASSISTD_LLAMA_THREADS: '2',
      ASSISTD_LLAMA_CONTEXT_SIZE: '512',
    });
    assert.deepEqual(asOpenAI(config.models.routes.get('remote')), {
      type: 'openai-compatible',
      baseUrl: 'https://api.example.com/v1',
      apiKey: 'sk-route',
      model: undefined,
      timeoutMs: 12_000,
      contextWindow: 16_000,
      reasoningOpened: false,
    });
    const local = asGguf(config.models.routes.get('local'));
    assert.equal(local.threads, 2);
    assert.equal(local.contextSize, 512);
    assert.equal(config.models.fallback, undefined);
  });

  test('an empty ASSISTD_MODELS_FILE counts as unset', () => {
    const config = loadConfig({ ASSISTD_MODELS_FILE: '  ', ASSISTD_UPSTREAM_BASE_URL: 'http://127.0.0.1:8080/v1/' });
    assert.equal(config.models.routes.size, 0);
    assert.equal(asOpenAI(config.models.fallback).baseUrl, 'http://127.0.0.1:8080/v1');
  });
});

describe('embeddings: the embedding model of vector stores', () => {
  test('none configured: undefined (keyword search only)', () => {
    assert.equal(loadModelsConfig(settings()).embeddings, undefined);
    assert.equal(loadConfig({}).models.embeddings, undefined);
  });

  test('ASSISTD_EMBEDDINGS_MODEL with its own endpoint and key', () => {
    const config = loadConfig({
      ASSISTD_EMBEDDINGS_MODEL: 'nomic-embed-text',
      ASSISTD_EMBEDDINGS_BASE_URL: 'http://127.0.0.1:11434/v1/',
      ASSISTD_EMBEDDINGS_API_KEY: 'sk-embed',
      ASSISTD_UPSTREAM_BASE_URL: 'https://api.example.com/v1',
      ASSISTD_UPSTREAM_API_KEY: 'sk-chat',
      ASSISTD_UPSTREAM_TIMEOUT_S: '30',
    });
    assert.deepEqual(config.models.embeddings, {
      type: 'openai-compatible',
      baseUrl: 'http://127.0.0.1:11434/v1',
      apiKey: 'sk-embed',
      model: 'nomic-embed-text',
      timeoutMs: 30_000,
    });
  });

  test('ASSISTD_EMBEDDINGS_MODEL alone: the chat upstream and its key serve it', () => {
    const config = loadConfig({
      ASSISTD_EMBEDDINGS_MODEL: 'text-embedding-3-small',
      ASSISTD_UPSTREAM_BASE_URL: 'https://api.example.com/v1',
      ASSISTD_UPSTREAM_API_KEY: 'sk-chat',
    });
    assert.deepEqual(config.models.embeddings, {
      type: 'openai-compatible',
      baseUrl: 'https://api.example.com/v1',
      apiKey: 'sk-chat',
      model: 'text-embedding-3-small',
      timeoutMs: 120_000,
    });
  });

  test('ASSISTD_EMBEDDINGS_MODEL_FILE: a GGUF model, its path checked', () => {
    const file = path.join(dir, 'other.gguf');
    const config = loadModelsConfig(settings({ embeddingsModelFile: file, llamaThreads: 2 }));
    assert.deepEqual(config.embeddings, {
      type: 'gguf',
      path: file,
      contextSize: undefined,
      threads: 2,
      origin: { setting: 'ASSISTD_EMBEDDINGS_MODEL_FILE' },
    });
    assertModelsError(
      () => loadModelsConfig(settings({ embeddingsModelFile: path.join(dir, 'nope.gguf') })),
      'ASSISTD_EMBEDDINGS_MODEL_FILE',
      'nope.gguf does not exist',
    );
  });

  test('settings that do not go together stop startup, naming the setting', () => {
    assertModelsError(
      () => loadModelsConfig(settings({ embeddingsBaseUrl: 'http://127.0.0.1:1/v1' })),
      'ASSISTD_EMBEDDINGS_MODEL',
      'is required with ASSISTD_EMBEDDINGS_BASE_URL',
    );
    assertModelsError(
      () => loadModelsConfig(settings({ embeddingsModel: 'm' })),
      'ASSISTD_EMBEDDINGS_BASE_URL',
      'is required with ASSISTD_EMBEDDINGS_MODEL',
    );
    assertModelsError(
      () => loadModelsConfig(settings({ embeddingsModel: 'm', embeddingsModelFile: path.join(dir, 'other.gguf') })),
      'ASSISTD_EMBEDDINGS_MODEL_FILE',
      'keep one embedding model',
    );
    assertModelsError(
      () => loadModelsConfig(settings({ embeddingsModel: 'm', embeddingsBaseUrl: 'ftp://x/v1' })),
      'ASSISTD_EMBEDDINGS_BASE_URL',
      "unsupported scheme 'ftp:'",
    );
    assert.throws(
      () => loadConfig({ ASSISTD_EMBEDDINGS_MODEL: 'm' }),
      (error: unknown) => error instanceof ConfigError && error.setting === 'ASSISTD_EMBEDDINGS_BASE_URL',
    );
  });

  test('an embeddings entry of a models file: openai-compatible or gguf, validated like a route', () => {
    const remote = modelsFile(
      'yaml',
      'embeddings:\n  type: openai-compatible\n  base_url: https://api.example.com/v1/\n  model: text-embedding-3-large\n' +
        '  api_key_env: EMBED_KEY\n  timeout_s: 15\n',
    );
    assert.deepEqual(loadModelsConfig(settings({ modelsFile: remote, env: { EMBED_KEY: 'sk-e' } })).embeddings, {
      type: 'openai-compatible',
      baseUrl: 'https://api.example.com/v1',
      apiKey: 'sk-e',
      model: 'text-embedding-3-large',
      timeoutMs: 15_000,
    });
    const local = modelsFile(
      'json',
      JSON.stringify({ embeddings: { type: 'gguf', path: 'weights/small.gguf', context_size: 2048, threads: 2 } }),
    );
    assert.deepEqual(loadModelsConfig(settings({ modelsFile: local })).embeddings, {
      type: 'gguf',
      path: path.join(dir, 'weights', 'small.gguf'),
      contextSize: 2048,
      threads: 2,
      origin: { setting: 'ASSISTD_MODELS_FILE', label: 'embeddings' },
    });

    for (const [text, ...patterns] of [
      ['embeddings:\n  type: openai-compatible\n  base_url: http://x/v1\n', 'embeddings.model'],
      ['embeddings:\n  type: gguf\n  path: other.gguf\n  model: x\n', 'embeddings', "unknown field 'model'"],
      ['embeddings:\n  type: bert\n  path: other.gguf\n', 'embeddings', 'type must be'],
      [
        'embeddings:\n  type: openai-compatible\n  base_url: http://x/v1\n  model: m\n  api_key_env: UNSET_KEY\n',
        'embeddings: api_key_env names the environment variable UNSET_KEY',
      ],
      ['embeddings:\n  type: gguf\n  path: weights/nope.gguf\n', 'embeddings: the GGUF model file', 'does not exist'],
    ] as const)
      assertModelsError(
        () => loadModelsConfig(settings({ modelsFile: modelsFile('yaml', text) })),
        'ASSISTD_MODELS_FILE',
        ...patterns,
      );
    assertModelsError(
      () =>
        loadModelsConfig(
          settings({
            modelsFile: remote,
            env: { EMBED_KEY: 'k' },
            embeddingsModel: 'm',
            upstreamBaseUrl: 'http://127.0.0.1:1/v1',
          }),
        ),
      'ASSISTD_MODELS_FILE',
      'has an embeddings entry, and ASSISTD_EMBEDDINGS_MODEL sets another',
    );
  });
});
