/**
 * Search benchmark: retrieval quality on a labelled set, and ingest throughput, search latency and server memory on
 * a large vector store, on SQLite and on PostgreSQL. Run with `npm run bench:search`.
 *
 * Everything goes through a real `assistd serve` (its own process, a fresh one per database and search mode) and
 * the official SDK, as a user would:
 *
 * 1. Retrieval quality: the 32 documents of bench/retrieval-set/docs (written for this benchmark) are uploaded into
 *    a store with `fileBatches.uploadAndPoll` (the `auto` chunking), then each of the ~100 labelled questions of
 *    bench/retrieval-set/questions.json is asked through `vectorStores.search(store, { query, max_num_results: 5 })`.
 *    recall@5: the share of a question's answering files among the files of its 5 results, averaged over the
 *    questions; MRR: 1 / the rank of the first result from an answering file (0 if none), averaged. Printed for
 *    all questions and apart for the keyword-phrased and the paraphrased ones (which share none of their answer's
 *    key words).
 * 2. Scale: BENCH_FILES generated text files (seeded: words of a 50,000-word invented vocabulary drawn with Zipf's
 *    law, between real English function words, in sentences and paragraphs) sized so that `static` chunking of 100
 *    tokens without overlap makes about BENCH_CHUNKS chunks in all. The files are uploaded first (`files.create`,
 *    4 at a time), then one `fileBatches.createAndPoll` adds them all: ingest throughput is chunks and MB (10^6
 *    bytes of file) per second of that call, from the batch's creation to its completion as the client sees it.
 * 3. Latency: BENCH_QUERIES searches of 1–4 words drawn from the same vocabulary and law (after 20 untimed ones),
 *    one at a time, each timed from the SDK call to the parsed page, alternating with the baseline: the same SDK's
 *    `vectorStores.retrieve(store)`, one HTTP round trip and a small database read, so the search's own cost is the
 *    difference. Then the same searches again, back to back, for the server's CPU per search (and PostgreSQL's).
 *    On PostgreSQL the searches are first timed right after the ingestion; then the database is brought to where
 *    autovacuum leaves it (settleDatabase) and everything above is measured on that settled store.
 * 4. Memory: the server's resident set when idle, and its peak (VmHWM, reset through /proc/<pid>/clear_refs before
 *    each phase) while it indexes the retrieval set, during the uploads, the ingestion and the searches.
 *
 * Hybrid search needs an embeddings endpoint. When the server being measured has an embeddings setting (found in
 * its src/config.ts SETTINGS), every part is measured a second time on a server pointed at a stand-in that this
 * process serves on 127.0.0.1: `/v1/embeddings` answering with a hashing-trick embedding of words and their
 * character n-grams (a classic lexical technique; it knows nothing of meaning, so it cannot find synonyms — it is
 * here for the cost of the hybrid path and a floor for its quality, not as a model). Whether a search was hybrid is
 * judged by the stand-in's log: a server that asked it for no query embedding while searching ran keyword search,
 * and is labelled so. Without such a setting, hybrid is reported as not available.
 *
 * Targets, at 100,000 chunks: search p50 ≤ 20 ms keyword and ≤ 50 ms hybrid on SQLite; on PostgreSQL within 2× of
 * those (≤ 40 ms and ≤ 100 ms).
 *
 * Settings: BENCH_CHUNKS (default 100000), BENCH_FILES (150), BENCH_QUERIES (200), BENCH_DATABASES (`sqlite,postgres`
 * or either alone; unset, PostgreSQL is measured if reachable), BENCH_DATABASE_URL, BENCH_EMBEDDING_DIMS (384),
 * BENCH_HYBRID (0: keyword search only), BENCH_EMBEDDINGS_BASE_URL and BENCH_EMBEDDINGS_MODEL (and _API_KEY): a real
 * OpenAI-compatible embeddings endpoint for the hybrid servers instead of the stand-in.
 */
import { createReadStream, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type OpenAI from 'openai';
import pg from 'pg';
import { chunkText } from '../src/retrieval/chunking.ts';
import { SERVER_ROOT, tempDir } from '../test/support/server.ts';
import {
  type Assistd,
  type BenchDatabase,
  backendsCpuDelta,
  cleanups,
  DATABASE_NAMES,
  type DatabaseKind,
  databaseKinds,
  describeAdminUrl,
  interleaved,
  loadAverage,
  log,
  machine,
  memoryMiB,
  percentile,
  pool,
  positiveInteger,
  postgresBackendsCpuMs,
  postgresVersion,
  processCpuMs,
  runBench,
  startAssistd,
  table,
} from './support.ts';

const CHUNKS = positiveInteger('BENCH_CHUNKS', 100_000);
const FILES = positiveInteger('BENCH_FILES', 150);
const QUERIES = positiveInteger('BENCH_QUERIES', 200);
const EMBEDDING_DIMS = positiveInteger('BENCH_EMBEDDING_DIMS', 384);
/** BENCH_HYBRID=0: keyword search only, even where the server could do hybrid. */
const HYBRID_WANTED = process.env.BENCH_HYBRID?.trim() !== '0';
const WARM_UP_QUERIES = 20;
const UPLOAD_CONCURRENCY = 4;
const RESULTS = 5;
const CHUNKING = { max_chunk_size_tokens: 100, chunk_overlap_tokens: 0 };
/** The scale the targets are stated for. */
const TARGET_CHUNKS = 100_000;
const TARGET_P50_MS: Record<SearchMode, number> = { keyword: 20, hybrid: 50 };
const POSTGRES_FACTOR = 2;
/** The server refuses text files of more characters (README, "Vector stores"). */
const MAX_FILE_CHARS = 8_000_000;

const RETRIEVAL_SET = fileURLToPath(new URL('./retrieval-set/', import.meta.url));

type SearchMode = 'keyword' | 'hybrid';

const fixed = (value: number | undefined, digits = 0) =>
  value === undefined || Number.isNaN(value) ? 'n/a' : value.toFixed(digits);
const verdict = (met: boolean) => (met ? 'met' : 'NOT met');

// ── the labelled retrieval set ────────────────────────────────────────────────

interface Question {
  id: string;
  kind: 'keyword' | 'paraphrase';
  question: string;
  /** File names in docs/ that answer it. */
  answers: string[];
}

interface RetrievalSet {
  docs: string[];
  questions: Question[];
}

/** The documents and questions, checked: every answer names a document, every document exists once. */
function loadRetrievalSet(): RetrievalSet {
  const dir = path.join(RETRIEVAL_SET, 'docs');
  const names = readdirSync(dir).filter((name) => /\.(md|txt)$/.test(name));
  const { questions } = JSON.parse(readFileSync(path.join(RETRIEVAL_SET, 'questions.json'), 'utf8')) as {
    questions: Question[];
  };
  const ids = new Set<string>();
  for (const q of questions) {
    if (ids.has(q.id)) throw new Error(`questions.json: ${q.id} appears twice`);
    ids.add(q.id);
    if (q.kind !== 'keyword' && q.kind !== 'paraphrase') throw new Error(`questions.json: ${q.id} has kind ${q.kind}`);
    if (q.answers.length === 0) throw new Error(`questions.json: ${q.id} names no answer`);
    for (const answer of q.answers)
      if (!names.includes(answer)) throw new Error(`questions.json: ${q.id} names ${answer}, which is not in docs/`);
  }
  return { docs: names.map((name) => path.join(dir, name)), questions };
}

interface Recall {
  /** Per question: recall@5 and reciprocal rank. */
  perQuestion: Map<string, { recall: number; reciprocalRank: number }>;
}

async function measureRecall(client: OpenAI, set: RetrievalSet): Promise<Recall> {
  const store = await client.vectorStores.create({ name: 'retrieval-set' });
  const batch = await client.vectorStores.fileBatches.uploadAndPoll(store.id, {
    files: set.docs.map((doc) => createReadStream(doc)),
  });
  if (batch.file_counts.completed !== set.docs.length)
    throw new Error(`retrieval set: ${JSON.stringify(batch.file_counts)} of ${set.docs.length} documents`);
  const perQuestion = new Map<string, { recall: number; reciprocalRank: number }>();
  for (const q of set.questions) {
    const page = await client.vectorStores.search(store.id, { query: q.question, max_num_results: RESULTS });
    const files = page.data.map((result) => result.filename);
    const found = new Set(files.filter((file) => q.answers.includes(file)));
    const first = files.findIndex((file) => q.answers.includes(file));
    perQuestion.set(q.id, { recall: found.size / q.answers.length, reciprocalRank: first < 0 ? 0 : 1 / (first + 1) });
  }
  return { perQuestion };
}

function recallSummary(set: RetrievalSet, recall: Recall, kind?: Question['kind']) {
  const scores = set.questions
    .filter((q) => kind === undefined || q.kind === kind)
    .map((q) => recall.perQuestion.get(q.id)!);
  const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
  return {
    count: scores.length,
    recall: mean(scores.map((s) => s.recall)),
    mrr: mean(scores.map((s) => s.reciprocalRank)),
  };
}

// ── the generated corpus ──────────────────────────────────────────────────────

/** A small, fast, seeded generator (mulberry32): the same corpus and queries on every run. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pick = <T>(random: () => number, items: readonly T[]): T => items[Math.floor(random() * items.length)]!;

/**
 * English function words, all on PostgreSQL's english.stop list: real text is about 40% words like these. Both
 * databases drop them from queries (and PostgreSQL from its index), so they shape the chunks, not the hits.
 */
const FUNCTION_WORDS =
  'the of and to a in that is was for on with as it by at from this be are or an have not which but they his we had their there been has were all can if more will so no'.split(
    ' ',
  );
const ONSETS = 'b c d f g h j k l m n p r s t v w z br cr dr fr gr pl pr st tr sh ch th'.split(' ');
const NUCLEI = 'a e i o u ai ea ou io'.split(' ');
const CODAS = ['', '', '', 'n', 'r', 'l', 's', 'm', 't', 'nd', 'rk'];
const VOCABULARY_SIZE = 50_000;
/**
 * The content words follow Zipf's law as if ranks 1–99 were the function words: the commonest invented word then
 * appears in a few percent of the chunks, like a common English noun, not in all of them.
 */
const ZIPF_FIRST_RANK = 100;

/** Invented words of 2–3 syllables, distinct, none a function word. */
function vocabulary(random: () => number): string[] {
  const words = new Set<string>();
  const functionWords = new Set(FUNCTION_WORDS);
  while (words.size < VOCABULARY_SIZE) {
    let word = '';
    for (let s = 2 + Math.floor(random() * 2); s > 0; s--)
      word += pick(random, ONSETS) + pick(random, NUCLEI) + pick(random, CODAS);
    if (!functionWords.has(word)) words.add(word);
  }
  return [...words];
}

/** Draws words of `words` (most common first) with probability ∝ 1 / (ZIPF_FIRST_RANK + index). */
function zipfSampler(words: readonly string[], random: () => number): () => string {
  const cumulative = new Float64Array(words.length);
  let total = 0;
  for (let i = 0; i < words.length; i++) cumulative[i] = total += 1 / (ZIPF_FIRST_RANK + i);
  return () => {
    const target = random() * total;
    let low = 0;
    let high = words.length - 1;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (cumulative[middle]! < target) low = middle + 1;
      else high = middle;
    }
    return words[low]!;
  };
}

/** About `wordCount` words of prose: sentences of 6–18 words, paragraphs of 3–7 sentences. */
function prose(wordCount: number, random: () => number, contentWord: () => string): string {
  const paragraphs: string[] = [];
  let written = 0;
  while (written < wordCount) {
    const sentences: string[] = [];
    for (let s = 3 + Math.floor(random() * 5); s > 0 && written < wordCount; s--) {
      const words: string[] = [];
      for (let w = 6 + Math.floor(random() * 13); w > 0; w--)
        words.push(random() < 0.4 ? pick(random, FUNCTION_WORDS) : contentWord());
      written += words.length;
      const sentence = words.join(' ');
      sentences.push(`${sentence[0]!.toUpperCase()}${sentence.slice(1)}.`);
    }
    paragraphs.push(sentences.join(' '));
  }
  return `${paragraphs.join('\n\n')}\n`;
}

interface Corpus {
  dir: string;
  files: string[];
  bytes: number;
  /** The chunks the files should make, from the calibration sample. */
  expectedChunks: number;
  queries: string[];
}

/**
 * Writes the corpus: a sample is chunked here first (the server's own chunker) to find how many words make the
 * chunks wanted, then FILES files of that many words each.
 */
function writeCorpus(): Corpus {
  const random = seeded(20_261_205);
  const words = vocabulary(random);
  const contentWord = zipfSampler(words, random);
  const SAMPLE_WORDS = 20_000;
  const chunksPerWord = chunkText(prose(SAMPLE_WORDS, random, contentWord), CHUNKING).length / SAMPLE_WORDS;
  const wordsPerFile = Math.ceil(CHUNKS / FILES / chunksPerWord);
  const dir = tempDir('assistd-bench-search-');
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const files: string[] = [];
  let bytes = 0;
  for (let i = 0; i < FILES; i++) {
    const text = prose(wordsPerFile, random, contentWord);
    if (text.length > MAX_FILE_CHARS)
      throw new Error(`BENCH_FILES=${FILES} makes files of ${text.length} characters; raise it`);
    const file = path.join(dir, `corpus-${String(i).padStart(4, '0')}.txt`);
    writeFileSync(file, text);
    files.push(file);
    bytes += Buffer.byteLength(text);
  }
  const queryRandom = seeded(7);
  const queryWord = zipfSampler(words, queryRandom);
  const queries = Array.from({ length: QUERIES + WARM_UP_QUERIES }, () => {
    const terms = new Set<string>();
    for (let n = 1 + Math.floor(queryRandom() * 4); terms.size < n; ) terms.add(queryWord());
    return [...terms].join(' ');
  });
  return { dir, files, bytes, expectedChunks: Math.round(wordsPerFile * FILES * chunksPerWord), queries };
}

// ── the embeddings stand-in ───────────────────────────────────────────────────

/** FNV-1a, 32 bits. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return hash >>> 0;
}

/**
 * The hashing trick (Weinberger et al., 2009) over each word and its character 3- to 5-grams (as fastText's
 * subwords): each feature adds ±1 to the dimension its hash picks (the sign from the hash's top bit); the
 * vector is L2-normalised. Texts sharing words or parts of words (`reimburse`, `reimbursement`) come out close;
 * synonyms do not.
 */
function hashingEmbedding(text: string, dims: number): Float32Array {
  const vector = new Float32Array(dims);
  for (const word of text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? []) {
    const features = [`w:${word}`];
    const padded = `<${word}>`;
    for (let n = 3; n <= 5; n++) for (let i = 0; i + n <= padded.length; i++) features.push(padded.slice(i, i + n));
    for (const feature of features) {
      const hash = fnv1a(feature);
      vector[hash % dims]! += hash & 0x80000000 ? -1 : 1;
    }
  }
  let norm = 0;
  for (const value of vector) norm += value * value;
  norm = Math.sqrt(norm);
  if (norm > 0) for (let i = 0; i < dims; i++) vector[i]! /= norm;
  return vector;
}

interface EmbeddingStandIn {
  /** The base URL, up to and including /v1. */
  url: string;
  model: string;
  /** Requests answered so far. */
  requests: number;
}

/**
 * An OpenAI-compatible `POST /v1/embeddings` on 127.0.0.1, in this process: `input` a string, a list of strings or
 * token ids; `encoding_format` `float` or `base64` (the official SDK asks for base64 and decodes it); `dimensions`
 * honoured. Stopped at cleanup.
 */
async function startEmbeddingStandIn(dims: number): Promise<EmbeddingStandIn> {
  const standIn: EmbeddingStandIn = { url: '', model: `hashing-char-ngrams-${dims}`, requests: 0 };
  const answer = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'POST' || !/\/embeddings$/.test(req.url ?? ''))
      return answer(res, 404, {
        error: { message: `no route ${req.method} ${req.url}`, type: 'invalid_request_error' },
      });
    const parts: Buffer[] = [];
    for await (const part of req) parts.push(part as Buffer);
    const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as {
      input: string | string[] | number[] | number[][];
      encoding_format?: 'float' | 'base64';
      dimensions?: number;
    };
    const inputs: string[] = (
      typeof body.input === 'string' || typeof body.input[0] === 'number' ? [body.input] : body.input
    ).map((input) => (typeof input === 'string' ? input : (input as number[]).join(' ')));
    const size = body.dimensions ?? dims;
    standIn.requests++;
    let tokens = 0;
    const data = inputs.map((input, index) => {
      tokens += input.split(/\s+/).filter(Boolean).length;
      const vector = hashingEmbedding(input, size);
      return {
        object: 'embedding',
        index,
        embedding:
          body.encoding_format === 'base64'
            ? Buffer.from(vector.buffer, vector.byteOffset, vector.byteLength).toString('base64')
            : // Eight decimals, about what endpoints print (float32 holds seven digits): the 17 digits of a full
              // double would double the answers, and parsing them would be a cost of this stand-in, not of assistd.
              Array.from(vector, (value) => Math.round(value * 1e8) / 1e8),
      };
    });
    answer(res, 200, {
      object: 'list',
      data,
      model: standIn.model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) =>
      answer(res, 400, { error: { message: String(error), type: 'invalid_request_error' } }),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  standIn.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  return standIn;
}

// ── hybrid search ─────────────────────────────────────────────────────────────

/** The embeddings settings the measured server knows (its src/config.ts SETTINGS): none means keyword only. */
async function embeddingsSettings(): Promise<string[]> {
  const config = (await import(pathToFileURL(path.join(SERVER_ROOT, 'src/config.ts')).href)) as {
    SETTINGS?: ReadonlyArray<{ name: string }>;
  };
  return (config.SETTINGS ?? []).map((s) => s.name).filter((name) => /^ASSISTD_EMBEDDINGS?_/.test(name));
}

/** Where hybrid servers get their embeddings: the stand-in, or a real endpoint named by BENCH_EMBEDDINGS_*. */
interface EmbeddingsEndpoint {
  url: string;
  model: string;
  apiKey: string;
  /** Counts the requests; undefined for a real endpoint. */
  standIn: EmbeddingStandIn | undefined;
}

/** BENCH_EMBEDDINGS_BASE_URL and BENCH_EMBEDDINGS_MODEL (and _API_KEY) if set; otherwise the stand-in, started. */
async function embeddingsEndpoint(): Promise<EmbeddingsEndpoint> {
  const url = process.env.BENCH_EMBEDDINGS_BASE_URL?.trim();
  const model = process.env.BENCH_EMBEDDINGS_MODEL?.trim();
  if (url && model) return { url, model, apiKey: process.env.BENCH_EMBEDDINGS_API_KEY ?? 'bench', standIn: undefined };
  if (url || model) throw new Error('BENCH_EMBEDDINGS_BASE_URL and BENCH_EMBEDDINGS_MODEL go together');
  const standIn = await startEmbeddingStandIn(EMBEDDING_DIMS);
  return { url: standIn.url, model: standIn.model, apiKey: 'bench', standIn };
}

/**
 * The environment that points a server at the embeddings endpoint: the one place to change if the server's
 * embeddings settings are named or shaped otherwise than guessed here (a base URL, a model, a key).
 */
function hybridEnv(settings: readonly string[], endpoint: EmbeddingsEndpoint): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of settings) {
    if (/_URL$/.test(name)) env[name] = endpoint.url;
    else if (/_MODEL$/.test(name)) env[name] = endpoint.model;
    else if (/_API_KEY$/.test(name)) env[name] = endpoint.apiKey;
  }
  return env;
}

/** A response header that says which kind of search answered (`keyword`, `hybrid`), if the server sends one. */
function searchModeHeader(headers: Headers): string | undefined {
  for (const [name, value] of headers)
    if (/\b(keyword|hybrid|lexical|vector|semantic)\b/i.test(value) && !/^(content-|access-control-)/.test(name))
      return `${name}: ${value}`;
  return undefined;
}

// ── one server ────────────────────────────────────────────────────────────────

/** Sets VmHWM back to the current VmRSS (Linux ≥ 4.0); false where that is not allowed. */
function resetPeak(pid: number | undefined): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** The server's peak resident set (MiB) while `task` runs, VmHWM reset first; undefined where it cannot be. */
async function peakDuring<T>(pid: number | undefined, task: () => Promise<T>): Promise<[T, number | undefined]> {
  const reset = resetPeak(pid);
  const result = await task();
  return [result, reset ? memoryMiB(pid, 'VmHWM') : undefined];
}

interface Cpu {
  serverMs: number | undefined;
  postgresMs: number | undefined;
}

async function cpuDuring<T>(assistd: Assistd, task: () => Promise<T>): Promise<[T, Cpu]> {
  const pid = assistd.server.child.pid;
  const postgresBefore = await postgresBackendsCpuMs(assistd.database);
  const before = processCpuMs(pid);
  const result = await task();
  const after = processCpuMs(pid);
  const postgresMs = backendsCpuDelta(postgresBefore, await postgresBackendsCpuMs(assistd.database));
  return [result, { serverMs: before === undefined || after === undefined ? undefined : after - before, postgresMs }];
}

/** How the database was brought to the state autovacuum leaves it in, and how long that took. */
interface Settled {
  by: 'autovacuum' | 'VACUUM (ANALYZE)';
  ms: number;
}

/**
 * PostgreSQL, after the ingestion: the database as autovacuum leaves it a minute or so later on a server with the
 * default settings — every table past autovacuum's thresholds analysed and vacuumed (which also merges the GIN
 * index's pending list). The server analyses `chunks` itself as it ingests (src/storage/postgres/
 * chunk-statistics.ts), last when the table had doubled, so the search right after the ingestion is the one that
 * shows whether that is enough; before it did, the planner had no statistics there and walked the store's chunks
 * file by file. With autovacuum on, this waits for it (it would
 * otherwise work meanwhile, and its CPU would count as the searches'); with autovacuum off (as on test servers) or
 * not done within `timeoutMs`, it runs `VACUUM (ANALYZE)` on the throwaway database.
 */
async function settleDatabase(database: BenchDatabase, timeoutMs = 300_000): Promise<Settled> {
  const client = new pg.Client({ connectionString: database.env['ASSISTD_DATABASE_URL'] });
  await client.connect();
  try {
    const start = performance.now();
    const { rows: setting } = await client.query<{ on: boolean }>(`select current_setting('autovacuum') = 'on' as on`);
    while (setting[0]?.on && performance.now() - start < timeoutMs) {
      // Autovacuum's own triggers with the default settings: analyse past 50 + 10% changed rows, vacuum past
      // 1000 + 20% inserted rows (PostgreSQL 13 and later).
      const { rows } = await client.query<{ settled: boolean }>(`
        select bool_and(t.n_mod_since_analyze < 50 + 0.1 * t.n_live_tup
            and t.n_ins_since_vacuum < 1000 + 0.2 * t.n_live_tup)
          and not exists (
            select 1 from pg_stat_activity a
            where a.datname = current_database() and a.backend_type = 'autovacuum worker'
          ) as settled
        from pg_stat_user_tables t`);
      if (rows[0]?.settled) return { by: 'autovacuum', ms: performance.now() - start };
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const vacuumStart = performance.now();
    await client.query('vacuum (analyze)');
    return { by: 'VACUUM (ANALYZE)', ms: performance.now() - vacuumStart };
  } finally {
    await client.end();
  }
}

interface ServerResult {
  kind: DatabaseKind;
  mode: SearchMode;
  recall: Recall;
  /** The header naming the search mode, if any. */
  modeHeader: string | undefined;
  /** Requests the server made to the embeddings stand-in (hybrid only): while ingesting, while searching. */
  embeddings: { ingest: number; search: number } | undefined;
  uploadMs: number;
  ingestMs: number;
  ingestCpu: Cpu;
  /** PostgreSQL: how the database was vacuumed and analysed after the ingestion; undefined on SQLite. */
  settled: Settled | undefined;
  /** PostgreSQL: the same searches right after the ingestion, before that. */
  freshSearchMs: number[] | undefined;
  chunks: number;
  searchMs: number[];
  baselineMs: number[];
  /** Search latencies by the number of words in the query (1–4). */
  byWords: Map<number, number[]>;
  emptyResults: number;
  /** Per search. */
  searchCpu: Cpu;
  /** MiB: VmRSS once started, then VmHWM during each phase. */
  memory: Record<'idle' | 'retrievalSet' | 'upload' | 'ingest' | 'search', number | undefined>;
}

async function measureServer(
  kind: DatabaseKind,
  mode: SearchMode,
  set: RetrievalSet,
  corpus: Corpus,
  env: Record<string, string>,
  standIn: EmbeddingStandIn | undefined,
): Promise<ServerResult> {
  log(`${DATABASE_NAMES[kind]}, ${mode} search: starting a server (load average ${loadAverage(' ')})`);
  // No run is made: the server needs no model backend (it warns that runs would fail).
  const assistd = await startAssistd(kind, '', { prefix: 'assistd-bench-search-', env });
  try {
    const { client } = assistd;
    const pid = assistd.server.child.pid;
    const idle = memoryMiB(pid, 'VmRSS');
    const [recall, retrievalSetPeak] = await peakDuring(pid, () => measureRecall(client, set));

    const store = await client.vectorStores.create({ name: 'scale' });
    let start = performance.now();
    const [fileIds, uploadPeak] = await peakDuring(pid, () =>
      pool(corpus.files, UPLOAD_CONCURRENCY, async (file) => {
        const uploaded = await client.files.create({ file: createReadStream(file), purpose: 'assistants' });
        return uploaded.id;
      }),
    );
    const uploadMs = performance.now() - start;
    log(`  uploaded ${corpus.files.length} files in ${(uploadMs / 1000).toFixed(1)} s; ingesting`);

    const embeddingsBeforeIngest = standIn?.requests ?? 0;
    start = performance.now();
    const [[batch, ingestPeak], ingestCpu] = await cpuDuring(assistd, () =>
      peakDuring(pid, () =>
        client.vectorStores.fileBatches.createAndPoll(store.id, {
          file_ids: fileIds,
          chunking_strategy: { type: 'static', static: CHUNKING },
        }),
      ),
    );
    const ingestMs = performance.now() - start;
    const embeddingsIngest = (standIn?.requests ?? 0) - embeddingsBeforeIngest;
    if (batch.status !== 'completed' || batch.file_counts.completed !== fileIds.length)
      throw new Error(`ingestion ended ${batch.status}: ${JSON.stringify(batch.file_counts)}`);
    log(`  ingested in ${(ingestMs / 1000).toFixed(1)} s`);
    const search = (query: string) => client.vectorStores.search(store.id, { query, max_num_results: RESULTS });
    let freshSearchMs: number[] | undefined;
    let settled: Settled | undefined;
    if (kind === 'postgres') {
      log('  searching the fresh store');
      freshSearchMs = [];
      for (const query of corpus.queries) {
        const t0 = performance.now();
        await search(query);
        freshSearchMs.push(performance.now() - t0);
      }
      freshSearchMs = freshSearchMs.slice(WARM_UP_QUERIES);
      settled = await settleDatabase(assistd.database);
      log(`  vacuumed and analysed by ${settled.by} in ${(settled.ms / 1000).toFixed(1)} s`);
    }
    log('  searching');

    const first = await search(corpus.queries[0]!).withResponse();
    const modeHeader = searchModeHeader(first.response.headers);
    for (const query of corpus.queries.slice(1, WARM_UP_QUERIES)) await search(query);

    const embeddingsBeforeSearch = standIn?.requests ?? 0;
    const timed = corpus.queries.slice(WARM_UP_QUERIES);
    let next = 0;
    let emptyResults = 0;
    const byWords = new Map<number, number[]>();
    const [[searchMs, baselineMs], searchPeak] = await peakDuring(pid, () =>
      interleaved(
        timed.length,
        async () => {
          const query = timed[next++]!;
          const t0 = performance.now();
          const page = await search(query);
          const ms = performance.now() - t0;
          if (page.data.length === 0) emptyResults++;
          const words = query.split(' ').length;
          byWords.set(words, [...(byWords.get(words) ?? []), ms]);
          return ms;
        },
        async () => {
          const t0 = performance.now();
          await client.vectorStores.retrieve(store.id);
          return performance.now() - t0;
        },
      ),
    );
    const embeddings = standIn
      ? { ingest: embeddingsIngest, search: standIn.requests - embeddingsBeforeSearch }
      : undefined;
    const [, searchCpu] = await cpuDuring(assistd, async () => {
      for (const query of timed) await search(query);
    });

    // Counted last, so that reading every chunk back warms nothing before the searches.
    const counts = await pool(fileIds, UPLOAD_CONCURRENCY, async (id) => {
      let n = 0;
      for await (const _ of client.vectorStores.files.content(id, { vector_store_id: store.id })) n++;
      return n;
    });

    const perSearch = (ms: number | undefined) => (ms === undefined ? undefined : ms / timed.length);
    return {
      kind,
      mode,
      recall,
      modeHeader,
      embeddings,
      uploadMs,
      ingestMs,
      ingestCpu,
      settled,
      freshSearchMs,
      chunks: counts.reduce((a, b) => a + b, 0),
      searchMs,
      baselineMs,
      byWords,
      emptyResults,
      searchCpu: { serverMs: perSearch(searchCpu.serverMs), postgresMs: perSearch(searchCpu.postgresMs) },
      memory: { idle, retrievalSet: retrievalSetPeak, upload: uploadPeak, ingest: ingestPeak, search: searchPeak },
    };
  } finally {
    await assistd.stop();
  }
}

// ── report ────────────────────────────────────────────────────────────────────

const sorted = (values: number[]) => [...values].sort((a, b) => a - b);
const p50 = (values: number[]) => percentile(sorted(values), 50);

/** A hybrid server that asked for no embedding while searching ran keyword search: it is not labelled hybrid. */
/**
 * A hybrid server that asked for no embedding while searching ran keyword search, whatever it says; with a real
 * endpoint, whose requests are not counted here, the server's ranking header decides.
 */
const hybridInEffect = (r: ServerResult) =>
  r.mode === 'hybrid' &&
  (r.embeddings ? r.embeddings.search > 0 : /\bhybrid\b/i.test(r.modeHeader?.split(':')[1] ?? ''));
const label = (r: ServerResult) =>
  `${DATABASE_NAMES[r.kind]}, ${r.mode === 'keyword' || hybridInEffect(r) ? r.mode : 'hybrid configured, not in effect'}`;

function report(set: RetrievalSet, corpus: Corpus, results: ServerResult[], hybridNote: string): void {
  const keywordCount = set.questions.filter((q) => q.kind === 'keyword').length;
  log('');
  log(
    `retrieval set: ${set.docs.length} documents, ${set.questions.length} questions (${keywordCount} keyword-phrased, ` +
      `${set.questions.length - keywordCount} paraphrased); top ${RESULTS} results per question`,
  );
  log('');
  log(
    table(
      ['database, search', 'recall@5', 'MRR', 'recall@5 keyword-phrased', 'recall@5 paraphrased'],
      results.map((r) => {
        const all = recallSummary(set, r.recall);
        return [
          label(r),
          all.recall.toFixed(3),
          all.mrr.toFixed(3),
          recallSummary(set, r.recall, 'keyword').recall.toFixed(3),
          recallSummary(set, r.recall, 'paraphrase').recall.toFixed(3),
        ];
      }),
    ),
  );
  log(`hybrid: ${hybridNote}`);

  const mb = corpus.bytes / 1e6;
  log('');
  log(
    `ingest: ${corpus.files.length} files, ${mb.toFixed(1)} MB, static chunking of ${CHUNKING.max_chunk_size_tokens} ` +
      `tokens without overlap; throughput from the call of fileBatches.createAndPoll to the completed batch`,
  );
  log('');
  log(
    table(
      [
        'database, search',
        'chunks',
        'upload s',
        'ingest s',
        'chunks/s',
        'MB/s',
        'server CPU s',
        'PostgreSQL CPU s',
        'then settled s',
      ],
      results.map((r) => [
        label(r),
        String(r.chunks),
        fixed(r.uploadMs / 1000, 1),
        fixed(r.ingestMs / 1000, 1),
        fixed(r.chunks / (r.ingestMs / 1000)),
        fixed(mb / (r.ingestMs / 1000), 2),
        fixed(r.ingestCpu.serverMs === undefined ? undefined : r.ingestCpu.serverMs / 1000, 1),
        r.ingestCpu.postgresMs === undefined ? '—' : fixed(r.ingestCpu.postgresMs / 1000, 1),
        r.settled ? `${fixed(r.settled.ms / 1000, 1)} (${r.settled.by})` : '—',
      ]),
    ),
  );

  log('');
  log(
    `latency: ${QUERIES} searches of 1–4 words (max_num_results ${RESULTS}), one at a time, alternating with as many ` +
      `baselines (vectorStores.retrieve of the same store), after ${WARM_UP_QUERIES} untimed searches; CPU from the ` +
      'same searches repeated back to back; PostgreSQL also right after the ingestion, before it was settled',
  );
  log('');
  const rows: string[][] = [];
  for (const r of results) {
    const search = sorted(r.searchMs);
    const baseline = p50(r.baselineMs);
    rows.push([
      `${label(r)}: search`,
      fixed(percentile(search, 50), 2),
      fixed(percentile(search, 99), 2),
      `${(percentile(search, 50) / baseline).toFixed(2)}×`,
      fixed(percentile(search, 50) - baseline, 2),
      fixed(r.searchCpu.serverMs, 2),
      r.searchCpu.postgresMs === undefined ? '—' : fixed(r.searchCpu.postgresMs, 2),
      [1, 2, 3, 4].map((n) => fixed(p50(r.byWords.get(n) ?? []), 1)).join(' / '),
    ]);
    if (r.freshSearchMs) {
      const fresh = sorted(r.freshSearchMs);
      rows.push([
        `${label(r)}: search right after ingest`,
        fixed(percentile(fresh, 50), 2),
        fixed(percentile(fresh, 99), 2),
        `${(percentile(fresh, 50) / baseline).toFixed(2)}×`,
        fixed(percentile(fresh, 50) - baseline, 2),
        '',
        '',
        '',
      ]);
    }
    rows.push([
      `${label(r)}: baseline`,
      fixed(baseline, 2),
      fixed(percentile(sorted(r.baselineMs), 99), 2),
      '1.00×',
      '',
      '',
      '',
      '',
    ]);
  }
  log(
    table(
      [
        'database, search: request',
        'p50 ms',
        'p99 ms',
        '÷ baseline p50',
        '+ ms (p50)',
        'server CPU ms/search',
        'PostgreSQL CPU ms/search',
        'p50 ms by words 1 / 2 / 3 / 4',
      ],
      rows,
    ),
  );
  for (const r of results)
    if (r.emptyResults > 0) log(`${label(r)}: ${r.emptyResults} of ${QUERIES} searches found nothing`);

  log('');
  log(
    table(
      [
        'database, search',
        'RSS idle MiB',
        'peak: retrieval set',
        'peak: uploads',
        'peak: ingest',
        'peak: searches',
        'peak RSS MiB',
      ],
      results.map((r) => {
        const m = r.memory;
        const peaks = [m.retrievalSet, m.upload, m.ingest, m.search].filter((v): v is number => v !== undefined);
        return [
          label(r),
          fixed(m.idle),
          fixed(m.retrievalSet),
          fixed(m.upload),
          fixed(m.ingest),
          fixed(m.search),
          peaks.length ? fixed(Math.max(...peaks)) : 'n/a',
        ];
      }),
    ),
  );
  for (const r of results)
    if (r.mode === 'hybrid')
      log(
        `${label(r)}: ` +
          (r.embeddings
            ? `embeddings requests to the stand-in: ${r.embeddings.ingest} while ingesting, ` +
              `${r.embeddings.search} while searching`
            : 'embeddings requests not counted (BENCH_EMBEDDINGS_* endpoint)') +
          `; search mode header: ${r.modeHeader ?? 'none'}`,
      );

  log('');
  if (!results.every((r) => r.chunks >= TARGET_CHUNKS * 0.95))
    log(`(the targets are for ${TARGET_CHUNKS} chunks; this run had fewer, so the verdicts are only indicative)`);
  for (const mode of ['keyword', 'hybrid'] as const) {
    const measured = results.filter((r) => r.mode === mode && (mode === 'keyword' || hybridInEffect(r)));
    const sqlite = measured.find((r) => r.kind === 'sqlite');
    const postgres = measured.find((r) => r.kind === 'postgres');
    const target = TARGET_P50_MS[mode];
    if (!sqlite && !postgres) {
      log(`${mode} search: ${hybridNote}`);
      continue;
    }
    const parts: string[] = [];
    if (sqlite)
      parts.push(
        `SQLite p50 ${p50(sqlite.searchMs).toFixed(2)} ms at ${sqlite.chunks} chunks (target ≤ ${target}) — ` +
          verdict(p50(sqlite.searchMs) <= target),
      );
    if (postgres) {
      const ms = p50(postgres.searchMs);
      const limit = POSTGRES_FACTOR * target;
      const ratio = sqlite ? ms / p50(sqlite.searchMs) : undefined;
      parts.push(
        `PostgreSQL p50 ${ms.toFixed(2)} ms at ${postgres.chunks} chunks (target ≤ ${limit}, ${POSTGRES_FACTOR}× ` +
          `SQLite's target) — ${verdict(ms <= limit)}` +
          (ratio === undefined
            ? ''
            : `; ${ratio.toFixed(2)}× SQLite's measured p50 (≤ ${POSTGRES_FACTOR}× — ${verdict(ratio <= POSTGRES_FACTOR)})`),
      );
    }
    log(`${mode} search: ${parts.join('; ')}`);
  }
}

// ── main ──────────────────────────────────────────────────────────────────────

/** BENCH_DATABASES if set (PostgreSQL must then be reachable); otherwise SQLite, and PostgreSQL if reachable. */
async function chooseDatabases(): Promise<{ kinds: DatabaseKind[]; postgres: string }> {
  const explicit = (process.env.BENCH_DATABASES?.trim() ?? '') !== '';
  const kinds: DatabaseKind[] = [];
  let postgres = 'not measured (BENCH_DATABASES)';
  for (const kind of databaseKinds()) {
    if (kind === 'sqlite') kinds.push(kind);
    else
      try {
        postgres = `PostgreSQL ${await postgresVersion()} (throwaway database on ${describeAdminUrl()})`;
        kinds.push(kind);
      } catch (error) {
        if (explicit) throw error;
        postgres = `skipped: ${error instanceof Error ? error.message : String(error)}`;
      }
  }
  return { kinds, postgres };
}

async function main(): Promise<void> {
  log(`${machine()}; load average ${loadAverage(' ')} (other processes share these cores)`);
  const { kinds, postgres } = await chooseDatabases();
  const settings = HYBRID_WANTED ? await embeddingsSettings() : [];
  const endpoint = settings.length > 0 ? await embeddingsEndpoint() : undefined;
  const hybridNote = !HYBRID_WANTED
    ? 'not measured (BENCH_HYBRID=0)'
    : !endpoint
      ? 'not available (no embeddings setting)'
      : `a second server per database, with ${Object.keys(hybridEnv(settings, endpoint)).join(', ')} set for ` +
        (endpoint.standIn
          ? 'a stand-in, not a language model: a hashing-trick embedding of words and their character 3–5-grams, ' +
            `${EMBEDDING_DIMS} dimensions, served by this process on 127.0.0.1`
          : `${endpoint.model} at ${endpoint.url} (BENCH_EMBEDDINGS_*)`);
  log(`node ${process.version}; PostgreSQL: ${postgres}`);
  log(`hybrid: ${hybridNote}`);

  const set = loadRetrievalSet();
  let start = performance.now();
  const corpus = writeCorpus();
  log(
    `corpus: ${corpus.files.length} files, ${(corpus.bytes / 1e6).toFixed(1)} MB, about ${corpus.expectedChunks} ` +
      `chunks, written to ${corpus.dir} in ${((performance.now() - start) / 1000).toFixed(1)} s`,
  );
  log('');

  const results: ServerResult[] = [];
  start = performance.now();
  for (const kind of kinds) {
    results.push(await measureServer(kind, 'keyword', set, corpus, {}, undefined));
    if (endpoint)
      results.push(await measureServer(kind, 'hybrid', set, corpus, hybridEnv(settings, endpoint), endpoint.standIn));
  }
  report(set, corpus, results, hybridNote);
  log('');
  log(`(servers measured in ${((performance.now() - start) / 1000).toFixed(0)} s)`);
}

await runBench(main);
