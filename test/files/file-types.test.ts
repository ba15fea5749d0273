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
