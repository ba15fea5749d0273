import CFB from 'cfb';
import JSZip from 'jszip';

/**
 * Builders of the document fixtures that file_search ingests: PDF, DOC, DOCX, PPTX and HTML, made in memory by each test
 * (no binary fixture is checked in). Each builds the smallest file that real readers accept and that file-type
 * detects as its format from the first bytes, so the extraction tests and the API tests go through type detection
 * exactly as an upload does.
 */

// ── PDF ──────────────────────────────────────────────────────────────────────

/**
 * A PDF with one page per entry of `pages`, each line of a page drawn as its own text line in Helvetica (a standard
 * font, so no font file is embedded). A page with no lines draws only a filled rectangle: it has no text layer, like
 * a scanned page. Text is Latin-1 (WinAnsiEncoding); other characters throw. The cross-reference table is computed,
 * so the file is valid, not merely repairable.
 */
export function pdfDocument(pages: ReadonlyArray<readonly string[]>): Buffer {
  const objects: string[] = [];
  const add = (body: string): number => objects.push(body);
  const catalog = add('');
  const pageTree = add('');
  const font = add('<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>');
  const kids: number[] = [];
  for (const lines of pages) {
    const content =
      lines.length === 0
        ? '0.5 g 72 600 200 100 re f'
        : ['BT', '/F1 12 Tf', '14 TL', '72 720 Td', ...lines.map((line) => `(${pdfString(line)}) Tj T*`), 'ET'].join(
            '\n',
          );
    const stream = add(`<< /Length ${Buffer.byteLength(content, 'latin1')} >>\nstream\n${content}\nendstream`);
    kids.push(
      add(
        `<< /Type /Page /Parent ${pageTree} 0 R /MediaBox [0 0 612 792] ` +
          `/Resources << /Font << /F1 ${font} 0 R >> >> /Contents ${stream} 0 R >>`,
      ),
    );
  }
  objects[catalog - 1] = `<< /Type /Catalog /Pages ${pageTree} 0 R >>`;
  objects[pageTree - 1] =
    `<< /Type /Pages /Kids [${kids.map((kid) => `${kid} 0 R`).join(' ')}] /Count ${kids.length} >>`;

  let body = '%PDF-1.4\n%\xe2\xe3\xcf\xd3\n';
  const offsets: number[] = [];
  objects.forEach((object, i) => {
    offsets.push(Buffer.byteLength(body, 'latin1'));
    body += `${i + 1} 0 obj\n${object}\nendobj\n`;
  });
  const xref = Buffer.byteLength(body, 'latin1');
  body += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const offset of offsets) body += `${String(offset).padStart(10, '0')} 00000 n \n`;
  body += `trailer\n<< /Size ${objects.length + 1} /Root ${catalog} 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(body, 'latin1');
}

/** A PDF literal string: backslash, parentheses escaped; Latin-1 beyond ASCII as octal escapes. */
function pdfString(text: string): string {
  let out = '';
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (code > 0xff) throw new Error(`pdfDocument writes Latin-1 text only, not ${JSON.stringify(char)}`);
    if (char === '\\' || char === '(' || char === ')') out += `\\${char}`;
    else if (code < 0x20 || code > 0x7e) out += `\\${code.toString(8).padStart(3, '0')}`;
    else out += char;
  }
  return out;
}

// ── Office Open XML (DOCX, PPTX) ─────────────────────────────────────────────

const XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n';
const PACKAGE_RELATIONSHIPS = 'http://schemas.openxmlformats.org/package/2006/relationships';
const OFFICE_DOCUMENT = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument';

export function xmlEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function contentTypes(overrides: ReadonlyArray<readonly [partName: string, contentType: string]>): string {
  return (
    XML_DECLARATION +
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">' +
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>' +
    '<Default Extension="xml" ContentType="application/xml"/>' +
    overrides.map(([part, type]) => `<Override PartName="${part}" ContentType="${type}"/>`).join('') +
    '</Types>'
  );
}

function relationships(entries: ReadonlyArray<readonly [id: string, type: string, target: string]>): string {
  return (
    XML_DECLARATION +
    `<Relationships xmlns="${PACKAGE_RELATIONSHIPS}">` +
    entries.map(([id, type, target]) => `<Relationship Id="${id}" Type="${type}" Target="${target}"/>`).join('') +
    '</Relationships>'
  );
}

/**
 * Zips the parts in the order given. `[Content_Types].xml` comes first, as Office writes it: file-type recognises
 * DOCX and PPTX from that entry.
 */
async function zipParts(parts: ReadonlyArray<readonly [name: string, content: string]>): Promise<Buffer> {
  const zip = new JSZip();
  for (const [name, content] of parts) zip.file(name, content);
  return zip.generateAsync({ type: 'nodebuffer', compression: 'DEFLATE' });
}

export interface DocxOptions {
  /**
   * The main document part's name (default `word/document.xml`), as `_rels/.rels` names it: Word names it so, but
   * readers follow the relationship, whatever the name.
   */
  mainPart?: string;
}

/** A DOCX whose body is one paragraph (`<w:p>`) per entry; a paragraph's text is one run. */
export function docxDocument(paragraphs: readonly string[], options: DocxOptions = {}): Promise<Buffer> {
  const mainPart = options.mainPart ?? 'word/document.xml';
  const w = 'http://schemas.openxmlformats.org/wordprocessingml/2006/main';
  const body = paragraphs
    .map((text) => `<w:p><w:r><w:t xml:space="preserve">${xmlEscape(text)}</w:t></w:r></w:p>`)
    .join('');
  return zipParts([
    [
      '[Content_Types].xml',
      contentTypes([
        [`/${mainPart}`, 'application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml'],
      ]),
    ],
    ['_rels/.rels', relationships([['rId1', OFFICE_DOCUMENT, mainPart]])],
    [mainPart, `${XML_DECLARATION}<w:document xmlns:w="${w}"><w:body>${body}</w:body></w:document>`],
  ]);
}

export interface PptxOptions {
  /**
   * The presentation's slide order, as indexes into `slides` (default: as given). Slide files keep their numbers
   * (`slide1.xml` is `slides[0]`) when the order differs, as when slides are reordered in PowerPoint.
   */
  order?: readonly number[];
}

/**
 * A PPTX with one slide per entry of `slides`; each string of a slide is one paragraph of one text box, a text run
 * (`<a:t>`) of its own. The slides are listed in `ppt/presentation.xml` (`sldIdLst`) through its relationships.
 */
export function pptxDocument(slides: ReadonlyArray<readonly string[]>, options: PptxOptions = {}): Promise<Buffer> {
  const p = 'http://schemas.openxmlformats.org/presentationml/2006/main';
  const a = 'http://schemas.openxmlformats.org/drawingml/2006/main';
  const r = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships';
  const slideRel = 'http://schemas.openxmlformats.org/officeDocument/2006/relationships/slide';
  const order = options.order ?? slides.map((_, i) => i);
  const slideParts = slides.map((paragraphs, i): [string, string] => {
    const text = paragraphs.map((para) => `<a:p><a:r><a:rPr lang="en-US"/><a:t>${xmlEscape(para)}</a:t></a:r></a:p>`);
    return [
      `ppt/slides/slide${i + 1}.xml`,
      `${XML_DECLARATION}<p:sld xmlns:a="${a}" xmlns:r="${r}" xmlns:p="${p}"><p:cSld><p:spTree>` +
        '<p:nvGrpSpPr><p:cNvPr id="1" name=""/><p:cNvGrpSpPr/><p:nvPr/></p:nvGrpSpPr><p:grpSpPr/>' +
        '<p:sp><p:nvSpPr><p:cNvPr id="2" name="Text 1"/><p:cNvSpPr txBox="1"/><p:nvPr/></p:nvSpPr><p:spPr/>' +
        `<p:txBody><a:bodyPr/><a:lstStyle/>${text.join('')}</p:txBody></p:sp>` +
        '</p:spTree></p:cSld></p:sld>',
    ];
  });
  const slideIds = order.map((slide, i) => `<p:sldId id="${256 + i}" r:id="rId${slide + 1}"/>`).join('');
  return zipParts([
    [
      '[Content_Types].xml',
      contentTypes([
        ['/ppt/presentation.xml', 'application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml'],
        ...slides.map(
          (_, i) =>
            [
              `/ppt/slides/slide${i + 1}.xml`,
              'application/vnd.openxmlformats-officedocument.presentationml.slide+xml',
            ] as const,
        ),
      ]),
    ],
    ['_rels/.rels', relationships([['rId1', OFFICE_DOCUMENT, 'ppt/presentation.xml']])],
    [
      'ppt/presentation.xml',
      `${XML_DECLARATION}<p:presentation xmlns:a="${a}" xmlns:r="${r}" xmlns:p="${p}">` +
        `<p:sldIdLst>${slideIds}</p:sldIdLst>` +
        '<p:sldSz cx="9144000" cy="6858000"/><p:notesSz cx="6858000" cy="9144000"/>' +
        '</p:presentation>',
    ],
    [
      'ppt/_rels/presentation.xml.rels',
      relationships(slides.map((_, i) => [`rId${i + 1}`, slideRel, `slides/slide${i + 1}.xml`] as const)),
    ],
    ...slideParts,
  ]);
}

/**
 * `document` (a DOCX or PPTX) with `count` empty parts added after its own (`customXml/itemN.xml`), every entry
 * stored: a zip of many entries written directly, which JSZip would take seconds to generate.
 */
export async function withEmptyParts(document: Buffer, count: number): Promise<Buffer> {
  const zip = await JSZip.loadAsync(document);
  const parts: Array<[string, Buffer]> = [];
  for (const file of Object.values(zip.files)) {
    if (!file.dir) parts.push([file.name, await file.async('nodebuffer')]);
  }
  for (let i = 0; i < count; i++) parts.push([`customXml/item${i}.xml`, Buffer.alloc(0)]);
  return storedZip(parts);
}

/** A zip of the parts in order, uncompressed (method 0), without ZIP64: fewer than 65,535 parts of < 4 GiB. */
function storedZip(parts: ReadonlyArray<readonly [name: string, content: Buffer]>): Buffer {
  const local: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, content] of parts) {
    const fileName = Buffer.from(name, 'utf8');
    const crc = crc32(content);
    const header = Buffer.alloc(30);
    header.writeUInt32LE(0x04034b50, 0);
    header.writeUInt16LE(20, 4); // version needed
    header.writeUInt16LE(0x0800, 6); // UTF-8 names
    header.writeUInt32LE(crc, 14);
    header.writeUInt32LE(content.length, 18);
    header.writeUInt32LE(content.length, 22);
    header.writeUInt16LE(fileName.length, 26);
    local.push(header, fileName, content);
    const entry = Buffer.alloc(46);
    entry.writeUInt32LE(0x02014b50, 0);
    entry.writeUInt16LE(20, 4); // version made by
    entry.writeUInt16LE(20, 6);
    entry.writeUInt16LE(0x0800, 8);
    entry.writeUInt32LE(crc, 16);
    entry.writeUInt32LE(content.length, 20);
    entry.writeUInt32LE(content.length, 24);
    entry.writeUInt16LE(fileName.length, 28);
    entry.writeUInt32LE(offset, 42);
    central.push(entry, fileName);
    offset += header.length + fileName.length + content.length;
  }
  const directory = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(parts.length, 8);
  end.writeUInt16LE(parts.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...local, directory, end]);
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

// ── HTML ─────────────────────────────────────────────────────────────────────

/** An HTML page: `head` and `body` are inserted as given (markup, not text). */
export function htmlDocument(body: string, head = '<title>Fixture</title>'): Buffer {
  return Buffer.from(`<!DOCTYPE html>\n<html lang="en">\n<head>${head}</head>\n<body>\n${body}\n</body>\n</html>\n`);
}

export interface DocOptions {
  /** How many pieces the piece table holds, each naming all the text's bytes (a bomb's shape; default 1). */
  repeat?: number;
}

/**
 * A Word 97–2003 document (.doc) of `paragraphs`, in a Compound File: the FIB fields readers take ([MS-DOC] 2.5.1:
 * the magic number, the table stream's name, the main text's length, where the piece table is) and one piece of
 * text, 8-bit when all of it is ASCII ([MS-DOC] 2.9.73: fc with 0x40000000, twice the offset), else UTF-16.
 */
export function docDocument(paragraphs: readonly string[], { repeat = 1 }: DocOptions = {}): Buffer {
  const text = `${paragraphs.join('\r')}\r`;
  const ascii = [...text].every((ch) => ch.charCodeAt(0) < 0x80);
  const textAt = 0x800;
  const encoded = ascii ? Buffer.from(text, 'latin1') : Buffer.from(text, 'utf16le');
  const word = Buffer.alloc(textAt + encoded.length);
  word.writeUInt16LE(0xa5ec, 0x00); // wIdent
  word.writeUInt16LE(0x00c1, 0x02); // nFib: Word 97
  word.writeUInt16LE(0x0200, 0x0a); // fWhichTblStm: the table stream is 1Table
  word.writeUInt32LE(textAt, 0x18); // fcMin
  word.writeUInt32LE(text.length, 0x4c); // ccpText
  encoded.copy(word, textAt);

  // The table stream: a Clx of one Pcdt, its PlcPcd the character positions of each piece, then each piece's Pcd.
  const cps = Array.from({ length: repeat + 1 }, (_, i) => i * text.length);
  const plcPcd = Buffer.alloc(4 * cps.length + 8 * repeat);
  for (const [i, cp] of cps.entries()) plcPcd.writeUInt32LE(cp, 4 * i);
  for (let i = 0; i < repeat; i++)
    plcPcd.writeUInt32LE(ascii ? (textAt * 2) | 0x40000000 : textAt, 4 * cps.length + 8 * i + 2);
  const clx = Buffer.concat([Buffer.from([2]), Buffer.alloc(4), plcPcd]);
  clx.writeUInt32LE(plcPcd.length, 1);
  word.writeUInt32LE(0, 0x01a2); // fcClx: at the table stream's start
  word.writeUInt32LE(clx.length, 0x01a6); // lcbClx

  const container = CFB.utils.cfb_new();
  CFB.utils.cfb_add(container, '/WordDocument', word);
  CFB.utils.cfb_add(container, '/1Table', clx);
  return Buffer.from(CFB.write(container, { type: 'buffer' }) as Uint8Array);
}
