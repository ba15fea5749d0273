import { z } from 'zod';
import { ApiError, serverError } from '../../domain/errors.ts';
import { type Embedder, EmbeddingError } from '../../providers/embedder.ts';
import { countO200k } from '../../retrieval/o200k.ts';
import { clientGone } from '../client-gone.ts';
import { integer, nullAsAbsent } from '../schemas/common.ts';
import { parseBody } from '../validation.ts';

/**
 * `POST /v1/embeddings` for the GGUF embedding model run in-process (the one vector stores use), which has no
 * endpoint to pass the request on to: its vectors in OpenAI's `list` of `embedding`s, as floats or, as the SDKs ask
 * by default, base64 of their little-endian float32 bytes.
 */

/** As many inputs as OpenAI takes in one request. */
const MAX_INPUTS = 2048;

const embeddingsRequest = z.strictObject(
  nullAsAbsent({
    model: z.string(),
    // Tokens (an array of numbers, or of arrays of them) are read, to be refused by name below.
    input: z.union([
      z.string().min(1),
      z
        .array(z.union([z.string().min(1), z.number(), z.array(z.number())]))
        .min(1)
        .max(MAX_INPUTS),
    ]),
    encoding_format: z.enum(['float', 'base64']).optional(),
    dimensions: integer().min(1).optional(),
    user: z.string().optional(),
  }),
);

/** Answers an embeddings request with `embedder`; `signal` is aborted once the client's answer is done with. */
export async function embedInProcess(embedder: Embedder, body: unknown, signal: AbortSignal) {
  const request = parseBody(embeddingsRequest, body);
  const input = typeof request.input === 'string' ? [request.input] : request.input;
  if (!input.every((text): text is string => typeof text === 'string'))
    throw new ApiError(
      400,
      `Unsupported parameter: 'input' as tokens is not supported by the model '${request.model}', which runs inside assistd (a GGUF file): send text.`,
      { param: 'input', code: 'unsupported_parameter' },
    );
  if (request.dimensions !== undefined && request.dimensions !== embedder.dimensions)
    throw new ApiError(
      400,
      `Unsupported parameter: the model '${request.model}' gives vectors of ${embedder.dimensions} dimensions only, not ${request.dimensions}.`,
      { param: 'dimensions', code: 'unsupported_parameter' },
    );
  let vectors: Float32Array[];
  try {
    vectors = await embedder.embed(input, signal, 'document');
  } catch (error) {
    if (signal.aborted) throw clientGone();
    if (!(error instanceof EmbeddingError)) throw error;
    throw serverError(error.message);
  }
  const base64 = request.encoding_format === 'base64';
  const tokens = input.reduce((sum, text) => sum + countO200k(text), 0);
  return {
    object: 'list',
    data: vectors.map((vector, index) => ({
      object: 'embedding',
      index,
      embedding: base64 ? littleEndianBase64(vector) : Array.from(vector),
    })),
    model: request.model,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

/** A vector as OpenAI's base64 encoding has it: its float32 bytes, little-endian as the platforms Node runs on. */
function littleEndianBase64(vector: Float32Array): string {
  return Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64');
}
