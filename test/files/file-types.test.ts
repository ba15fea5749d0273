import assert from 'node:assert/strict';
import { test } from 'node:test';
import { detectMimeType } from '../../src/files/file-types.ts';
import { pdfDocument } from '../support/documents.ts';
import { onePixelPng } from '../support/images.ts';

/** A file's type comes from its bytes first, its name second; never from the client's part content type. */
test('types are detected from the bytes, then the name', async () => {
  assert.equal(await detectMimeType(onePixelPng(), 'notes.txt'), 'image/png', 'a PNG named .txt is an image');
  assert.equal(await detectMimeType(pdfDocument([['x']]), 'upload.bin'), 'application/pdf');
  assert.equal(await detectMimeType(Buffer.from('# Title\n'), 'readme.md'), 'text/markdown');
  assert.equal(await detectMimeType(Buffer.from('plain'), 'photo.png'), null, 'a text named .png is no image');
  assert.equal(await detectMimeType(Buffer.alloc(0), 'empty.txt'), 'text/plain');
  assert.equal(await detectMimeType(Buffer.from([1, 2, 3]), 'blob'), null);
});

test('UTF-16 text with a byte order mark is text, not the MPEG audio its first bytes resemble', async () => {
  const utf16le = Buffer.concat([
    Buffer.from([0xff, 0xfe]),
    Buffer.from('Hello, world. Plenty of text here.', 'utf16le'),
  ]);
  assert.equal(await detectMimeType(utf16le, 'notes.txt'), 'text/plain');
  assert.equal(await detectMimeType(utf16le, 'page.html'), 'text/html');
  assert.equal(await detectMimeType(utf16le, 'unnamed'), 'text/plain');
});

test('text named as text is text, even when its first characters are a binary signature to file-type', async () => {
  const starts: Array<[string, string]> = [
    ['BM25 is a ranking function.\n', 'image/bmp'],
    ['MZ-200 router manual\n', 'application/x-msdownload'],
    ['ID3v2 tags\n', 'audio/mpeg'],
    ['GIF89a is a format\n', 'image/gif'],
    ['-----BEGIN PGP MESSAGE-----\n\nhQEMA5+x\n-----END PGP MESSAGE-----\n', 'application/pgp-encrypted'],
    ['BZh is bzip2\n', 'application/x-bzip2'],
    ['fLaC is FLAC\n', 'audio/flac'],
    ['%!PS-Adobe-3.0\n', 'application/postscript'],
    ['MSCF cabinet\n', 'application/vnd.ms-cab-compressed'],
    ['MThd is MIDI\n', 'audio/midi'],
  ];
  for (const [text, signature] of starts) {
    const bytes = Buffer.from(text);
    assert.equal(await detectMimeType(bytes, 'notes.txt'), 'text/plain', text);
    assert.equal(await detectMimeType(bytes, 'notes.md'), 'text/markdown', text);
    assert.equal(await detectMimeType(bytes, 'unnamed'), signature, `${text} without a text name`);
  }
  // A head cut inside a character still reads as text.
  const cut = Buffer.from(`BM25 ${'é'.repeat(3000)}`).subarray(0, 4100);
  assert.equal(cut.at(-1), 0xc3);
  assert.equal(await detectMimeType(cut, 'notes.md'), 'text/markdown');
  // Binary bytes keep their signature's type, and a PDF stays a PDF even when its first bytes are all ASCII.
  const gif = Buffer.concat([Buffer.from('GIF89a'), Buffer.from([1, 0, 1, 0, 0x80, 0, 0]), Buffer.alloc(20)]);
  assert.equal(await detectMimeType(gif, 'notes.txt'), 'image/gif');
  assert.equal(await detectMimeType(pdfDocument([['x']]), 'notes.txt'), 'application/pdf');
  assert.equal(await detectMimeType(Buffer.from('%PDF-1.4\n1 0 obj\n<< >>\nendobj\n'), 'notes.txt'), 'application/pdf');
});
