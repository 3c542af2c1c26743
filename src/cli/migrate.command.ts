import type { Command } from "commander";
import { type GlobalOptions, resolveConfig, withDatabase } from "./context.ts";

export function registerMigrateCommand(program: Command): void {
  program
    .command("migrate")
    .description("apply the database migrations (also done on every start)")
    .action(async (_options: unknown, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      const where = await withDatabase(config, async ({ database }) => database.describe);
      process.stdout.write(`migrations applied to ${where}\n`);
    });
}
