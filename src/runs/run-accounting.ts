import type { StoredStep, Usage } from '../domain/runs.ts';

export const ZERO_USAGE: Usage = Object.freeze({ prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 });

export function addUsage(a: Usage, b: Usage | null): Usage {
  if (!b) return a;
  return {
    prompt_tokens: a.prompt_tokens + b.prompt_tokens,
    completion_tokens: a.completion_tokens + b.completion_tokens,
    total_tokens: a.total_tokens + b.total_tokens,
  };
}

/** A run's usage is the sum of its steps' (a step still in progress counts its model turn). */
export function runUsage(steps: readonly StoredStep[]): Usage {
  return steps.reduce((sum, step) => addUsage(sum, step.usage ?? step.turn_usage), ZERO_USAGE);
}
