/** Every table, for drizzle and drizzle-kit: each concept keeps its tables in its own folder. */

export * from "../access/access.tables.ts";
export * from "../bot/bot.tables.ts";
export * from "../dataset/dataset.tables.ts";
export * from "../evaluation/evaluation.tables.ts";
export * from "../history/history.tables.ts";
export * from "../history/memory/memory.tables.ts";
export * from "../models/models.tables.ts";
export * from "../training/training.tables.ts";
export * from "../userbot/userbot.tables.ts";
