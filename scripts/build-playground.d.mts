/** Bundles the playground into dist/playground/ and returns that directory (scripts/build-playground.mjs). */
export function buildPlayground(options?: { minify?: boolean }): Promise<string>;
