/**
 * Writes tiny, scripted GGUF models for tests: no weights can be downloaded here, so the embedded backend is tested
 * against models that the tests make themselves (~300 KB each, a few milliseconds to write).
 *
 * The model is a one-layer `llama` network whose weights are chosen by hand so that it behaves as a lookup table:
 *
 * - Token embeddings are one-hot: every token that the script needs to "recognise" gets its own dimension (slot).
 * - The feed-forward block and the attention's query/key are zero, so attention is a plain average over the
 *   context; its value/output matrices copy one "marker" token's slot into a spare dimension. The residual stream at
 *   the last position is then the last token's slot, plus a small positive value when the marker occurs anywhere
 *   in the context (the average of 1 over n positions).
 * - `output.weight` maps each slot to the logit of the scripted next token (32 against 0 for every other token).
 *
 * So generation after `<|im_start|>assistant\n` follows `reply` piece by piece, then `<|im_end|>`; and when a tool
 * result containing the marker character is in the context, the `\n` that ends the prompt leads to `afterMarker`
 * instead. Each piece becomes one vocabulary token, so pieces must be distinct, and longer than one character
 * (single characters tokenise as byte tokens). The vocabulary is SentencePiece-style (`llama`): `<unk>`, `<s>`,
 * `</s>`, the ChatML control tokens, the 256 byte tokens, `▁`, the marker and the pieces. Prompts therefore
 * tokenise about one token per byte: keep the context size at 4096 or more.
 */
import { writeFileSync } from 'node:fs';

export interface ScriptedModel {
  /** What the model generates after the prompt's final `\n` (the end of `<|im_start|>assistant\n`). */
  reply: string[];
  /** What it generates after that `\n` instead when the context contains `MARKER` (e.g. in a tool's output). */
  afterMarker?: string[];
  /**
   * More chains: the first entry is a token the generation may reach some other way (e.g. one the chat wrapper
   * inserts itself), the rest follow it.
   */
  chains?: string[][];
  /** Context length the model declares it was trained with. Default 8192. */
  contextLength?: number;
}

/** Put this character in a tool output to make the model follow `afterMarker`. */
export const MARKER = '☀';
/** The end-of-turn token, to end a chain with. */
export const END = '<|im_end|>';

const N_EMBD = 64;
const N_HEAD = 4;
const N_FF = 128;
/** The spare dimension that attention fills when the marker is in the context. */
const MARKER_DIM = N_EMBD - 1;
/** The spare dimension that the feed-forward block fills when the marker is in the context *and* the last token is `\n`. */
const AND_DIM = N_EMBD - 2;
/** Gain of the feed-forward gate on MARKER_DIM, whose value shrinks as 1/(context length). */
const GATE_GAIN = 1000;
/** Logit weight of AND_DIM: enough to outweigh the reply's 8-logit lead. */
const AND_WEIGHT = 10;

export function writeScriptedGguf(path: string, script: ScriptedModel): void {
  writeFileSync(path, scriptedGguf(script));
}

/**
 * A piece of one ASCII character is that byte's token; `END` is `<|im_end|>`; any other piece is a token of its own
 * (added to the vocabulary), so those must be distinct.
 */
export function scriptedGguf(script: ScriptedModel): Buffer {
  const tokens: string[] = ['<unk>', '<s>', '</s>', '<|im_start|>', END];
  const types: number[] = [2, 3, 3, 3, 3];
  const byteToken = (byte: number) => `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
  for (let byte = 0; byte < 256; byte++) {
    tokens.push(byteToken(byte));
    types.push(6);
  }
  const id = (text: string) => tokens.indexOf(text);
  const add = (text: string) => {
    tokens.push(text);
    types.push(1);
    return tokens.length - 1;
  };
  add('▁');
  const marker = add(MARKER);
  const pieceIds = new Map<string, number>();
  const piece = (text: string): number => {
    if (text === END) return id(END);
    if (text.length === 1 && text.charCodeAt(0) < 128) return id(byteToken(text.charCodeAt(0)));
    let token = pieceIds.get(text);
    if (token === undefined) {
      token = add(text.replaceAll(' ', '▁'));
      pieceIds.set(text, token);
    }
    return token;
  };
  const newline = id(byteToken(10));
  const chains = [[newline, ...script.reply.map(piece)], ...(script.chains ?? []).map((chain) => chain.map(piece))];
  const afterMarker = (script.afterMarker ?? []).map(piece);
  const nVocab = tokens.length;

  // Slots: one embedding dimension for each token whose successor the script decides, and for the marker.
  const slots = new Map<number, number>();
  const slotOf = (token: number) => {
    let slot = slots.get(token);
    if (slot === undefined) {
      slot = slots.size;
      if (slot >= AND_DIM) throw new Error('scripted GGUF: too many pieces for the embedding size');
      slots.set(token, slot);
    }
    return slot;
  };
  slotOf(marker);

  const embeddings = new Float32Array(N_EMBD * nVocab);
  const output = new Float32Array(N_EMBD * nVocab);
  const successor = new Map<number, number>();
  for (const chain of chains) {
    for (let i = 0; i + 1 < chain.length; i++) {
      const [from, to] = [chain[i]!, chain[i + 1]!];
      if (successor.has(from) && successor.get(from) !== to)
        throw new Error(`scripted GGUF: ${JSON.stringify(tokens[from])} is followed by two different tokens`);
      successor.set(from, to);
      output[to * N_EMBD + slotOf(from)] = 4;
    }
  }
  // After the prompt's final `\n`: the reply (logit 32), unless the marker is in the context, which lowers the
  // reply's first token and raises afterMarker's (24 + boost).
  if (afterMarker.length > 0) {
    const first = afterMarker[0]!;
    output[first * N_EMBD + slotOf(newline)] = 3;
    output[first * N_EMBD + AND_DIM] = AND_WEIGHT;
    const replyFirst = successor.get(newline);
    if (replyFirst !== undefined) output[replyFirst * N_EMBD + AND_DIM] = -AND_WEIGHT;
    for (let i = 0; i + 1 < afterMarker.length; i++) {
      const [from, to] = [afterMarker[i]!, afterMarker[i + 1]!];
      if (successor.has(from) && successor.get(from) !== to)
        throw new Error(`scripted GGUF: ${JSON.stringify(tokens[from])} is followed by two different tokens`);
      successor.set(from, to);
      output[to * N_EMBD + slotOf(from)] = 4;
    }
  }
  for (const [token, slot] of slots) embeddings[token * N_EMBD + slot] = 1;

  const zeros = (n: number) => new Float32Array(n);
  const ones = (n: number) => new Float32Array(n).fill(1);
  // Attention: query and key zero (uniform weights over the context); value copies the marker's slot into
  // MARKER_DIM, and the output projection passes MARKER_DIM through.
  const attnV = zeros(N_EMBD * N_EMBD);
  attnV[MARKER_DIM * N_EMBD + slotOf(marker)] = 1;
  const attnOutput = zeros(N_EMBD * N_EMBD);
  attnOutput[MARKER_DIM * N_EMBD + MARKER_DIM] = 1;
  // Feed-forward: one hidden unit, silu(GATE_GAIN · marker) × [last token is \n], written to AND_DIM.
  const ffnGate = zeros(N_EMBD * N_FF);
  ffnGate[0 * N_EMBD + MARKER_DIM] = GATE_GAIN;
  const ffnUp = zeros(N_EMBD * N_FF);
  ffnUp[0 * N_EMBD + slotOf(newline)] = 1;
  const ffnDown = zeros(N_FF * N_EMBD);
  ffnDown[AND_DIM * N_FF + 0] = 1;

  const tensors: Tensor[] = [
    { name: 'token_embd.weight', dims: [N_EMBD, nVocab], data: embeddings },
    { name: 'output_norm.weight', dims: [N_EMBD], data: ones(N_EMBD) },
    { name: 'output.weight', dims: [N_EMBD, nVocab], data: output },
    { name: 'blk.0.attn_norm.weight', dims: [N_EMBD], data: ones(N_EMBD) },
    { name: 'blk.0.attn_q.weight', dims: [N_EMBD, N_EMBD], data: zeros(N_EMBD * N_EMBD) },
    { name: 'blk.0.attn_k.weight', dims: [N_EMBD, N_EMBD], data: zeros(N_EMBD * N_EMBD) },
    { name: 'blk.0.attn_v.weight', dims: [N_EMBD, N_EMBD], data: attnV },
    { name: 'blk.0.attn_output.weight', dims: [N_EMBD, N_EMBD], data: attnOutput },
    { name: 'blk.0.ffn_norm.weight', dims: [N_EMBD], data: ones(N_EMBD) },
    { name: 'blk.0.ffn_gate.weight', dims: [N_EMBD, N_FF], data: ffnGate },
    { name: 'blk.0.ffn_up.weight', dims: [N_EMBD, N_FF], data: ffnUp },
    { name: 'blk.0.ffn_down.weight', dims: [N_FF, N_EMBD], data: ffnDown },
  ];

  const metadata: Array<[string, Value]> = [
    ['general.architecture', str('llama')],
    ['general.name', str('assistd scripted test model')],
    ['general.alignment', u32(ALIGNMENT)],
    ['llama.context_length', u32(script.contextLength ?? 8192)],
    ['llama.embedding_length', u32(N_EMBD)],
    ['llama.block_count', u32(1)],
    ['llama.feed_forward_length', u32(N_FF)],
    ['llama.attention.head_count', u32(N_HEAD)],
    ['llama.attention.head_count_kv', u32(N_HEAD)],
    ['llama.rope.dimension_count', u32(N_EMBD / N_HEAD)],
    ['llama.rope.freq_base', f32(10000)],
    ['llama.attention.layer_norm_rms_epsilon', f32(1e-5)],
    ['tokenizer.ggml.model', str('llama')],
    ['tokenizer.ggml.tokens', { type: 'strings', value: tokens }],
    ['tokenizer.ggml.scores', { type: 'f32s', value: tokens.map(() => 0) }],
    ['tokenizer.ggml.token_type', { type: 'i32s', value: types }],
    ['tokenizer.ggml.bos_token_id', u32(id('<s>'))],
    ['tokenizer.ggml.eos_token_id', u32(id(END))],
    ['tokenizer.ggml.unknown_token_id', u32(id('<unk>'))],
    ['tokenizer.ggml.add_bos_token', bool(false)],
    ['tokenizer.ggml.add_space_prefix', bool(false)],
    ['tokenizer.chat_template', str(CHATML_TEMPLATE)],
  ];
  return ggufFile(metadata, tensors);
}

/**
 * A scripted embedding model: `concepts` maps a concept to the words that mean it (e.g. `vehicle: ['car',
 * 'automobile']`), and the model embeds a text as the mean, over its tokens, of each recognised word's concept
 * dimension: a bag of concepts, so that "automobile maintenance" and "car servicing" (with `servicing` and
 * `maintenance` one concept too) are the same vector while sharing no word.
 *
 * Every word becomes one token: the vocabulary holds each word's prefixes (`▁c`, `▁ca`, `▁car`), which the
 * SentencePiece tokenizer merges, longest winning. Everything else tokenises as byte tokens, whose embedding is
 * zero. The one layer adds nothing (all of its weights are zero), so each token's hidden state is its embedding,
 * RMS-normalised by `output_norm` (a one-hot vector stays one-hot), and `llama.pooling_type` 1 (mean) makes
 * llama.cpp average them into the text's embedding. Its dimension is the number of concepts plus one unused.
 */
export function scriptedEmbeddingGguf(concepts: Record<string, readonly string[]>): Buffer {
  const names = Object.keys(concepts);
  const nEmbd = Math.max(4, Math.ceil((names.length + 1) / 4) * 4);
  const tokens: string[] = ['<unk>', '<s>', '</s>'];
  const types: number[] = [2, 3, 3];
  const scores: number[] = [0, 0, 0];
  for (let byte = 0; byte < 256; byte++) {
    tokens.push(`<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6);
    scores.push(0);
  }
  tokens.push('▁');
  types.push(1);
  scores.push(0);
  const conceptOf = new Map<number, number>();
  for (const [dim, name] of names.entries())
    for (const word of concepts[name]!) {
      const piece = `▁${word.toLowerCase()}`;
      for (let end = 2; end <= piece.length; end++) {
        const prefix = piece.slice(0, end);
        let token = tokens.indexOf(prefix);
        if (token === -1) {
          token = tokens.push(prefix) - 1;
          types.push(1);
          scores.push(end);
        }
        if (end === piece.length) conceptOf.set(token, dim);
      }
    }
  const nVocab = tokens.length;
  const embeddings = new Float32Array(nEmbd * nVocab);
  for (const [token, dim] of conceptOf) embeddings[token * nEmbd + dim] = 1;
  const zeros = (n: number) => new Float32Array(n);
  const ones = (n: number) => new Float32Array(n).fill(1);
  const nHead = 2;
  const tensors: Tensor[] = [
    { name: 'token_embd.weight', dims: [nEmbd, nVocab], data: embeddings },
    { name: 'output_norm.weight', dims: [nEmbd], data: ones(nEmbd) },
    { name: 'output.weight', dims: [nEmbd, nVocab], data: zeros(nEmbd * nVocab) },
    { name: 'blk.0.attn_norm.weight', dims: [nEmbd], data: ones(nEmbd) },
    { name: 'blk.0.attn_q.weight', dims: [nEmbd, nEmbd], data: zeros(nEmbd * nEmbd) },
    { name: 'blk.0.attn_k.weight', dims: [nEmbd, nEmbd], data: zeros(nEmbd * nEmbd) },
    { name: 'blk.0.attn_v.weight', dims: [nEmbd, nEmbd], data: zeros(nEmbd * nEmbd) },
    { name: 'blk.0.attn_output.weight', dims: [nEmbd, nEmbd], data: zeros(nEmbd * nEmbd) },
    { name: 'blk.0.ffn_norm.weight', dims: [nEmbd], data: ones(nEmbd) },
    { name: 'blk.0.ffn_gate.weight', dims: [nEmbd, nEmbd], data: zeros(nEmbd * nEmbd) },
    { name: 'blk.0.ffn_up.weight', dims: [nEmbd, nEmbd], data: zeros(nEmbd * nEmbd) },
    { name: 'blk.0.ffn_down.weight', dims: [nEmbd, nEmbd], data: zeros(nEmbd * nEmbd) },
  ];
  return ggufFile(
    [
      ['general.architecture', str('llama')],
      ['general.name', str('assistd scripted embedding model')],
      ['general.alignment', u32(ALIGNMENT)],
      ['llama.context_length', u32(512)],
      ['llama.embedding_length', u32(nEmbd)],
      ['llama.block_count', u32(1)],
      ['llama.feed_forward_length', u32(nEmbd)],
      ['llama.attention.head_count', u32(nHead)],
      ['llama.attention.head_count_kv', u32(nHead)],
      ['llama.rope.dimension_count', u32(nEmbd / nHead)],
      ['llama.rope.freq_base', f32(10000)],
      ['llama.attention.layer_norm_rms_epsilon', f32(1e-5)],
      ['llama.pooling_type', u32(1)],
      ['tokenizer.ggml.model', str('llama')],
      ['tokenizer.ggml.tokens', { type: 'strings', value: tokens }],
      ['tokenizer.ggml.scores', { type: 'f32s', value: scores }],
      ['tokenizer.ggml.token_type', { type: 'i32s', value: types }],
      ['tokenizer.ggml.bos_token_id', u32(1)],
      ['tokenizer.ggml.eos_token_id', u32(2)],
      ['tokenizer.ggml.unknown_token_id', u32(0)],
      ['tokenizer.ggml.add_bos_token', bool(false)],
      ['tokenizer.ggml.add_eos_token', bool(false)],
      ['tokenizer.ggml.add_space_prefix', bool(true)],
    ],
    tensors,
  );
}

interface Tensor {
  name: string;
  dims: number[];
  data: Float32Array;
}

/** A GGUF v3 file of these key-value pairs and F32 tensors. */
function ggufFile(metadata: ReadonlyArray<[string, Value]>, tensors: readonly Tensor[]): Buffer {
  const w = new GgufWriter();
  w.raw(Buffer.from('GGUF', 'latin1'));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, value] of metadata) {
    w.string(key);
    w.value(value);
  }
  let offset = 0;
  for (const tensor of tensors) {
    w.string(tensor.name);
    w.u32(tensor.dims.length);
    for (const dim of tensor.dims) w.u64(dim);
    w.u32(0); // GGML_TYPE_F32
    w.u64(offset);
    offset = align(offset + tensor.data.byteLength);
  }
  w.pad();
  for (const tensor of tensors) {
    w.raw(Buffer.from(tensor.data.buffer, tensor.data.byteOffset, tensor.data.byteLength));
    w.pad();
  }
  return w.toBuffer();
}

const CHATML_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const ALIGNMENT = 32;
const align = (n: number) => Math.ceil(n / ALIGNMENT) * ALIGNMENT;

type Value =
  | { type: 'u32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'strings'; value: string[] }
  | { type: 'f32s'; value: number[] }
  | { type: 'i32s'; value: number[] };

const u32 = (value: number): Value => ({ type: 'u32', value });
const f32 = (value: number): Value => ({ type: 'f32', value });
const bool = (value: boolean): Value => ({ type: 'bool', value });
const str = (value: string): Value => ({ type: 'string', value });

// GGUF value type ids.
const T_UINT32 = 4;
const T_INT32 = 5;
const T_FLOAT32 = 6;
const T_BOOL = 7;
const T_STRING = 8;
const T_ARRAY = 9;

class GgufWriter {
  private readonly chunks: Buffer[] = [];
  private length = 0;

  raw(buffer: Buffer) {
    this.chunks.push(buffer);
    this.length += buffer.length;
  }
  u32(n: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(n);
    this.raw(b);
  }
  i32(n: number) {
    const b = Buffer.alloc(4);
    b.writeInt32LE(n);
    this.raw(b);
  }
  f32(n: number) {
    const b = Buffer.alloc(4);
    b.writeFloatLE(n);
    this.raw(b);
  }
  u64(n: number) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    this.raw(b);
  }
  string(s: string) {
    const bytes = Buffer.from(s, 'utf8');
    this.u64(bytes.length);
    this.raw(bytes);
  }
  value(v: Value) {
    switch (v.type) {
      case 'u32':
        this.u32(T_UINT32);
        return this.u32(v.value);
      case 'f32':
        this.u32(T_FLOAT32);
        return this.f32(v.value);
      case 'bool':
        this.u32(T_BOOL);
        return this.raw(Buffer.from([v.value ? 1 : 0]));
      case 'string':
        this.u32(T_STRING);
        return this.string(v.value);
      case 'strings':
        this.array(T_STRING, v.value, (s) => this.string(s));
        return;
      case 'f32s':
        this.array(T_FLOAT32, v.value, (n) => this.f32(n));
        return;
      case 'i32s':
        this.array(T_INT32, v.value, (n) => this.i32(n));
        return;
    }
  }
  private array<T>(type: number, items: T[], write: (item: T) => void) {
    this.u32(T_ARRAY);
    this.u32(type);
    this.u64(items.length);
    for (const item of items) write(item);
  }
  pad() {
    const padding = align(this.length) - this.length;
    if (padding > 0) this.raw(Buffer.alloc(padding));
  }
  toBuffer(): Buffer {
    return Buffer.concat(this.chunks);
  }
}
