import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * PostgreSQL for tests. `ASSISTD_TEST_DATABASE_URL` points at a server and a database the test user may connect to
 * (and create databases from), e.g. `postgres://postgres@127.0.0.1:5432/postgres`; every test database is a fresh
 * one beside it, dropped afterwards. Unset: the PostgreSQL tests are skipped, loudly.
 */
export const TEST_DATABASE_URL: string | undefined = process.env.ASSISTD_TEST_DATABASE_URL?.trim() || undefined;

export const POSTGRES_SKIP_REASON = 'SKIPPED: PostgreSQL tests — set ASSISTD_TEST_DATABASE_URL';

/** The URL to run PostgreSQL tests against, or undefined after saying on stderr that they are skipped. */
export function postgresUrlOrSkip(): string | undefined {
  if (TEST_DATABASE_URL === undefined) process.stderr.write(`${POSTGRES_SKIP_REASON}\n`);
  return TEST_DATABASE_URL;
}

export interface TestDatabase {
  url: string;
  name: string;
  /** Drops the database, disconnecting anything still connected to it. */
  drop(): Promise<void>;
}

/** A throwaway database with a random name on the server of `adminUrl`. */
export async function createTestDatabase(adminUrl: string): Promise<TestDatabase> {
  const name = `assistd_test_${randomBytes(6).toString('hex')}`;
  await admin(adminUrl, `create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    name,
    drop: () => admin(adminUrl, `drop database if exists ${name} with (force)`),
  };
}

async function admin(adminUrl: string, statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}
