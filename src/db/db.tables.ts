import { pgTable, text, timestamp } from "drizzle-orm/pg-core";

/**
 * Indexes dropped for a bulk load (see deferred-indexes.ts), with the statement that builds each
 * again. Written in the transaction that drops them, so a crash leaves what the next command needs
 * to finish the job.
 */
export const deferredIndexes = pgTable("deferred_indexes", {
  name: text("name").primaryKey(),
  tableName: text("table_name").notNull(),
  definition: text("definition").notNull(),
  deferredAt: timestamp("deferred_at", { withTimezone: true }).notNull().defaultNow(),
});
