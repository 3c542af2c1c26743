/** Every table, for drizzle and drizzle-kit: each concept keeps its tables in its own folder. */
export * from "../history/history.tables.ts";
