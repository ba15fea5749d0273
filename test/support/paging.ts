import type { PageRequest } from '../../src/storage/store.ts';

/** Pages through a whole store list with the cursor the SDK uses (`after` = last id) or with `before` = first id. */
export async function collectIds(
  list: (page: PageRequest) => Promise<{ data: Array<{ id: string }>; hasMore: boolean }>,
  order: 'asc' | 'desc',
  via: 'after' | 'before',
  limit: number,
  start?: string,
): Promise<string[]> {
  const seen: string[] = [];
  let cursor = start;
  for (;;) {
    const page = await list({ limit, order, [via]: cursor });
    const ids = page.data.map((o) => o.id);
    if (via === 'after') seen.push(...ids);
    else seen.unshift(...ids);
    if (!page.hasMore || ids.length === 0) return seen;
    cursor = via === 'after' ? ids.at(-1) : ids[0];
  }
}
