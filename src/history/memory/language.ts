/** The text-search configurations memory indexes in: a chat's main language, else no stemming. */
export const searchConfigs = ["russian", "english", "simple"] as const;
export type SearchConfig = (typeof searchConfigs)[number];

/** What a sample of a chat's messages says about its language (counted in SQL, see indexer.ts). */
export type LanguageSample = {
  /** Messages sampled (with text). */
  messages: number;
  /** Of them, with at least one Cyrillic letter. */
  cyrillic: number;
  /** Of them, with at least one of the commonest English words (ENGLISH_MARKERS). */
  english: number;
};

/** Words nearly every English chat uses and other Latin-script languages rarely do. */
export const ENGLISH_MARKERS = [
  "the",
  "you",
  "and",
  "is",
  "it",
  "to",
  "what",
  "that",
  "this",
  "have",
  "for",
  "are",
];

/**
 * A chat's configuration (pure): Russian when a fifth of its messages hold Cyrillic (PostgreSQL's
 * russian configuration stems the English words of a mixed chat as English too), English when a
 * fifth hold common English words, else `simple` (words as written, no stemming): a German or
 * Uzbek chat stemmed as English would find the wrong words.
 */
export function chatSearchConfig(sample: LanguageSample): SearchConfig {
  if (sample.messages === 0) return "simple";
  if (sample.cyrillic / sample.messages >= 0.2) return "russian";
  if (sample.english / sample.messages >= 0.2) return "english";
  return "simple";
}
