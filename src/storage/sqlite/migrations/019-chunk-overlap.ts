import { type Kysely, sql } from 'kysely';

// How many characters at a chunk's start repeat the end of the chunk before it (Chunk.overlap), so that a file's
// content can be given back as its text, each part once. Chunks stored before this migration keep null: unknown.
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table chunks add column text_overlap integer`.execute(db);
}
