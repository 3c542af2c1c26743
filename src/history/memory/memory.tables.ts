import { bigint, customType, integer, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";

/** A text-search document (PostgreSQL tsvector), written and read only in SQL. */
const tsvector = customType<{ data: string }>({ dataType: () => "tsvector" });
/** A text-search configuration's name (russian, english, simple). */
const regconfig = customType<{ data: string }>({ dataType: () => "regconfig" });

/**
 * The search index of memory: one row per message with text, in the text-search configuration of
 * its chat's main language. Its GIN indexes (tsvector, and trigrams where pg_trgm exists) are built
 * by the indexer (indexer.ts), after a bulk load rather than row by row. Triggers on `messages` (see
 * migration 0015) keep it honest: a deleted message (a forget) takes its row with it, a message
 * whose text changes loses its row and is indexed again. No foreign key: checking one per row
 * would double the bulk load.
 */
export const messageSearch = pgTable(
  "message_search",
  {
    chatId: bigint("chat_id", { mode: "number" }).notNull(),
    messageId: bigint("message_id", { mode: "number" }).notNull(),
    sentAt: timestamp("sent_at", { withTimezone: true }).notNull(),
    senderId: bigint("sender_id", { mode: "number" }),
    config: regconfig("config").notNull(),
    document: tsvector("document").notNull(),
    text: text("text").notNull(),
  },
  (t) => [primaryKey({ columns: [t.chatId, t.messageId] })],
);

/**
 * How many indexed messages hold each lexeme, per configuration: a query keeps its rarest words,
 * which say the most and match the fewest rows. Recounted by the indexer; a forget may leave counts
 * a little high until the next recount, which only makes a word look commoner.
 */
export const searchTerms = pgTable(
  "search_terms",
  {
    config: regconfig("config").notNull(),
    lexeme: text("lexeme").notNull(),
    documents: integer("documents").notNull(),
  },
  (t) => [primaryKey({ columns: [t.config, t.lexeme] })],
);
