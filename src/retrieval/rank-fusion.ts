/**
 * Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): a result's fused score is the sum, over the
 * ranked lists that hold it, of 1 / (k + rank), rank counted from 1. Only ranks are used, so a keyword index's
 * scores and a vector index's cosine similarities, which mean different things, never have to be put on one scale;
 * k = 60 is the paper's value and the usual default (Elasticsearch, OpenSearch, Azure AI Search), damping the
 * weight of the very first ranks.
 *
 * Scores are mapped into 0..1 by dividing by the best possible fused score, first in every list (`lists.length /
 * (k + 1)`): 1 for a result both lists put first; 0.5 for one that only one of two lists holds, first.
 */
export const RRF_K = 60;

export function reciprocalRankFusion<T>(
  lists: ReadonlyArray<readonly T[]>,
  key: (item: T) => string,
  k = RRF_K,
): Array<{ item: T; score: number }> {
  const fused = new Map<string, { item: T; sum: number; best: number }>();
  for (const list of lists)
    for (const [index, item] of list.entries()) {
      const id = key(item);
      const seen = fused.get(id);
      const share = 1 / (k + index + 1);
      if (seen) {
        seen.sum += share;
        seen.best = Math.min(seen.best, index);
      } else fused.set(id, { item, sum: share, best: index });
    }
  const bestPossible = lists.length / (k + 1);
  return [...fused.values()]
    .sort((a, b) => b.sum - a.sum || a.best - b.best)
    .map(({ item, sum }) => ({ item, score: Math.min(1, sum / bestPossible) }));
}
