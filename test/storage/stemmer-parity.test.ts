import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import pg from 'pg';
import { keywordText } from '../../src/storage/sql/keyword-text.ts';
import { POSTGRES_SKIP_REASON, postgresUrlOrSkip } from '../support/postgres.ts';
import { ROOT } from '../support/root.ts';

/**
 * keywordText stems English words itself (sql/keyword-text.ts), with the algorithm PostgreSQL's `english` config
 * used before (Snowball's English stemmer): on the English words of the README and of bench's retrieval set, the two
 * give the same stem, so the choice of stemmer changed nothing on PostgreSQL for ordinary text.
 */

const adminUrl = postgresUrlOrSkip();
test("keywordText stems English words as PostgreSQL's english config does", {
  skip: adminUrl ? false : POSTGRES_SKIP_REASON,
}, async () => {
  const docs = path.join(ROOT, 'bench/retrieval-set/docs');
  const texts = [
    readFileSync(path.join(ROOT, 'README.md'), 'utf8'),
    ...readdirSync(docs).map((name) => readFileSync(path.join(docs, name), 'utf8')),
  ];
  const words = [
    ...new Set(
      texts
        .join(' ')
        .toLowerCase()
        .match(/\b[a-z]+\b/g),
    ),
  ];
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rows } = await client.query<{ word: string; lexemes: string[] }>(
      `select word, array(select lexeme from unnest(to_tsvector('english', word))) as lexemes
         from unnest($1::text[]) as word`,
      [words],
    );
    const compared = rows.filter((row) => row.lexemes.length > 0);
    assert.ok(compared.length > 3000, `${compared.length} words`);
    const differ = compared.filter((row) => keywordText(row.word) !== row.lexemes.join(' '));
    assert.deepEqual(differ, []);
  } finally {
    await client.end();
  }
});
