// wink-porter2-stemmer ships no types: what keyword-text.ts uses of it.
declare module 'wink-porter2-stemmer' {
  /** Snowball's English stemmer (Porter2) on one lowercase word. */
  export default function stem(word: string): string;
}
