import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import JSZip from 'jszip';
import { detectMimeType, SNIFF_BYTES } from '../../src/files/file-types.ts';
import {
  decideFormat,
  type ExtractResult,
  extractText,
  MAX_HTML_BYTES,
  MAX_TEXT_CHARS,
  SUPPORTED_EXTENSIONS,
} from '../../src/retrieval/extract.ts';
import { OFFICE_XML_LIMIT_BYTES, OFFICE_ZIP_ENTRY_LIMIT } from '../../src/retrieval/office-text.ts';
import {
  docDocument,
  docxDocument,
  htmlDocument,
  pdfDocument,
  pptxDocument,
  withEmptyParts,
} from '../support/documents.ts';
import { Random } from '../support/fuzz.ts';
import { onePixelPng } from '../support/images.ts';

/** Extraction as an upload reaches it: the type detected from the first bytes and the name, as the Files API does. */
async function extract(bytes: Buffer, filename: string): Promise<ExtractResult> {
  const mimeType = await detectMimeType(bytes.subarray(0, SNIFF_BYTES), filename);
  return extractText({ bytes, filename, mimeType });
}

function textOf(result: ExtractResult): string {
  assert.ok(result.ok, `expected text, got ${JSON.stringify(result)}`);
  return result.text;
}

function failure(result: ExtractResult, code: 'unsupported_file' | 'invalid_file', message: RegExp): void {
  assert.equal(result.ok, false, `expected ${code}, got text ${JSON.stringify(result).slice(0, 200)}`);
  if (result.ok) return;
  assert.equal(result.code, code, result.message);
  assert.match(result.message, message);
}

/** The zip with `from` replaced by `to` in one part: markup the fixture builders escape, or would never write. */
async function rewritePart(bytes: Buffer, part: string, from: string, to: string): Promise<Buffer> {
  const zip = await JSZip.loadAsync(bytes);
  const xml = await zip.file(part)!.async('string');
  assert.ok(xml.includes(from), `${part} has ${from}`);
  zip.file(part, xml.replace(from, to));
  return zip.generateAsync({ type: 'nodebuffer', compression: 'DEFLATE' });
}

describe('extractText: PDF', () => {
  it('reads every page in order, lines as lines, pages separated by a blank line', async () => {
    const pdf = pdfDocument([
      ['Quarterly report', 'Revenue grew (a lot) in the café business.'],
      ['Second page: costs.'],
      ['Third page \\ end'],
    ]);
    assert.equal(await detectMimeType(pdf.subarray(0, SNIFF_BYTES), 'report.pdf'), 'application/pdf');
    const text = textOf(await extract(pdf, 'report.pdf'));
    assert.equal(
      text,
      'Quarterly report\nRevenue grew (a lot) in the café business.\n\nSecond page: costs.\n\nThird page \\ end',
    );
  });

  it('leaves out pages without text', async () => {
    const text = textOf(await extract(pdfDocument([['one'], [], ['three']]), 'gaps.pdf'));
    assert.equal(text, 'one\n\nthree');
  });

  it('refuses a PDF without a text layer (a scan) as invalid_file, saying there is no extractable text', async () => {
    failure(await extract(pdfDocument([[], []]), 'scan.pdf'), 'invalid_file', /no extractable text/);
  });

  it('refuses a truncated PDF as invalid_file', async () => {
    const pdf = pdfDocument([['Hello there']]);
    const truncated = pdf.subarray(0, Math.floor(pdf.byteLength / 3));
    failure(await extract(truncated, 'truncated.pdf'), 'invalid_file', /not a valid PDF/);
  });

  it('refuses bytes named .pdf that are no PDF at all as invalid_file', async () => {
    const garbage = Buffer.from('this was supposed to be a PDF, but it is plain text');
    // No signature: detection falls back to the name, which has no text type, so the extension decides.
    assert.equal(await detectMimeType(garbage, 'broken.pdf'), null);
    failure(await extract(garbage, 'broken.pdf'), 'invalid_file', /not a valid PDF/);
  });

  it('reads a PDF named as something else: the detected type wins over the name', async () => {
    const text = textOf(await extract(pdfDocument([['Signed content']]), 'notes.txt'));
    assert.equal(text, 'Signed content');
  });
});

describe('extractText: DOC (Word 97–2003)', () => {
  it('reads the paragraphs, one per line, in 8-bit and in UTF-16 pieces', async () => {
    const doc = docDocument(['Title of the memo', 'Terms & conditions <apply>']);
    assert.equal(await detectMimeType(doc.subarray(0, SNIFF_BYTES), 'memo.doc'), 'application/x-cfb');
    assert.equal(textOf(await extract(doc, 'memo.doc')), 'Title of the memo\nTerms & conditions <apply>');
    const unicode = docDocument(['Grüße aus Köln — 東京', '“quoted”']);
    assert.equal(textOf(await extract(unicode, 'memo.doc')), 'Grüße aus Köln — 東京\n“quoted”', 'kept as written');
    const declared = await extractText({ bytes: doc, filename: 'memo', mimeType: 'application/msword' });
    assert.equal(textOf(declared), 'Title of the memo\nTerms & conditions <apply>');
  });

  it('refuses a damaged document, and one whose pieces claim more text than is indexed, before reading them', async () => {
    const doc = docDocument(['Some text']);
    failure(await extract(doc.subarray(0, 600), 'cut.doc'), 'invalid_file', /not a valid Word 97–2003 document/);
    const notWord = Buffer.concat([Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]), Buffer.alloc(1024)]);
    failure(await extract(notWord, 'letter.doc'), 'invalid_file', /not a valid Word 97–2003 document/);
    // 9,000 pieces that each name the same 1,001 characters: 9 million, over MAX_TEXT_CHARS.
    const bomb = docDocument(['x'.repeat(1000)], { repeat: 9000 });
    assert.ok(bomb.length < 200_000);
    failure(await extract(bomb, 'bomb.doc'), 'invalid_file', /too much text/);
  });
});

describe('extractText: damaged DOC files', () => {
  it('are refused as invalid_file, one by one: none stops the process or runs away', async () => {
    // Bytes changed at random, half of them in the Compound File's header, allocation tables and directory. One of
    // these (#250) gave word-extractor's own Compound File reader a sector chain that loops: it grew an array until
    // V8 aborted the process. word-extractor now reads a container rewritten from the streams cfb read.
    const doc = docDocument(['A first paragraph.', 'Second one, with “quotes” and ünïcode.', 'x'.repeat(300)]);
    const random = new Random(7);
    const outcomes = new Set<string>();
    for (let n = 0; n < 400; n++) {
      const bytes = Buffer.from(doc);
      for (let flips = 1 + random.int(8); flips > 0; flips--) {
        const at = random.chance(0.5) ? random.int(bytes.length) : random.int(Math.min(bytes.length, 4096));
        bytes[at] = random.chance(0.5) ? random.int(256) : bytes[at]! ^ (1 << random.int(8));
      }
      const result = await extractText({ bytes, filename: 'damaged.doc', mimeType: 'application/x-cfb' });
      outcomes.add(result.ok ? 'text' : result.code);
    }
    assert.deepEqual([...outcomes].sort(), ['invalid_file', 'text']);
  });
});

describe('extractText: DOCX', () => {
  it('reads the paragraphs, separated by blank lines, with XML escapes and non-ASCII text', async () => {
    const docx = await docxDocument(['Title of the memo', 'Terms & conditions <apply>', 'Grüße aus Köln — 東京']);
    assert.equal(
      await detectMimeType(docx.subarray(0, SNIFF_BYTES), 'memo.docx'),
      'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
    );
    const text = textOf(await extract(docx, 'memo.docx'));
    assert.equal(text.trim(), 'Title of the memo\n\nTerms & conditions <apply>\n\nGrüße aus Köln — 東京');
  });

  it('keeps no U+0000 in the text (PostgreSQL cannot store it): a NUL in a run and &#0; become U+FFFD', async () => {
    const raw = await docxDocument(['before\0after', 'second']);
    assert.equal(textOf(await extract(raw, 'raw.docx')).trim(), 'before\ufffdafter\n\nsecond');
    const reference = await rewritePart(
      await docxDocument(['before MARK after']),
      'word/document.xml',
      'MARK',
      'x&#0;y&#x0;z',
    );
    assert.equal(textOf(await extract(reference, 'reference.docx')).trim(), 'before x\ufffdy\ufffdz after');
    // The same as the markup scanner makes of the reference in PPTX and HTML.
    const pptx = await rewritePart(
      await pptxDocument([['before MARK after']]),
      'ppt/slides/slide1.xml',
      'MARK',
      'x&#0;y',
    );
    assert.equal(textOf(await extract(pptx, 'reference.pptx')), 'before x\ufffdy after');
    assert.equal(textOf(await extract(htmlDocument('<p>x&#0;y</p>', ''), 'reference.html')), 'x\ufffdy');
  });

  it('keeps no lone surrogate in the text (the databases keep one differently): &#xD800; becomes U+FFFD', async () => {
    const reference = await rewritePart(
      await docxDocument(['before MARK after']),
      'word/document.xml',
      'MARK',
      'x&#xD800;y&#xDFFF;z&#x1F600;',
    );
    assert.equal(textOf(await extract(reference, 'reference.docx')).trim(), 'before x\ufffdy\ufffdz😀 after');
    assert.equal(textOf(await extract(htmlDocument('<p>x&#xD800;y</p>', ''), 'reference.html')), 'x\ufffdy');
  });

  it('refuses a zip named .docx that holds no Word document as invalid_file', async () => {
    const zip = new JSZip();
    zip.file('readme.txt', 'not a document');
    const bytes = await zip.generateAsync({ type: 'nodebuffer', compression: 'DEFLATE' });
    assert.equal(await detectMimeType(bytes.subarray(0, SNIFF_BYTES), 'fake.docx'), 'application/zip');
    failure(await extract(bytes, 'fake.docx'), 'invalid_file', /not a valid DOCX document/);
  });

  it('refuses a corrupt DOCX (not a zip) as invalid_file', async () => {
    const docx = await docxDocument(['Some text']);
    const corrupt = Buffer.concat([docx.subarray(0, 60), Buffer.alloc(200, 7)]);
    failure(await extract(corrupt, 'corrupt.docx'), 'invalid_file', /not a valid DOCX document/);
  });

  it('refuses a DOCX whose XML inflates past the limit (a zip bomb) before parsing it', async () => {
    const filler = ' '.repeat(OFFICE_XML_LIMIT_BYTES + 1024);
    const zip = new JSZip();
    zip.file(
      '[Content_Types].xml',
      '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">' +
        '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.' +
        'wordprocessingml.document.main+xml"/></Types>',
    );
    zip.file(
      'word/document.xml',
      `<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">${filler}</w:document>`,
    );
    const bomb = await zip.generateAsync({ type: 'nodebuffer', compression: 'DEFLATE' });
    assert.ok(bomb.byteLength < 1024 * 1024, 'the fixture is a small file that inflates a lot');
    failure(await extract(bomb, 'bomb.docx'), 'invalid_file', /too large to index.*inflates to more than 32 MiB/);
  });

  it('counts the main part against the limit whatever its name: word/document.bin, as _rels/.rels names it', async () => {
    const bomb = await docxDocument([' '.repeat(OFFICE_XML_LIMIT_BYTES + 1024)], { mainPart: 'word/document.bin' });
    assert.ok(bomb.byteLength < 1024 * 1024, 'the fixture is a small file that inflates a lot');
    failure(await extract(bomb, 'bomb.docx'), 'invalid_file', /too large to index.*inflates to more than 32 MiB/);
  });

  it('reads a DOCX whose embedded image is larger than the limit: images are not inflated for text', async () => {
    const namespaces =
      'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" ' +
      'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" ' +
      'xmlns:pic="http://schemas.openxmlformats.org/drawingml/2006/picture" ' +
      'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"';
    const picture =
      `<w:p><w:r><w:drawing ${namespaces}><wp:inline><wp:extent cx="1" cy="1"/>` +
      '<wp:docPr id="1" name="Picture 1" descr="photo"/><a:graphic>' +
      '<a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/picture"><pic:pic><pic:blipFill>' +
      '<a:blip r:embed="rId5"/></pic:blipFill></pic:pic></a:graphicData></a:graphic></wp:inline></w:drawing>' +
      '</w:r></w:p>';
    const withPicture = await rewritePart(
      await docxDocument(['before', 'after']),
      'word/document.xml',
      '</w:p>',
      `</w:p>${picture}`,
    );
    const zip = await JSZip.loadAsync(withPicture);
    zip.file(
      'word/_rels/document.xml.rels',
      '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">' +
        '<Relationship Id="rId5" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/image" ' +
        'Target="media/image1.png"/></Relationships>',
    );
    zip.file('word/media/image1.png', Buffer.alloc(OFFICE_XML_LIMIT_BYTES + 8 * 1024 * 1024));
    const docx = await zip.generateAsync({ type: 'nodebuffer', compression: 'DEFLATE' });
    assert.equal(textOf(await extract(docx, 'photo.docx')).trim(), 'before\n\n\n\nafter');
  });

  it('refuses a zip of more entries than the bound before reading them', async () => {
    const bound = OFFICE_ZIP_ENTRY_LIMIT;
    const atTheBound = await withEmptyParts(await docxDocument(['Some text']), bound - 3); // 3 parts of its own
    assert.equal(textOf(await extract(atTheBound, 'many-parts.docx')).trim(), 'Some text');
    const crowded = await withEmptyParts(await docxDocument(['Some text']), bound - 2);
    const crowdedDeck = await withEmptyParts(await pptxDocument([['x']]), bound);
    // Refused before the zip is opened: JSZip builds every entry as it opens one.
    const loadAsync = JSZip.loadAsync;
    let opened = 0;
    JSZip.loadAsync = (...args) => {
      opened++;
      return loadAsync.apply(JSZip, args);
    };
    try {
      failure(await extract(crowded, 'crowded.docx'), 'invalid_file', /too large to index.*more than 20,000 entries/);
      failure(
        await extract(crowdedDeck, 'crowded.pptx'),
        'invalid_file',
        /too large to index.*more than 20,000 entries/,
      );
    } finally {
      JSZip.loadAsync = loadAsync;
    }
    assert.equal(opened, 0);
  });
});

describe('extractText: PPTX', () => {
  it("reads the slides' text runs, one slide per paragraph, a slide's paragraphs one per line", async () => {
    const pptx = await pptxDocument([
      ['Roadmap 2025', 'Ship the indexer'],
      ['Risks & mitigations', 'Latency <100 ms'],
    ]);
    assert.equal(
      await detectMimeType(pptx.subarray(0, SNIFF_BYTES), 'deck.pptx'),
      'application/vnd.openxmlformats-officedocument.presentationml.presentation',
    );
    const text = textOf(await extract(pptx, 'deck.pptx'));
    assert.equal(text, 'Roadmap 2025\nShip the indexer\n\nRisks & mitigations\nLatency <100 ms');
  });

  it("follows the presentation's slide order, not the slide files' numbers", async () => {
    const pptx = await pptxDocument([['first file'], ['second file'], ['third file']], { order: [2, 0, 1] });
    assert.equal(textOf(await extract(pptx, 'moved.pptx')), 'third file\n\nfirst file\n\nsecond file');
  });

  it('without a readable slide list, orders the slides by their number (slide10 after slide9)', async () => {
    const slides = Array.from({ length: 11 }, (_, i) => [`slide number ${i + 1}`]);
    const zip = await JSZip.loadAsync(await pptxDocument(slides));
    zip.remove('ppt/presentation.xml');
    const bytes = await zip.generateAsync({ type: 'nodebuffer', compression: 'DEFLATE' });
    const text = textOf(
      await extractText({
        bytes,
        filename: 'list-less.pptx',
        mimeType: 'application/vnd.openxmlformats-officedocument.presentationml.presentation',
      }),
    );
    assert.deepEqual(
      text.split('\n\n'),
      slides.map(([line]) => line),
    );
  });

  it('refuses a presentation with more text than the bound as invalid_file', async () => {
    const pptx = await pptxDocument([['short'], ['x'.repeat(MAX_TEXT_CHARS)]]);
    failure(await extract(pptx, 'wordy.pptx'), 'invalid_file', /too much text/);
  });

  it('refuses a corrupt PPTX as invalid_file', async () => {
    const pptx = await pptxDocument([['x']]);
    const corrupt = Buffer.concat([pptx.subarray(0, 100), Buffer.alloc(100)]);
    failure(await extract(corrupt, 'corrupt.pptx'), 'invalid_file', /not a valid PPTX presentation/);
  });
});

describe('extractText: HTML', () => {
  it('keeps the text a reader sees: no scripts or styles, entities decoded, blocks as lines', async () => {
    const page = htmlDocument(
      [
        '<h1>Release&nbsp;notes</h1>',
        '<script>if (a < b) { document.write("<p>not text</p>"); }</script>',
        '<style>p { color: red; }</style>',
        '<p>Fixed   the\n   parser &amp; the <b>indexer</b>.<br>Caf&eacute; &#x1F600; &lt;tag&gt;</p>',
        '<ul><li>one</li><li>two</li></ul>',
        '<table><tr><td>name</td><td>value</td></tr></table>',
        '<pre>  indented\n    code</pre>',
      ].join('\n'),
      '<title>Notes &amp; more</title><script src="x.js"></script>',
    );
    const text = textOf(await extract(page, 'notes.html'));
    assert.equal(
      text,
      [
        'Notes & more',
        '',
        'Release notes',
        '',
        'Fixed the parser & the indexer.',
        'Café 😀 <tag>',
        '',
        'one',
        'two',
        '',
        'name\tvalue',
        '',
        '  indented',
        '    code',
      ].join('\n'),
    );
  });

  it('reads a page in the legacy character set it declares', async () => {
    const page = Buffer.from(
      '<html><head><meta charset="windows-1252"></head><body><p>caf\xe9</p></body></html>',
      'latin1',
    );
    assert.equal(textOf(await extract(page, 'old.htm')), 'café');
  });

  it('refuses HTML files past the size bound as invalid_file', async () => {
    const page = Buffer.alloc(MAX_HTML_BYTES + 1, '<p>');
    failure(await extract(page, 'huge.html'), 'invalid_file', /HTML file is too large to index/);
  });

  it('reads malformed markup in linear time: 200,000 unclosed and 200,000 stray tags', async () => {
    const page = Buffer.from(`${'<div><span>'.repeat(200_000)}deep text${'</p></i>'.repeat(200_000)}<!-- never closed`);
    assert.equal(textOf(await extract(page, 'malformed.html')), 'deep text');
  });
});

describe('extractText: text formats', () => {
  it('decodes UTF-8, strips a byte order mark and turns CRLF into LF', async () => {
    const text = textOf(await extract(Buffer.from('\ufeffnaïve café — 東京 🚀\r\nsecond line\r\n'), 'notes.md'));
    assert.equal(text, 'naïve café — 東京 🚀\nsecond line\n');
  });

  it('decodes UTF-16 with a byte order mark, little- and big-endian', async () => {
    const content = 'UTF-16 text: Grüße, 東京 🚀\nline two';
    const little = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(content, 'utf16le')]);
    const big = Buffer.from(little);
    big.swap16();
    assert.equal(textOf(await extract(little, 'windows.txt')), content);
    assert.equal(textOf(await extract(big, 'mac.txt')), content);
  });

  it('reads the source and data formats file_search lists as text', async () => {
    for (const name of ['main.c', 'a.cpp', 'b.cs', 's.css', 'x.go', 'App.java', 'i.js', 'm.mjs', 'd.json', 'l.jsonl']) {
      assert.equal(textOf(await extract(Buffer.from(`content of ${name}`), name)), `content of ${name}`);
    }
    for (const name of ['p.php', 'q.py', 'r.rb', 's.sh', 't.tex', 'u.ts', 'v.csv', 'w.yaml', 'x.xml', 'y.markdown']) {
      assert.equal(textOf(await extract(Buffer.from(`content of ${name}`), name)), `content of ${name}`);
    }
  });

  it('reads text named as text whose first characters are a binary signature to file-type', async () => {
    const texts: Array<[name: string, text: string]> = [
      ['ranking.md', 'BM25 is a ranking function used by search engines.\n'], // image/bmp
      ['ranking-bom.md', '\ufeffBM25 with a byte order mark first.\n'], // image/bmp
      ['router.md', 'MZ-200 router: setup guide\n'], // application/x-msdownload
      ['tags.txt', 'ID3v2 tags carry an MP3 file’s title and artist.\n'], // audio/mpeg
      ['formats.md', 'GIF89a is a format for animated images.\n'], // image/gif
      ['key.txt', '-----BEGIN PGP MESSAGE-----\n\nhQEMA5+ExampleOnly\n=abcd\n-----END PGP MESSAGE-----\n'],
      ['bzip.txt', 'BZh is how every bzip2 stream starts.\n'], // application/x-bzip2
      ['flac.txt', 'fLaC marks a FLAC stream.\n'], // audio/flac
      ['printer.txt', '%!PS-Adobe-3.0 starts a PostScript file.\n'], // application/postscript
      ['cabinet.txt', 'MSCF: the Microsoft cabinet signature.\n'], // application/vnd.ms-cab-compressed
      ['midi.txt', 'MThd opens a standard MIDI file.\n'], // audio/midi
    ];
    for (const [name, text] of texts) {
      assert.equal(textOf(await extract(Buffer.from(text), name)), text.replace(/^\ufeff/, ''), name);
    }
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('GIF89a in UTF-16', 'utf16le')]);
    assert.equal(textOf(await extract(utf16, 'utf16.txt')), 'GIF89a in UTF-16');
  });

  it('refuses text that is not valid UTF-8 as invalid_file', async () => {
    const latin1 = Buffer.from('caf\xe9 au lait', 'latin1');
    failure(await extract(latin1, 'menu.txt'), 'invalid_file', /is not valid UTF-8 text/);
  });

  it('refuses text with NUL bytes (a binary file named as text) as invalid_file', async () => {
    failure(await extract(Buffer.from('ELF\0\0\0binary'), 'program.py'), 'invalid_file', /is not valid UTF-8 text/);
  });

  it('refuses more text than the bound as invalid_file', async () => {
    const huge = Buffer.alloc(MAX_TEXT_CHARS + 1, 'word ');
    failure(await extract(huge, 'huge.txt'), 'invalid_file', /too much text/);
    const larger = Buffer.alloc(3 * MAX_TEXT_CHARS + 1, 'x');
    failure(await extract(larger, 'larger.txt'), 'invalid_file', /too much text/);
  });
});

describe('extractText: unsupported files', () => {
  it('refuses an image as unsupported_file, listing the supported types', async () => {
    const result = await extractText({ bytes: onePixelPng(), filename: 'photo.png', mimeType: 'image/png' });
    failure(
      result,
      'unsupported_file',
      /^The file type image\/png is not supported for file_search\. Supported types: /,
    );
    if (!result.ok)
      for (const extension of ['.pdf', '.docx', '.pptx', '.md', '.py']) assert.ok(result.message.includes(extension));
  });

  it('refuses an image named as text: the detected type wins over the name', async () => {
    failure(await extract(onePixelPng(), 'notes.txt'), 'unsupported_file', /image\/png is not supported/);
  });

  it('refuses binary files named as text, whatever their signature', async () => {
    const gif = Buffer.concat([Buffer.from('GIF89a'), Buffer.from([1, 0, 1, 0, 0x80, 0, 0]), Buffer.alloc(20)]);
    failure(await extract(gif, 'notes.md'), 'unsupported_file', /image\/gif is not supported/);
    const bmp = Buffer.concat([Buffer.from('BM'), Buffer.from([0x3a, 0, 0, 0, 0, 0, 0, 0, 0x36, 0, 0, 0, 0x28, 0])]);
    failure(await extract(Buffer.concat([bmp, Buffer.alloc(40)]), 'notes.txt'), 'unsupported_file', /image\/bmp/);
  });

  it('refuses the other legacy binary Office files (.xls, .ppt) with a message saying what to do', async () => {
    const cfb = Buffer.concat([Buffer.from([0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1]), Buffer.alloc(1024)]);
    failure(
      await extract(cfb, 'sheet.xls'),
      'unsupported_file',
      /Legacy binary Microsoft Office files \(\.xls\).*\.docx/,
    );
    const undetected = await extractText({ bytes: Buffer.from('x'), filename: 'slides.ppt', mimeType: null });
    failure(undetected, 'unsupported_file', /Legacy binary Microsoft Office files/);
  });

  it('refuses archives, binaries and unknown extensions', async () => {
    const zip = new JSZip();
    zip.file('a.txt', 'a');
    const archive = await zip.generateAsync({ type: 'nodebuffer' });
    failure(await extract(archive, 'bundle.zip'), 'unsupported_file', /application\/zip is not supported/);
    failure(await extract(Buffer.from('plain words'), 'data.bin'), 'unsupported_file', /\.bin is not supported/);
    failure(await extract(Buffer.from('plain words'), 'README'), 'unsupported_file', /could not be determined/);
  });
});

describe('decideFormat', () => {
  it('knows every supported extension, and the types detectMimeType gives them', async () => {
    assert.deepEqual(
      [...SUPPORTED_EXTENSIONS],
      [
        ...['.c', '.cpp', '.cs', '.css', '.csv', '.doc', '.docx', '.go', '.h', '.htm', '.html', '.java', '.js'],
        ...['.json', '.jsonl', '.markdown', '.md', '.mjs', '.pdf', '.php', '.pptx', '.py', '.rb', '.sh', '.tex', '.ts'],
        ...['.tsv', '.txt', '.xml', '.yaml', '.yml'],
      ],
    );
    for (const extension of SUPPORTED_EXTENSIONS) {
      const name = `file${extension}`;
      const detected = await detectMimeType(Buffer.from('text'), name);
      assert.equal(decideFormat(detected, name).ok, true, `${name} (${detected})`);
      assert.equal(decideFormat(null, name).ok, true, `${name} undetected`);
    }
  });

  it('refines a detection by the name: a zip named .docx, XML named .html, an unlisted text type named .txt', () => {
    assert.deepEqual(decideFormat('application/zip', 'report.docx'), { ok: true, format: 'docx' });
    assert.deepEqual(decideFormat('application/zip', 'deck.pptx'), { ok: true, format: 'pptx' });
    assert.deepEqual(decideFormat('application/xml', 'page.html'), { ok: true, format: 'html' });
    assert.deepEqual(decideFormat('text/vtt', 'subtitles.txt'), { ok: true, format: 'text' });
    assert.deepEqual(decideFormat('text/html; charset=utf-8', 'page'), { ok: true, format: 'html' });
    assert.equal(decideFormat('application/zip', 'archive.txt').ok, false);
    assert.equal(decideFormat('text/vtt', 'subtitles.vtt').ok, false);
  });

  it('reads a file named as text whose bytes are text, whatever type was detected for it; a PDF stays a PDF', () => {
    const text = Buffer.from('BM25 is a ranking function.\n');
    assert.deepEqual(decideFormat('image/bmp', 'ranking.md', text), { ok: true, format: 'text' });
    assert.deepEqual(decideFormat('image/bmp', 'ranking.html', text), { ok: true, format: 'html' });
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('text', 'utf16le')]);
    assert.deepEqual(decideFormat('audio/mpeg', 'windows.txt', utf16), { ok: true, format: 'text' });
    assert.equal(decideFormat('image/bmp', 'ranking.bmp', text).ok, false, 'not named as text');
    assert.equal(decideFormat('image/bmp', 'image.txt', Buffer.from([0x42, 0x4d, 0x3a, 0, 0, 0])).ok, false);
    assert.deepEqual(decideFormat('application/pdf', 'notes.txt', Buffer.from('%PDF-1.4\n')), {
      ok: true,
      format: 'pdf',
    });
  });
});
