import type { Command } from "commander";
import { historyStats } from "../history/stats.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { integer } from "./options.ts";
import { table as makeTable } from "./table.ts";

const n = (value: number) => value.toLocaleString("en-US");
const day = (value: Date | null) => (value ? value.toISOString().slice(0, 10) : "—");

export function registerStatsCommand(program: Command): void {
  program
    .command("stats")
    .description("what the history store holds: chats by type, messages, people, dates, top partners")
    .option("--top <n>", "how many conversation partners to list", integer("--top", 1), 10)
    .option("--json", "print the figures as JSON")
    .action(async (options: { top: number; json?: boolean }, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const stats = await withDatabase(config, (database) => historyStats(database, { top: options.top }));
      if (options.json) {
        process.stdout.write(`${JSON.stringify(stats, null, 2)}\n`);
        return;
      }
      const overview = makeTable();
      overview.push(
        {
          owner: stats.owner
            ? `${stats.owner.name ?? "?"} (${stats.owner.id})`
            : "unknown (nothing imported yet)",
        },
        { messages: n(stats.messages) },
        { people: n(stats.people) },
        { "date range": `${day(stats.firstMessageAt)} … ${day(stats.lastMessageAt)}` },
      );
      const byType = makeTable(["chat type", "chats", "messages"]);
      for (const row of stats.chatsByType) byType.push([row.type, n(row.chats), n(row.messages)]);
      const partners = makeTable(["personal chat", "messages", "by the owner"]);
      for (const row of stats.topPartners)
        partners.push([row.name ?? String(row.chatId), n(row.messages), n(row.ownerMessages)]);
      const repliers = makeTable(["in groups, replies with", "replies"]);
      for (const row of stats.topRepliers) repliers.push([row.name ?? String(row.personId), n(row.replies)]);
      const parts = [overview, byType];
      if (stats.topPartners.length > 0) parts.push(partners);
      if (stats.topRepliers.length > 0) parts.push(repliers);
      process.stdout.write(`${parts.map((t) => t.toString()).join("\n")}\n`);
    });
}
