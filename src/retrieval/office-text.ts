import path from 'node:path';
import type JSZip from 'jszip';
import { BlockTextBuilder, LINE, PARAGRAPH } from './block-text.ts';
import { describeError } from './describe-error.ts';
import { scanMarkup } from './markup-scanner.ts';
import { decodeText } from './text-decoding.ts';

/**
 * Text of Office files: DOCX through mammoth (`extractRawText`: paragraphs separated by blank lines), PPTX by reading
 * the slides' text runs ourselves (mammoth reads Word only), legacy binary Word (.doc) through word-extractor. JSZip
 * is the project's zip library: mammoth depends on it already.
 */
export type OfficeTextResult =
  | { ok: true; text: string }
  | { ok: false; reason: 'unreadable' | 'too_large' | 'too_much_text'; detail: string };

/**
 * The Office libraries, loaded on the first Office file: together a third of a second of CPU, which an indexing
 * thread (vector-stores/index-thread.ts) that never sees one would otherwise spend as it starts.
 */
async function loadOfficeLibraries() {
  const [cfb, jszip, mammoth, wordExtractor] = await Promise.all([
    import('cfb'),
    import('jszip'),
    import('mammoth'),
    import('word-extractor'),
  ]);
  return { CFB: cfb.default, JSZip: jszip.default, mammoth: mammoth.default, WordExtractor: wordExtractor.default };
}
type OfficeLibraries = Awaited<ReturnType<typeof loadOfficeLibraries>>;
let loaded: Promise<OfficeLibraries> | undefined;
const officeLibraries = () => (loaded ??= loadOfficeLibraries());

/**
 * At most this many bytes of XML are decompressed from one file. A DOCX or PPTX is a zip, and a zip's XML can
 * inflate a thousandfold (a zip bomb), so parts are inflated as streams and counted, never trusted by the sizes
 * the zip declares. The figure follows from mammoth, which builds a DOM of the document: measured on Node 20, 47
 * bytes of resident memory per byte of document XML, and 7 s for 27 MB of it, so 32 MiB of XML costs ≈ 1.6 GB and
 * ≈ 9 s at most. A plainly formatted document with the most text we accept (MAX_TEXT_CHARS, 8 million characters) is
 * ≈ 13 MB of XML, so the text bound is usually met first; heavily formatted documents can meet this one first.
 */
export const OFFICE_XML_LIMIT_BYTES = 32 * 1024 * 1024;

/** A file with more than `maxChars` characters of text. */
function tooMuchText(maxChars: number): OfficeTextResult {
  return { ok: false, reason: 'too_much_text', detail: `more than ${maxChars} characters` };
}

class PartsTooLarge extends Error {}

/** A running count of the XML inflated from one file, against OFFICE_XML_LIMIT_BYTES. */
interface Budget {
  remaining: number;
}

/**
 * At most this many entries in an Office zip. JSZip builds an object for every entry of the central directory as it
 * opens the zip, before a part is read: 1,000,000 empty entries (a 94 MB file) took 39 s and 2.7 GB. At this bound
 * it takes ≈ 1 s and ≈ 50 MB, small beside what OFFICE_XML_LIMIT_BYTES allows. Real documents are far below it: a
 * DOCX has tens of parts, a few hundred with many images; a PPTX two to five per slide (the slide, its
 * relationships, its notes and theirs, its media), so thousands of slides fit.
 */
export const OFFICE_ZIP_ENTRY_LIMIT = 20_000;

/** The signature of a zip's central directory header, one per entry JSZip builds. */
const CENTRAL_FILE_HEADER = Buffer.from([0x50, 0x4b, 0x01, 0x02]);

/**
 * Whether the zip may have more than OFFICE_ZIP_ENTRY_LIMIT entries, known before JSZip reads it. The count in the
 * end of central directory record is no bound: JSZip reads central directory headers for as long as their signature
 * follows, whatever the record says (zipEntries.js, readCentralDir). Every entry it builds begins at a signature of
 * its own, so the signatures in the file are an upper bound that no record can understate; a scan takes ≈ 0.4 s per
 * GB, and random bytes hold one signature per 4 GB on average, too few to matter.
 */
function mayHaveTooManyEntries(bytes: Buffer): boolean {
  let count = 0;
  for (let at = bytes.indexOf(CENTRAL_FILE_HEADER); at !== -1; at = bytes.indexOf(CENTRAL_FILE_HEADER, at + 4)) {
    if (++count > OFFICE_ZIP_ENTRY_LIMIT) return true;
  }
  return false;
}

export async function docxToText(bytes: Buffer, maxChars: number): Promise<OfficeTextResult> {
  const { mammoth } = await officeLibraries();
  const zip = await openZip(bytes);
  if (!zip.ok) return zip;
  const budget: Budget = { remaining: OFFICE_XML_LIMIT_BYTES };
  let text: string;
  try {
    // mammoth inflates each part it reads in full; reading them through countedParts, as streams against the
    // budget, stops a bomb before mammoth holds or parses it.
    const input = { file: countedParts(zip.zip, budget) } as unknown as Parameters<typeof mammoth.extractRawText>[0];
    text = (await mammoth.extractRawText(input)).value;
  } catch (error) {
    return partError(error);
  }
  if (text.length > maxChars) return tooMuchText(maxChars);
  return { ok: true, text };
}

/**
 * The zip as mammoth reads a DOCX: its unzip.js takes, as the `file` input, the object its zipfile.js makes of a
 * buffer (`exists` and `read`), and this one counts every byte mammoth inflates against the budget. So the parts
 * counted are exactly the parts read, whatever their names: mammoth takes the main document from whatever part
 * `_rels/.rels` names (a `word/document.bin` is read as XML), and its styles, numbering, notes and comments from
 * whatever parts the main document's relationships name. Counting parts by name (`.xml`, `.rels`) missed such a part:
 * a 306 KB DOCX whose main part inflated to 100 MB ran the process out of memory. Counting every entry instead
 * would refuse ordinary documents with more than 32 MiB of pictures, which text extraction never inflates: mammoth
 * reads an image only when converting to HTML (body-reader.js gives the document a `readImage` function, which
 * extractRawText never calls).
 */
function countedParts(zip: JSZip, budget: Budget) {
  return {
    exists: (name: string) => zip.file(name) !== null,
    async read(name: string, encoding?: string): Promise<Uint8Array | string> {
      const file = zip.file(name);
      if (file === null) throw new Error(`it has no part ${name}`);
      const bytes = await readPart(file, budget);
      if (encoding === 'base64') return bytes.toString('base64');
      if (encoding) return new TextDecoder(encoding).decode(bytes);
      return bytes;
    },
  };
}

/**
 * The text of a Word 97–2003 document (.doc), which upstream's file_search read: its body, then its text boxes,
 * footnotes and endnotes (headers and footers repeat on every page, and are left out as mammoth leaves them out of a
 * DOCX). word-extractor does not get the file as uploaded: SheetJS's cfb reads its Compound File, and word-extractor
 * gets a new one of the two streams it reads, written by cfb. Its own reader follows the file's sector chains, and a
 * chain that loops grew an array until V8 aborted the whole process (a fuzz of damaged documents found it). The piece
 * table is measured first (wordTextChars): its pieces may name the same bytes many times over, a bomb as a zip's
 * parts can be, and word-extractor would build every copy.
 */
export async function docToText(bytes: Buffer, maxChars: number): Promise<OfficeTextResult> {
  const { CFB, WordExtractor } = await officeLibraries();
  const streams = wordStreams(CFB, bytes);
  if (typeof streams === 'string') return { ok: false, reason: 'unreadable', detail: streams };
  const claimed = wordTextChars(streams);
  if (typeof claimed === 'string') return { ok: false, reason: 'unreadable', detail: claimed };
  if (claimed > maxChars) return tooMuchText(maxChars);
  let parts: string[];
  try {
    const rewritten = CFB.utils.cfb_new();
    CFB.utils.cfb_add(rewritten, '/WordDocument', streams.fib);
    CFB.utils.cfb_add(rewritten, `/${streams.tableName}`, streams.table);
    const document = await new WordExtractor().extract(Buffer.from(CFB.write(rewritten, { type: 'buffer' })));
    const options = { filterUnicode: false };
    parts = [
      document.getBody(options),
      document.getTextboxes({ ...options, includeHeadersAndFooters: false }),
      document.getFootnotes(options),
      document.getEndnotes(options),
    ];
  } catch (error) {
    return { ok: false, reason: 'unreadable', detail: describeError(error) };
  }
  const text = parts
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .join('\n\n');
  if (text.length > maxChars) return tooMuchText(maxChars);
  return { ok: true, text };
}

/** The signature of a Compound File, the container of Word 97–2003 documents. */
const COMPOUND_FILE = Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]);

interface WordStreams {
  /** The WordDocument stream, which begins with the FIB. */
  fib: Buffer;
  /** The table stream the FIB names, and its name. */
  table: Buffer;
  tableName: '0Table' | '1Table';
}

/** A Word document's two streams that hold its text, or why they cannot be read ([MS-DOC] 2.5.1: the FIB's flags). */
function wordStreams(CFB: OfficeLibraries['CFB'], bytes: Buffer): WordStreams | string {
  if (!bytes.subarray(0, COMPOUND_FILE.length).equals(COMPOUND_FILE))
    return 'it is not a Word 97–2003 document (no Compound File header)';
  try {
    const container = CFB.read(bytes, { type: 'buffer' });
    const stream = (name: string) => {
      const content = CFB.find(container, name)?.content;
      return content ? Buffer.from(content as Uint8Array) : undefined;
    };
    const fib = stream('WordDocument');
    if (!fib) return 'it has no WordDocument stream (not a Word document)';
    if (fib.length < 0x01aa || fib.readUInt16LE(0) !== 0xa5ec)
      return 'its WordDocument stream is not a Word 97–2003 document';
    const tableName = (fib.readUInt16LE(0x0a) & 0x0200) !== 0 ? '1Table' : '0Table';
    const table = stream(tableName);
    if (!table) return 'its table stream is missing';
    return { fib, table, tableName };
  } catch (error) {
    return `its structure is damaged (${describeError(error)})`;
  }
}

/**
 * The characters a Word document's pieces hold (the CLX's piece table, where the FIB's fcClx says), or why it cannot
 * be read: [MS-DOC] 2.5.1 (fcClx at 0x01A2), 2.9.38 (Clx: Prc entries, then a Pcdt).
 */
function wordTextChars({ fib, table }: WordStreams): number | string {
  try {
    let at = fib.readUInt32LE(0x01a2);
    while (table.readUInt8(at) === 1) at += 3 + table.readUInt16LE(at + 1); // a Prc: formatting, skipped
    if (table.readUInt8(at) !== 2) return 'its piece table is missing';
    const pieces = (table.readUInt32LE(at + 1) - 4) / 12;
    let chars = 0;
    for (let i = 0; i < pieces; i++) {
      const start = table.readUInt32LE(at + 5 + i * 4);
      chars += Math.max(0, table.readUInt32LE(at + 5 + (i + 1) * 4) - start);
    }
    return chars;
  } catch (error) {
    return `its piece table is damaged (${describeError(error)})`;
  }
}

/**
 * The text runs (`<a:t>`) of every slide in the presentation's order, a slide's paragraphs (`<a:p>`) one per line,
 * slides separated by a blank line. The order is the presentation's slide list (`sldIdLst` in ppt/presentation.xml,
 * through its relationships), which can differ from the file names' numbers once slides were moved; without a
 * readable list, slides go by the number in `ppt/slides/slideN.xml`.
 */
export async function pptxToText(bytes: Buffer, maxChars: number): Promise<OfficeTextResult> {
  const opened = await openZip(bytes);
  if (!opened.ok) return opened;
  const zip = opened.zip;
  const budget: Budget = { remaining: OFFICE_XML_LIMIT_BYTES };
  const out = new BlockTextBuilder();
  try {
    const slides = await slideOrder(zip, budget);
    if (slides.length === 0) return { ok: false, reason: 'unreadable', detail: 'it has no slides' };
    for (const slide of slides) {
      const xml = await readXml(slide, budget);
      out.break(PARAGRAPH);
      let inText = 0;
      await scanMarkup(
        xml,
        {
          open(name) {
            const local = localName(name);
            if (local === 't') inText++;
            else if (local === 'br') out.break(LINE);
          },
          close(name) {
            const local = localName(name);
            if (local === 't' && inText > 0) inText--;
            else if (local === 'p') out.break(LINE);
          },
          text(text) {
            if (inText > 0) out.preformatted(text);
          },
        },
        { mode: 'xml', stop: () => out.length > maxChars },
      );
      if (out.length > maxChars) return tooMuchText(maxChars);
    }
  } catch (error) {
    return partError(error);
  }
  return { ok: true, text: out.toString() };
}

async function openZip(
  bytes: Buffer,
): Promise<{ ok: true; zip: JSZip } | { ok: false; reason: 'unreadable' | 'too_large'; detail: string }> {
  const { JSZip } = await officeLibraries();
  if (mayHaveTooManyEntries(bytes))
    return {
      ok: false,
      reason: 'too_large',
      detail: `it has more than ${OFFICE_ZIP_ENTRY_LIMIT.toLocaleString('en-US')} entries`,
    };
  try {
    return { ok: true, zip: await JSZip.loadAsync(bytes) };
  } catch (error) {
    return { ok: false, reason: 'unreadable', detail: `it is not a valid zip archive (${describeError(error)})` };
  }
}

async function slideOrder(zip: JSZip, budget: Budget): Promise<JSZip.JSZipObject[]> {
  const listed = await listedSlides(zip, budget);
  if (listed.length > 0) return listed;
  const numbered: Array<{ number: number; file: JSZip.JSZipObject }> = [];
  zip.forEach((relativePath, file) => {
    const match = /^ppt\/slides\/slide(\d{1,9})\.xml$/.exec(relativePath);
    if (match && !file.dir) numbered.push({ number: Number(match[1]), file });
  });
  return numbered.sort((a, b) => a.number - b.number).map((entry) => entry.file);
}

/** The slides of `sldIdLst`, in its order, resolved through ppt/_rels/presentation.xml.rels; [] without a list. */
async function listedSlides(zip: JSZip, budget: Budget): Promise<JSZip.JSZipObject[]> {
  const presentation = zip.file('ppt/presentation.xml');
  const relationships = zip.file('ppt/_rels/presentation.xml.rels');
  if (presentation === null || relationships === null) return [];
  const targets = new Map<string, string>();
  await scanMarkup(
    await readXml(relationships, budget),
    {
      open(name, attributes) {
        const id = attributes.get('Id');
        const target = attributes.get('Target');
        if (localName(name) === 'Relationship' && id !== undefined && target !== undefined) targets.set(id, target);
      },
    },
    { mode: 'xml', collectAttributes: true },
  );
  const slides: JSZip.JSZipObject[] = [];
  await scanMarkup(
    await readXml(presentation, budget),
    {
      open(name, attributes) {
        if (localName(name) !== 'sldId') return;
        // The relationship id is the namespaced `id` attribute (`r:id`); the plain `id` is the slide's number.
        for (const [attribute, value] of attributes) {
          if (!attribute.endsWith(':id')) continue;
          const target = targets.get(value);
          const file = target === undefined ? null : zip.file(resolveTarget(target));
          if (file) slides.push(file);
        }
      },
    },
    { mode: 'xml', collectAttributes: true },
  );
  return slides;
}

/** A relationship target of ppt/presentation.xml: relative to ppt/, or absolute within the package. */
function resolveTarget(target: string): string {
  const resolved = target.startsWith('/') ? target.slice(1) : path.posix.join('ppt', target);
  return path.posix.normalize(resolved);
}

function localName(name: string): string {
  const colon = name.indexOf(':');
  return colon === -1 ? name : name.slice(colon + 1);
}

async function readXml(file: JSZip.JSZipObject, budget: Budget): Promise<string> {
  const decoded = decodeText(await readPart(file, budget));
  if (!decoded.ok) throw new Error(`${file.name} ${decoded.reason}`);
  return decoded.text;
}

/**
 * Inflates one part as a stream, counting its bytes against the budget; stops (and throws) as soon as the budget is
 * spent.
 */
function readPart(file: JSZip.JSZipObject, budget: Budget): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const stream = file.nodeStream('nodebuffer');
    const chunks: Buffer[] = [];
    let done = false;
    stream.on('data', (chunk: Buffer) => {
      if (done) return;
      budget.remaining -= chunk.byteLength;
      if (budget.remaining < 0) {
        // Paused, the stream stops pulling from JSZip once its buffer is full: nothing more is inflated.
        done = true;
        stream.pause();
        stream.removeAllListeners('data');
        reject(new PartsTooLarge());
        return;
      }
      chunks.push(chunk);
    });
    stream.on('error', (error: Error) => {
      if (done) return;
      done = true;
      reject(error);
    });
    stream.on('end', () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks));
    });
  });
}

function partError(error: unknown): OfficeTextResult {
  if (error instanceof PartsTooLarge) {
    return {
      ok: false,
      reason: 'too_large',
      detail: `its XML inflates to more than ${OFFICE_XML_LIMIT_BYTES / (1024 * 1024)} MiB`,
    };
  }
  return { ok: false, reason: 'unreadable', detail: describeError(error) };
}
