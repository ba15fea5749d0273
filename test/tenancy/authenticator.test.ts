import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ApiError } from '../../src/domain/errors.ts';
import type { KeyCredentials, ProjectRecords } from '../../src/storage/store.ts';
import { generateKey, hashSecret } from '../../src/tenancy/api-keys.ts';
import { Authenticator } from '../../src/tenancy/authenticator.ts';

/**
 * The scrypt check of a project key's secret is bounded: anyone who knows a key's id can present it with made-up
 * secrets, and each check costs ~40 ms of a thread and 16 MiB. One check runs at a time in a process, a few dozen
 * wait, and more are refused at once (429); a value refused is refused again without a check for a while; a key
 * already verified is never held up by the checks of others.
 */

async function setup() {
  const good = generateKey();
  const secretHash = await hashSecret(good.value);
  const credentials: KeyCredentials = { projectId: 'proj_t', secretHash, projectArchived: false };
  const projects = {
    keyCredentials: async (id: string) => (id === good.id ? credentials : undefined),
    touchKey: async () => {},
  } as unknown as ProjectRecords;
  let running = 0;
  let most = 0;
  let checks = 0;
  const held: Array<() => void> = [];
  const authenticator = new Authenticator({
    projects,
    apiKey: undefined,
    adminKey: 'sk-admin-x',
    // A check that waits until the test lets it go, then answers whether the value is the good key.
    verify: async (value) => {
      checks += 1;
      running += 1;
      most = Math.max(most, running);
      await new Promise<void>((resolve) => held.push(resolve));
      running -= 1;
      return value === good.value;
    },
  });
  // Lets every check go, those started meanwhile included.
  const release = async () => {
    await new Promise((r) => setImmediate(r));
    while (held.length > 0) {
      held.shift()!();
      await new Promise((r) => setImmediate(r));
    }
  };
  const wrong = (n: number) => `${good.value.slice(0, -6)}${String(n).padStart(6, 'A').slice(-6)}`;
  return { good, authenticator, release, wrong, stats: () => ({ running, most, checks }) };
}

test('checks of a key id run one at a time; past the queue a check is a 429 at once', async () => {
  const { authenticator, release, wrong, stats } = await setup();
  const attempts = Array.from({ length: 80 }, (_, n) =>
    authenticator.authenticate(wrong(n)).then(
      () => 'accepted',
      (error: ApiError) => error.status,
    ),
  );
  await new Promise((r) => setImmediate(r));
  assert.equal(stats().running, 1, 'one check at a time');
  await release();
  const outcomes = await Promise.all(attempts);
  assert.equal(stats().most, 1);
  assert.equal(outcomes.filter((o) => o === 401).length, 65, 'the one running and the 64 waiting were checked');
  assert.equal(outcomes.filter((o) => o === 429).length, 15, 'the rest refused without a check');
  assert.equal(stats().checks, 65);
});

test('a value refused is refused again without a check; a verified key is never held up', async () => {
  const { good, authenticator, release, wrong, stats } = await setup();
  const first = authenticator.authenticate(good.value);
  await release();
  assert.deepEqual(await first, { kind: 'project', scope: { projectId: 'proj_t', keyId: good.id } });

  const refused = authenticator.authenticate(wrong(1)).catch((error: ApiError) => error.status);
  await release();
  assert.equal(await refused, 401);
  const checks = stats().checks;
  assert.equal(await authenticator.authenticate(wrong(1)).catch((error: ApiError) => error.status), 401);
  assert.equal(stats().checks, checks, 'no second check of the same wrong value');

  // A flood of made-up secrets in the queue: the verified key still gets in, with no check.
  const flood = Array.from({ length: 10 }, (_, n) => authenticator.authenticate(wrong(100 + n)).catch(() => {}));
  await new Promise((r) => setImmediate(r));
  assert.equal(stats().running, 1);
  assert.equal((await authenticator.authenticate(good.value)).kind, 'project');
  await release();
  await Promise.all(flood);
});
