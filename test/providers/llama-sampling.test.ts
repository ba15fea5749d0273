import assert from 'node:assert/strict';
import { test } from 'node:test';
import { samplingOf } from '../../src/providers/llama-cpp/llama-cpp-provider.ts';

/**
 * The embedded backend's sampling: the API's defaults rather than node-llama-cpp's (which samples from the 40 likeliest
 * tokens, top-p 0.95, whenever the temperature is above 0), and a seed per request rather than per second.
 */
test('the embedded model samples with the API defaults: the whole vocabulary, top_p 1, temperature 1', () => {
  const { seed, ...defaults } = samplingOf({});
  assert.deepEqual(defaults, { temperature: 1, topK: 0, topP: 1 });
  assert.ok(Number.isInteger(seed));
  const { seed: _seed, ...given } = samplingOf({ temperature: 0.2, top_p: 0.5 });
  assert.deepEqual(given, { temperature: 0.2, topK: 0, topP: 0.5 });
});

test('each request has a seed of its own: two started in the same second do not sample alike', () => {
  const seeds = new Set(Array.from({ length: 20 }, () => samplingOf({}).seed));
  assert.ok(seeds.size > 1, `${seeds.size} distinct seeds of 20`);
});
