import type { Database } from "../../db/client.ts";
import { checkTextSearch, type TextSearchCheck } from "../../db/text-search.ts";
import {
  hasTrigram,
  type IndexOutcome,
  type IndexProgress,
  indexMessages,
  indexProgress,
} from "./indexer.ts";

export type { IndexOutcome, IndexProgress };

import { type PlantedCanary, plantCanary, removeCanary } from "./canary-plant.ts";
import { createPostgresRetriever } from "./postgres-retriever.ts";
import type { Retriever } from "./retriever.ts";
import { type SaidBeforeQuery, saidBefore } from "./said-before.ts";

/** The session gap windows are cut at, as the dataset's default (dataset/sessions.ts). */
const WINDOW_GAP_MS = 10 * 60_000;

export type MemoryRepository = {
  /**
   * Indexes every message not yet in the search index, in batches (a crash loses at most one batch).
   * One indexer at a time across processes: another one returns at once with status `busy`.
   */
  index(options?: {
    onProgress?: (progress: IndexProgress) => void;
    signal?: AbortSignal;
  }): Promise<IndexOutcome>;
  progress(): Promise<IndexProgress>;
  check(): Promise<TextSearchCheck>;
  retriever: Retriever;
  /** A canary in the history store for an evaluation, and its removal (canary-plant.ts). */
  plantCanary(input: Parameters<typeof plantCanary>[1]): Promise<PlantedCanary>;
  removeCanary(planted: PlantedCanary): Promise<void>;
  /** Whether a person wrote any content word of a text before a time, within a scope (said-before.ts). */
  saidBefore(query: SaidBeforeQuery): Promise<boolean>;
};

export function createMemoryRepository(
  database: Database,
  options: { gapMs?: number } = {},
): MemoryRepository {
  let trigram: Promise<boolean> | undefined;
  const check = () => checkTextSearch(database.pool, { embedded: database.embeddedDir });
  return {
    index: (indexOptions) => indexMessages(database, indexOptions),
    async progress() {
      const verdict = await check();
      return { ...(await indexProgress(database.db)), refusal: verdict.ok ? undefined : verdict.reason };
    },
    check,
    saidBefore: (query) => saidBefore(database.db, query),
    plantCanary: (input) => plantCanary(database.db, input),
    removeCanary: (planted) => removeCanary(database.db, planted),
    retriever: createPostgresRetriever(database.db, {
      gapMs: options.gapMs ?? WINDOW_GAP_MS,
      // Asked once: the extension comes with the migration or not at all.
      trigram: () => {
        trigram ??= hasTrigram(database.db);
        return trigram;
      },
    }),
  };
}
