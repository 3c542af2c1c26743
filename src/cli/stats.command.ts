import type { Command } from "commander";
import { SESSION_GAP_MINUTES } from "../dataset/sessions.ts";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";
import { memoryIndexLine } from "./memory.command.ts";
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
      const { stats, memoryIndex } = await withDatabase(config, async ({ repositories }) => ({
        stats: await repositories.history.stats({ top: options.top, gapMinutes: SESSION_GAP_MINUTES }),
        memoryIndex: await repositories.memory.progress(),
      }));
      if (options.json) {
        process.stdout.write(`${JSON.stringify({ ...stats, memoryIndex }, null, 2)}\n`);
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
      // Names to give `twin chat --with`: personal chats and group sessions shared with the owner.
      const partners = makeTable(["talks most with", "id", "personal chat", "in shared group sessions"]);
      for (const row of stats.partners)
        partners.push([row.name ?? "?", String(row.id), n(row.personalMessages), n(row.groupMessages)]);
      const parts = [overview, byType];
      if (stats.partners.length > 0) parts.push(partners);
      process.stdout.write(`${parts.map((t) => t.toString()).join("\n")}\n${memoryIndexLine(memoryIndex)}\n`);
    });
}
