// Module hooks for import-recorder.mjs (they run on the loader thread).
import { appendFileSync } from 'node:fs';

let file;
let match;

export function initialize(data) {
  file = data?.file;
  match = data?.match;
}

function record(url) {
  if (file && match && url.includes(match)) appendFileSync(file, `${url}\n`);
}

export async function resolve(specifier, context, next) {
  if (match && specifier.includes(match)) record(specifier);
  const result = await next(specifier, context);
  record(result.url);
  return result;
}

export async function load(url, context, next) {
  record(url);
  return next(url, context);
}
