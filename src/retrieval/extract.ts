import path from 'node:path';
import { describeError } from './describe-error.ts';
import { declaredCharset, htmlToText } from './html-text.ts';
import { docToText, docxToText, type OfficeTextResult, pptxToText } from './office-text.ts';
import { pdfToText } from './pdf-text.ts';
import { decodeText, normalizeLineEnds, readsAsText, replaceNul } from './text-decoding.ts';

/**
 * The first stage of file_search ingestion: a file's bytes to its text. Failures are data, with the codes a
 * vector-store file's `last_error` carries upstream: `unsupported_file` for a type file_search does not read,
 * `invalid_file` for a file of a supported type that cannot be read (corrupt, not UTF-8, no text layer, too big).
 */
export type ExtractResult =
  | { ok: true; text: string }
  | { ok: false; code: 'unsupported_file' | 'invalid_file'; message: string };

export interface ExtractInput {
  bytes: Buffer;
  filename: string;
  /** The type `detectMimeType` (src/files/file-types.ts) found: from the bytes' signature, else from the name. */
  mimeType: string | null;
}

/**
 * The most text one file may have: 8,000,000 characters, about 2,000,000 o200k tokens (English prose averages four
 * characters a token; code and non-Latin scripts have fewer, so they reach the bound with more tokens). A character
 * bound, because it is checked in constant time, before the text is tokenised — tokenising is the expensive part —
 * and while a document is still being read, so a huge file stops early. 2,000,000 tokens of prose chunk in under a
 * second (measured on Node 20) and make ≈ 5,000 chunks with the default 800/400 strategy.
 */
export const MAX_TEXT_CHARS = 8_000_000;

/**
 * The largest HTML file read: scanning costs time for markup that holds no text, about 10 ms a megabyte (measured),
 * so 64 MiB is under a second. Real pages, even single-page specifications, are a fraction of it.
 */
export const MAX_HTML_BYTES = 64 * 1024 * 1024;

/** How a file is read. */
export type DocumentFormat = 'text' | 'html' | 'pdf' | 'doc' | 'docx' | 'pptx';

const DOCX_MIME = 'application/vnd.openxmlformats-officedocument.wordprocessingml.document';
const PPTX_MIME = 'application/vnd.openxmlformats-officedocument.presentationml.presentation';

/**
 * file_search's formats by extension: upstream's list (.c .cpp .cs .css .doc .docx .go .html .java .js .json .md
 * .pdf .php .pptx .py .rb .sh .tex .ts .txt) and the other text formats `detectMimeType` names (.csv .h .htm .jsonl
 * .markdown .mjs .tsv .xml .yaml .yml). The other legacy binary Office files are answered with their own message.
 */
const FORMAT_BY_EXTENSION: Readonly<Record<string, DocumentFormat>> = {
  '.c': 'text',
  '.cpp': 'text',
  '.cs': 'text',
  '.css': 'text',
  '.csv': 'text',
  '.doc': 'doc',
  '.docx': 'docx',
  '.go': 'text',
  '.h': 'text',
  '.htm': 'html',
  '.html': 'html',
  '.java': 'text',
  '.js': 'text',
  '.json': 'text',
  '.jsonl': 'text',
  '.markdown': 'text',
  '.md': 'text',
  '.mjs': 'text',
  '.pdf': 'pdf',
  '.php': 'text',
  '.pptx': 'pptx',
  '.py': 'text',
  '.rb': 'text',
  '.sh': 'text',
  '.tex': 'text',
  '.ts': 'text',
  '.tsv': 'text',
  '.txt': 'text',
  '.xml': 'text',
  '.yaml': 'text',
  '.yml': 'text',
};

/** The media types `detectMimeType` answers for the formats above (and a few common aliases of them). */
const FORMAT_BY_MIME: Readonly<Record<string, DocumentFormat>> = {
  'application/pdf': 'pdf',
  'application/msword': 'doc',
  [DOCX_MIME]: 'docx',
  [PPTX_MIME]: 'pptx',
  'text/html': 'html',
  'application/xhtml+xml': 'html',
  'text/plain': 'text',
  'text/markdown': 'text',
  'text/x-markdown': 'text',
  'application/json': 'text',
  'application/jsonl': 'text',
  'application/x-ndjson': 'text',
  'text/csv': 'text',
  'text/tab-separated-values': 'text',
  'text/css': 'text',
  'application/xml': 'text',
  'text/xml': 'text',
  'text/javascript': 'text',
  'application/javascript': 'text',
  'application/typescript': 'text',
  'text/x-typescript': 'text',
  'text/x-python': 'text',
  'text/x-java': 'text',
  'text/x-c': 'text',
  'text/x-c++': 'text',
  'text/x-csharp': 'text',
  'text/x-golang': 'text',
  'text/x-ruby': 'text',
  'text/x-php': 'text',
  'application/x-sh': 'text',
  'text/x-sh': 'text',
  'text/x-tex': 'text',
  'application/x-tex': 'text',
  'application/yaml': 'text',
  'text/yaml': 'text',
};

/** Upstream's wording lists the extensions; so do we. */
export const SUPPORTED_EXTENSIONS: readonly string[] = Object.keys(FORMAT_BY_EXTENSION).sort();

/** The Compound File container of legacy Office files (.doc, .xls, .ppt), as file-type reports it. */
const LEGACY_OFFICE_MIME = 'application/x-cfb';
/** Legacy binary Office files not read (upstream read .doc only, which is). */
const LEGACY_OFFICE_EXTENSIONS = new Set(['.dot', '.xls', '.ppt', '.pps']);

const FORMAT_NAMES: Readonly<Record<DocumentFormat, string>> = {
  text: 'text',
  html: 'HTML',
  pdf: 'PDF',
  doc: 'DOC',
  docx: 'DOCX',
  pptx: 'PPTX',
};

export type FormatDecision = { ok: true; format: DocumentFormat } | { ok: false; message: string };

/**
 * The format to read a file as: the detected type first (the bytes' signature beats the name, so a PNG named
 * notes.txt is an image), the extension second — when nothing was detected, or to refine a detection: a zip named
 * .docx or .pptx is read as one, XML named .html as HTML, an unlisted text type (text/vtt) named .txt as text.
 * `bytes` (the file, or its first bytes) only serves to see through misdetections, explained below.
 */
export function decideFormat(mimeType: string | null, filename: string, bytes?: Uint8Array): FormatDecision {
  const extension = path.extname(filename).toLowerCase();
  const byExtension = FORMAT_BY_EXTENSION[extension];
  const mime = mimeType?.split(';')[0]?.trim().toLowerCase() || null;
  // A type we do not read, for a file named as text whose bytes read as text: file-type's match of a few leading
  // characters ("BM25 is…" as a BMP, UTF-16LE's byte order mark as MPEG audio's frame sync). `detectMimeType` gives
  // such a file its name's type; this reads those typed otherwise (stored before it did, or by another caller).
  if (
    mime !== null &&
    FORMAT_BY_MIME[mime] === undefined &&
    (byExtension === 'text' || byExtension === 'html') &&
    bytes !== undefined &&
    readsAsText(bytes)
  ) {
    return { ok: true, format: byExtension };
  }
  if (mime === LEGACY_OFFICE_MIME || (mime === null && LEGACY_OFFICE_EXTENSIONS.has(extension))) {
    // A Compound File is a Word document by its name: .xls and .ppt are Compound Files as well.
    if (byExtension === 'doc') return { ok: true, format: 'doc' };
    return { ok: false, message: legacyOfficeMessage(extension) };
  }
  if (mime !== null) {
    const byMime = FORMAT_BY_MIME[mime];
    if (byMime === 'text' && byExtension === 'html') return { ok: true, format: 'html' };
    if (byMime !== undefined) return { ok: true, format: byMime };
    if (mime === 'application/zip' && (byExtension === 'docx' || byExtension === 'pptx')) {
      return { ok: true, format: byExtension };
    }
    if (mime.startsWith('text/') && (byExtension === 'text' || byExtension === 'html')) {
      return { ok: true, format: byExtension };
    }
    return { ok: false, message: unsupportedMessage(mime) };
  }
  if (byExtension !== undefined) return { ok: true, format: byExtension };
  return { ok: false, message: unsupportedMessage(extension === '' ? null : extension) };
}

/**
 * Why file_search cannot read a file, known from its detected type and its name alone (for a check before it is
 * indexed); undefined when it may read it. A file named as text but typed otherwise is told apart by its bytes
 * (decideFormat), when it is indexed: it passes here.
 */
export function unreadableType(mimeType: string | null, filename: string): string | undefined {
  const decision = decideFormat(mimeType, filename);
  if (decision.ok) return undefined;
  const byExtension = FORMAT_BY_EXTENSION[path.extname(filename).toLowerCase()];
  return byExtension === 'text' || byExtension === 'html' ? undefined : decision.message;
}

function unsupportedMessage(type: string | null): string {
  const what = type === null ? 'of this file could not be determined and' : type;
  return `The file type ${what} is not supported for file_search. Supported types: ${SUPPORTED_EXTENSIONS.join(', ')}.`;
}

function legacyOfficeMessage(extension: string): string {
  const kind = LEGACY_OFFICE_EXTENSIONS.has(extension) ? `(${extension}) ` : '';
  return (
    `Legacy binary Microsoft Office files ${kind}are not supported for file_search; ` +
    'save the document as .docx, .pptx or .pdf and upload it again.'
  );
}

/**
 * A file's text, or why it has none. Never throws for a bad file: a library failing on malformed input is the
 * input's fault, and becomes `invalid_file`.
 */
export async function extractText(input: ExtractInput): Promise<ExtractResult> {
  const decision = decideFormat(input.mimeType, input.filename, input.bytes);
  if (!decision.ok) return { ok: false, code: 'unsupported_file', message: decision.message };
  const format = decision.format;
  let result: ExtractResult;
  try {
    result = await extractFormat(format, input.bytes);
  } catch (error) {
    result = invalid(`The file could not be read as ${FORMAT_NAMES[format]}: ${describeError(error)}`);
  }
  if (!result.ok) return result;
  // Every format's text passes here: no U+0000 reaches the store, and no lone surrogate (a `&#xD800;`), which the two
  // databases would keep differently (app.ts, wellFormed).
  const text = replaceNul(normalizeLineEnds(result.text)).toWellFormed();
  if (text.length > MAX_TEXT_CHARS) return tooMuchText();
  return { ok: true, text };
}

async function extractFormat(format: DocumentFormat, bytes: Buffer): Promise<ExtractResult> {
  switch (format) {
    case 'text': {
      // UTF-8 needs at most 3 bytes for each UTF-16 unit of the decoded string (4 for a surrogate pair's two).
      if (bytes.byteLength > 3 * MAX_TEXT_CHARS) return tooMuchText();
      const decoded = decodeText(bytes);
      return decoded.ok ? decoded : invalid(`The file ${decoded.reason}.`);
    }
    case 'html': {
      if (bytes.byteLength > MAX_HTML_BYTES) {
        return invalid(`The HTML file is too large to index (more than ${MAX_HTML_BYTES / (1024 * 1024)} MiB).`);
      }
      const html = decodeHtml(bytes);
      if (html === null) return invalid('The file is not valid UTF-8 text, and declares no character set we can read.');
      const text = await htmlToText(html, MAX_TEXT_CHARS);
      return text.length > MAX_TEXT_CHARS ? tooMuchText() : { ok: true, text };
    }
    case 'pdf': {
      const pdf = await pdfToText(bytes, MAX_TEXT_CHARS);
      if (pdf.ok) {
        if (pdf.text.trim().length === 0) {
          return invalid(
            'The PDF has no extractable text: it has no text layer (a scanned document?), and OCR is not supported.',
          );
        }
        return pdf;
      }
      if (pdf.reason === 'too_much_text') return tooMuchText();
      if (pdf.reason === 'encrypted') return invalid('The PDF is encrypted with a password and cannot be read.');
      return invalid(`The file is not a valid PDF: ${pdf.detail}`);
    }
    case 'doc':
      return officeResult('Word 97–2003 document', await docToText(bytes, MAX_TEXT_CHARS));
    case 'docx':
      return officeResult('DOCX document', await docxToText(bytes, MAX_TEXT_CHARS));
    case 'pptx':
      return officeResult('PPTX presentation', await pptxToText(bytes, MAX_TEXT_CHARS));
  }
}

/** UTF-8 (or UTF-16 with a byte order mark), else the character set the page declares, if the platform knows it. */
function decodeHtml(bytes: Buffer): string | null {
  const decoded = decodeText(bytes);
  if (decoded.ok) return decoded.text;
  const charset = declaredCharset(bytes);
  if (charset === null) return null;
  try {
    const text = new TextDecoder(charset, { fatal: true }).decode(bytes);
    return text.includes('\0') ? null : text;
  } catch {
    return null; // an unknown label, or bytes that are not in that character set either
  }
}

function officeResult(kind: string, result: OfficeTextResult): ExtractResult {
  if (result.ok) return result;
  if (result.reason === 'too_much_text') return tooMuchText();
  if (result.reason === 'too_large') return invalid(`The ${kind} is too large to index: ${result.detail}.`);
  return invalid(`The file is not a valid ${kind}: ${result.detail}`);
}

function tooMuchText(): ExtractResult {
  return invalid(
    `The file has too much text to index: more than ${MAX_TEXT_CHARS.toLocaleString('en-US')} characters ` +
      '(about 2,000,000 tokens).',
  );
}

function invalid(message: string): ExtractResult {
  return { ok: false, code: 'invalid_file', message };
}
